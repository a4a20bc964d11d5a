"""facegrid: find faces in very large photo collections on a grid of hosts.

Shared code for the four thin scripts at the top of the repository:
queuer.py, filter.py, collector.py and search.py.
"""

__version__ = "0.9.0"
