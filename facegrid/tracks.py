"""A video's faces grouped into tracks: one person on screen, frame after sampled frame.

Pure computation over what the database holds (facegrid/store/ reads and writes): the
faces of a video's frames in time order. A face continues a track that was seen
in the frame before (within the sampling step plus [video] track_gap seconds)
when their boxes overlap (IoU >= track_iou) and their encodings are closer than
track_distance, or, wherever it moved to (a cut, a pan), closer than track_jump.
Pairs are taken closest first, one face per track per frame; a face that
continues nothing starts a track. A track spans from its first frame's time to
its last frame's t_end (a frame stands for the unchanged samples after it), and
its best face is the one with the largest area x sharpness (then the largest, then
the earliest).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class FrameFace:
    image_id: str
    idx: int
    t: float
    t_end: float
    box: tuple[int, int, int, int]  # top, right, bottom, left
    encoding: np.ndarray
    sharpness: float | None = None

    @property
    def area(self) -> int:
        top, right, bottom, left = self.box
        return max(0, right - left) * max(0, bottom - top)


@dataclasses.dataclass
class Earlier:
    """What a stored track held before the face it is carried on from."""

    start: float
    count: int
    best: FrameFace


@dataclasses.dataclass
class Track:
    faces: list[FrameFace]  # in time order (a track carried on: from its last stored face)
    number: int | None = None  # its number in the database, once stored
    earlier: Earlier | None = None  # a track carried on: its faces before faces[0], summed up

    @property
    def start(self) -> float:
        return self.earlier.start if self.earlier else self.faces[0].t

    @property
    def end(self) -> float:
        return max(f.t_end for f in self.faces)

    @property
    def count(self) -> int:
        return len(self.faces) + (self.earlier.count if self.earlier else 0)

    @property
    def best(self) -> FrameFace:
        held = self.faces + ([self.earlier.best] if self.earlier else [])
        return max(held, key=best_key)


def best_key(f: FrameFace) -> tuple[float, int, float]:
    """The best face of a track: the largest area x sharpness, then the largest, then the earliest."""
    return (f.area * (f.sharpness or 1.0), f.area, -f.t)


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    top, right = max(a[0], b[0]), min(a[1], b[1])
    bottom, left = min(a[2], b[2]), max(a[3], b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    area = lambda x: max(0, x[1] - x[3]) * max(0, x[2] - x[0])  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def build(
    faces: list[FrameFace],
    step: float,
    gap: float,
    min_iou: float,
    distance: float,
    jump: float,
    active: list[Track] | None = None,
) -> list[Track]:
    """Tracks of one video, in order of their start.

    active: tracks made from the frames before the first of ``faces`` that may go
    on into them. Frames are taken in time order, so building on from there gives
    what building over every frame would.
    """
    frames: dict[tuple[float, str], list[FrameFace]] = {}
    for f in faces:
        frames.setdefault((f.t, f.image_id), []).append(f)
    done: list[Track] = []
    active = list(active or [])
    for (t, _), here in sorted(frames.items()):
        still: list[Track] = []
        for tr in active:
            (still if t - tr.faces[-1].t_end <= step + gap + 1e-6 else done).append(tr)
        active = still
        pairs = []
        for i, f in enumerate(here):
            for j, tr in enumerate(active):
                last = tr.faces[-1]
                d = float(np.linalg.norm(f.encoding - last.encoding))
                if (d <= distance and iou(f.box, last.box) >= min_iou) or d <= jump:
                    pairs.append((d, i, j))
        taken_f, taken_t = set(), set()
        for _, i, j in sorted(pairs):
            if i in taken_f or j in taken_t:
                continue
            taken_f.add(i)
            taken_t.add(j)
            active[j].faces.append(here[i])
        active += [Track([f]) for i, f in enumerate(here) if i not in taken_f]
    return sorted(done + active, key=lambda tr: (tr.start, tr.faces[0].image_id, tr.faces[0].idx))
