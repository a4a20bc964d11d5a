"""Builders of what the tests and the benchmarks make over and over: a filter's Result.

result("a0", encodings) is photo a0 (id: the sha256 of "a0", path /photos/a0.jpg) with
one face per encoding; every other field of the Result can be given by keyword.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from facegrid.envelope import Face, Result

BOX = (10, 20, 30, 0)  # top, right, bottom, left: a small face in the corner


def sha(key: str) -> str:
    """A photo id made from a name, as stable as the name."""
    return hashlib.sha256(key.encode()).hexdigest()


def faces(encodings: Iterable[np.ndarray], box: tuple[int, int, int, int] = BOX, crop: bytes = b"") -> list[Face]:
    """One Face per encoding (as float32), all at box with crop."""
    return [Face(box, np.asarray(e, dtype=np.float32), crop) for e in encodings]


def result(key: str = "x", encodings: Iterable[np.ndarray] = (), **fields) -> Result:
    """A filter's Result for photo key with a face per encoding; fields override any field (faces too).

    status is "ok" with faces and "no_faces" without, unless given."""
    base: dict = dict(
        id=sha(key),
        path=f"/photos/{key}.jpg",
        host="h",
        size=1,
        mtime=0.0,
        queued_at=0.0,
        width=100,
        height=100,
        faces=faces(encodings),
    )
    base.update(fields)
    base.setdefault("status", "ok" if base["faces"] else "no_faces")
    return Result(**base)
