"""fr_loop.py PHOTO...: face_recognition's own defaults, as its users run them (full-size decode, HOG
with one upsample, encodings at full size); prints {photo: faces found} as JSON."""

import json
import sys

import face_recognition as fr

counts = {}
for path in sys.argv[1:]:
    rgb = fr.load_image_file(path)
    boxes = fr.face_locations(rgb)
    fr.face_encodings(rgb, boxes)
    counts[path] = len(boxes)
print(json.dumps(counts))
