"""Several facegrid databases searched as one (search.py --db A --db B ...).

Each database keeps its own search index beside it (or in the cache folder).
Reads by photo id go to the first database that holds the photo: ids are the
sha256 of the photo's bytes, so the same id means the same photo everywhere.
Reads of every row (clustering, export) chain the databases' rows.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from . import store
from .errors import UsageError


class Rows:
    """The answers of one query run on every database: first row, or all of them."""

    def __init__(self, cursors):
        self.cursors = cursors

    def fetchone(self):
        for cursor in self.cursors:
            row = cursor.fetchone()
            if row is not None:
                return row
        return None

    def fetchall(self) -> list:
        return list(self)

    def __iter__(self):
        return itertools.chain.from_iterable(self.cursors)


class Collection:
    """Read-only facegrid databases; `execute` runs a query on each of them."""

    def __init__(self, paths: list[str]):
        resolved = [str(Path(p).resolve()) for p in paths]
        if len(set(resolved)) != len(resolved):
            raise UsageError("the same database is named twice with --db; name each database once")
        self.paths = [str(p) for p in paths]
        self.dbs = [store.open_readonly(p) for p in paths]

    def __iter__(self):
        return iter(zip(self.paths, self.dbs, strict=False))

    def __len__(self) -> int:
        return len(self.dbs)

    def execute(self, sql: str, params=()) -> Rows:
        return Rows([db.execute(sql, params) for db in self.dbs])
