"""pipeline_loop.py ROOT PHOTO...: the filter's per-photo work (FaceEngine.analyse, crops, annotated
JPEG) in one process; prints {photo: faces found} as JSON. ROOT is unused (the checkout comes from
PYTHONPATH); it keeps the arguments as the benchmarks pass them."""

import json
import sys

from facegrid import imaging
from facegrid.faces import FaceEngine
from facegrid.settings import load

conf = load().filter
engine = FaceEngine(conf)
counts = {}
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        a = engine.analyse(f.read())
    for box in a.boxes:
        imaging.jpeg(imaging.crop(a.decoded.rgb, box, conf.crop_size), 85)
    imaging.jpeg(imaging.annotate(a.decoded.rgb, a.boxes, conf.annotate_max_side), conf.annotate_quality)
    counts[path] = len(a.boxes)
print(json.dumps(counts))
