"""encoder_probe.py ROOT REPS PHOTO...: encoding time per face and HOG time per photo of this
interpreter's dlib, REPS times each; prints the build, BLAS and the times as JSON. ROOT is unused
(the checkout comes from PYTHONPATH)."""

import json
import sys
import time

from facegrid import imaging
from facegrid.faces import FaceEngine
from facegrid.settings import Filter

engine = FaceEngine(Filter())
enc, det = [], []
for path in sys.argv[3:]:
    with open(path, "rb") as f:
        rgb = imaging.decode(f.read(), engine.work_side(), engine.conf.max_pixels).rgb
    small, _ = imaging.shrink(rgb, engine.conf.detect_max_side)
    for _ in range(int(sys.argv[2])):
        t0 = time.perf_counter()
        found = engine.face_locations(small, engine.conf.upsample, "hog")
        det.append(time.perf_counter() - t0)
    boxes = engine.detect(rgb)[0]
    for _ in range(int(sys.argv[2])):
        t0 = time.perf_counter()
        engine.encode(rgb, boxes)
        enc.append((time.perf_counter() - t0) / max(1, len(boxes)))
print(json.dumps({"build": engine.describe(), "blas": engine.build["blas"], "encode": enc, "detect": det}))
