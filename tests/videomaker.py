"""Test videos made with OpenCV's VideoWriter from the labelled photos: known people in known spans."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def _fit(photo: Path, width: int, height: int) -> np.ndarray:
    img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    assert img is not None, f"cannot read {photo}"
    scale = min(width / img.shape[1], height / img.shape[0]) * 0.9
    img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return img


def make_video(
    path: Path,
    spans: list[tuple],
    duration: float,
    fps: int = 10,
    size: tuple[int, int] = (640, 360),
    drift: bool = False,
) -> Path:
    """spans: (start_s, end_s, photo[, drift]) shown centred on a plain background; empty elsewhere.

    drift (per span, or for all): the photo slides a little every frame (a pan), so no
    sample is skipped as unchanged; a span without it is one static shot.
    """
    width, height = size
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]  # not in OpenCV's stubs
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4v video"
    fitted = {span[2]: _fit(span[2], width, height) for span in spans if span[2] is not None}
    for n in range(round(duration * fps)):
        t = n / fps
        frame = np.full((height, width, 3), 40, np.uint8)
        cv2.putText(frame, "facegrid test", (10, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (90, 90, 90), 1)
        for start, end, photo, *moving in spans:
            if photo is not None and start <= t < end:
                img = fitted[photo]
                shift = int(6 * np.sin(t * 2)) if (moving[0] if moving else drift) else 0
                y = (height - img.shape[0]) // 2
                x = max(0, min(width - img.shape[1], (width - img.shape[1]) // 2 + shift))
                frame[y : y + img.shape[0], x : x + img.shape[1]] = img
        writer.write(frame)
    writer.release()
    return path
