"""The `facegrid` command's subcommands, one module each, each with `main(argv) -> exit code`.

The top-level scripts (queuer.py, filter.py, collector.py, search.py) are thin shims over
`queue`, `filter`, `collect` and `search`; `facegrid/__main__.py` dispatches by name.
"""

# name -> (module holding main, one line for `facegrid --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "queue": ("facegrid.commands.queue", "walk folders and queue photos and video frames (queuer.py)"),
    "filter": ("facegrid.commands.filter", "detect and encode faces for queued jobs (filter.py)"),
    "collect": ("facegrid.commands.collect", "store results in SQLite (collector.py)"),
    "search": ("facegrid.commands.search", "find one person across everything stored (search.py)"),
    "people": ("facegrid.commands.people", "name, merge, split and correct the persons of the people registry"),
    "export": ("facegrid.commands.export", "write stored annotated photos to a folder"),
    "watch": ("facegrid.commands.watch", "watch people: alerts when new photos of them are stored"),
    "status": ("facegrid.status", "queue depths, rates, workers, database counts, ETA"),
    "buried": ("facegrid.buried", "list, kick or requeue buried jobs"),
}
