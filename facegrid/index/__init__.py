"""The search index: a memory-mapped matrix of every stored encoding, kept up to date in steps.

- files.py: the index on disk (<db>.index/, its manifest and segment files) and the
  segments a process keeps open (SegmentCache);
- segment.py: one immutable segment, scanned or asked for candidates;
- codes.py: the short codes of big segments (faiss projection + 8-bit quantiser);
- maintenance.py: load, build, update and merge, following the database's writes;
- search.py: FaceIndex.near, the live faces within a radius of a profile, exactly as
  a scan of every row finds them.

Process state is passed in, never patched: SearchOptions (exact scan, neighbours asked
first), CodeLayout (which segments get short codes) and SegmentCache (what a process keeps
open). What each path costs is in docs/benchmarks.md ("Archive scale", "Growth").
"""

from .codes import TRAINED_FILE, CodeLayout, codes_of
from .files import CACHE, INDEX_FORMAT, SegmentCache, index_dir, manifest
from .maintenance import MAX_DEAD_SHARE, MAX_SEGMENTS, build, load, update
from .search import KNN_FIRST, FaceIndex, Near, SearchOptions, profile, profile_distances
from .segment import NAMES, Ids, Segment, Vectors

__all__ = [
    "CACHE",
    "INDEX_FORMAT",
    "KNN_FIRST",
    "MAX_DEAD_SHARE",
    "MAX_SEGMENTS",
    "NAMES",
    "TRAINED_FILE",
    "CodeLayout",
    "FaceIndex",
    "Ids",
    "Near",
    "SearchOptions",
    "Segment",
    "SegmentCache",
    "Vectors",
    "build",
    "codes_of",
    "index_dir",
    "load",
    "manifest",
    "profile",
    "profile_distances",
    "update",
]
