"""Video files on the queuer host: decode, sample, skip the frames that barely change.

A video is read once, front to back, with OpenCV's FFmpeg backend. Frames are
sampled at [video] fps; a sampled frame that differs little from the last one
kept (mean absolute difference of a 32x18 grey thumbnail) is not sent, and the
kept frame's `t_end` grows to cover it, so a static shot costs one job and
search still reports its whole span. One frame at a time is held in memory:
nothing about the video is ever kept whole, on disk or in beanstalkd.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterator

import cv2
import numpy as np

log = logging.getLogger("facegrid.video")
VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mts"}
THUMB = (32, 18)  # the difference test's thumbnail, width x height


class VideoUnreadable(Exception):
    """The file does not open as a video, or no frame of it decodes."""


@dataclasses.dataclass
class Frame:
    index: int  # the frame's number in the video
    t: float  # its time in seconds
    t_end: float  # the last sampled time it stands for (later samples that barely differed)
    jpeg: bytes


@dataclasses.dataclass
class Info:
    fps: float  # the video's own frame rate
    frames: int  # frames the container declares (0: unknown)
    width: int
    height: int

    @property
    def duration(self) -> float | None:
        return self.frames / self.fps if self.fps > 0 and self.frames > 0 else None


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """The video's id, read in 1 MiB pieces: a 2-hour file is never held in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def open_video(path: str) -> tuple[cv2.VideoCapture, Info]:
    """The video opened by FFmpeg through a descriptor of ours (/proc/self/fd/N): the file the
    queuer checked and hashed, whatever bytes its name holds (a name that is not UTF-8 would
    crash OpenCV). The descriptor is closed when this returns: FFmpeg holds its own."""
    fd = os.open(path, os.O_RDONLY)
    try:
        cap = cv2.VideoCapture(f"/proc/self/fd/{fd}", cv2.CAP_FFMPEG)
    finally:
        os.close(fd)
    if not cap.isOpened():
        cap.release()
        raise VideoUnreadable("not a readable video (FFmpeg cannot open it)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    info = Info(
        fps=fps if np.isfinite(fps) and 0 < fps <= 1000 else 0.0,
        frames=max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
    )
    return cap, info


def _thumb(bgr: np.ndarray) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)


def sample(
    path: str, fps: float, min_change: float, quality: int, max_side: int, after: float = -1.0
) -> Iterator[Frame | Info]:
    """Yield the video's Info, then each kept frame once the next kept one (or the end) is known.

    fps: samples per second; min_change: mean grey-level difference (0-255) under
    which a sample is skipped (0: keep every sample); after: resume, skipping the
    samples at or before this time (the last one an earlier run sent).
    Raises VideoUnreadable when nothing decodes; a video damaged further on ends
    early with what decoded (logged by the caller from the last time reached).
    """
    cap, info = open_video(path)
    try:
        yield info
        step = 1.0 / fps
        next_t = 0.0
        held: Frame | None = None
        held_thumb: np.ndarray | None = None
        index, decoded = -1, 0
        while True:
            if not cap.grab():
                break
            index += 1
            t = _time(cap, index, info.fps)
            if t + 1e-6 < next_t:
                continue
            while next_t <= t + 1e-6:  # the next sample on the grid after this frame
                next_t += step
            t = round(t, 3)
            if t <= after:  # sent by an earlier run: not decoded again
                continue
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                break
            decoded += 1
            thumb = _thumb(bgr)
            if held is not None and held_thumb is not None and float(np.abs(thumb - held_thumb).mean()) < min_change:
                held.t_end = t  # barely changed: the kept frame stands for this sample too
                continue
            if held is not None:
                yield held
            held, held_thumb = Frame(index, t, t, _jpeg(bgr, quality, max_side)), thumb
        if held is not None:
            yield held
        if decoded == 0 and after < 0:
            raise VideoUnreadable("no frame decodes (the file is damaged, truncated, or not a video)")
    finally:
        cap.release()


def _time(cap: cv2.VideoCapture, index: int, fps: float) -> float:
    if fps > 0:
        return index / fps
    ms = cap.get(cv2.CAP_PROP_POS_MSEC)  # no declared rate: the container's timestamps
    return max(0.0, ms / 1000.0) if np.isfinite(ms) else 0.0


def _jpeg(bgr: np.ndarray, quality: int, max_side: int) -> bytes:
    h, w = bgr.shape[:2]
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VideoUnreadable("a frame does not encode as JPEG")
    return buf.tobytes()


def is_video(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def clock(seconds: float) -> str:
    """00:01:05 for 65.4 s: how spans are shown."""
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
