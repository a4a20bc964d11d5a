#!/usr/bin/env bash
# Make docs/report.png, docs/people.png and docs/video-report.png: run the labelled photos
# and a video made from them
# (../shared/faces, or $FACEGRID_FACES) through a private local grid, search for
# one person, cluster everyone, and render both pages with headless Chromium.
#   scripts/screenshots.sh [WORK_DIR]      (default: /tmp/facegrid-screenshots, emptied first)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
faces="${FACEGRID_FACES:-$root/../shared/faces}"
[ -f "$faces/labels.csv" ] || { echo "screenshots.sh: no labelled photos at $faces; set FACEGRID_FACES" >&2; exit 2; }
faces="$(cd "$faces" && pwd)"
chromium="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$chromium" ] || { echo "screenshots.sh: chromium is not installed (apt-get install chromium)" >&2; exit 2; }
python="$root/.venv/bin/python"
work="${1:-/tmp/facegrid-screenshots}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
rm -rf "$work/grid" "$work/matches" "$work/people" "$work/target" "$work/target-biden" "$work/video-matches" "$work/queuer.sqlite"  # a fresh run each time
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
db="$work/grid/facegrid.db"

bash "$root/scripts/start-grid.sh" --dir "$work/grid" --port "$port" --workers 2 >/dev/null
trap 'bash "$root/scripts/stop-grid.sh" --dir "$work/grid" --force >/dev/null' EXIT
rm -rf "$work/photos" && cp -r "$faces" "$work/photos"  # the pages show the copy's paths, not this checkout's
mkdir -p "$work/photos/videos"
# a 40 s clip: Obama in a still shot 5-13 s, Biden panning 16-24 s, Kit Harington 27-35 s, no one between
PYTHONPATH="$root/tests" "$python" -c 'import sys; from pathlib import Path; from videomaker import make_video
p = Path(sys.argv[1]) / "people"
make_video(Path(sys.argv[2]), [(5, 13, p / "obama/obama.jpg"), (16, 24, p / "biden/biden.jpg", True),
           (27, 35, p / "kit_harington/john1.jpeg")], 40)' "$faces" "$work/photos/videos/newsroom-clip.mp4"
counts="$("$python" "$root/queuer.py" -q --beanstalkd "127.0.0.1:$port" --state "$work/queuer.sqlite" --requeue "$work/photos")"
frames="$(echo "$counts" | sed -n 's/.*frames=\([0-9]*\).*/\1/p')"
expected="$(($(wc -l <"$faces/labels.csv") - 1 + ${frames:-0}))"
count() { "$python" -c 'import sqlite3, sys
try: print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM images").fetchone()[0])
except sqlite3.Error: print(0)' "$db"; }
for _ in $(seq 1 1200); do [ "$(count)" -ge "$expected" ] && break; sleep 0.5; done
[ "$(count)" -ge "$expected" ] || { echo "screenshots.sh: only $(count) of $expected photos stored; see $work/grid/logs" >&2; exit 1; }
bash "$root/scripts/stop-grid.sh" --dir "$work/grid" >/dev/null
trap - EXIT

mkdir -p "$work/target"
cp "$faces/people/obama/obama.jpg" "$faces/people/obama/obama_test1.jpg" "$work/target/"
"$python" "$root/search.py" -q "$work/target" --db "$db" --out "$work/matches" >/dev/null
"$python" "$root/search.py" -q --people --db "$db" --out "$work/people"
mkdir -p "$work/target-biden"
cp "$faces/people/biden/biden2.jpg" "$work/target-biden/"
"$python" "$root/search.py" "$work/target-biden" --db "$db" --out "$work/video-matches" 2>/dev/null | tee "$work/video-search.txt"

shot() {  # shot PAGE PNG HEIGHT
    "$chromium" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
        --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$work/chromium" \
        --window-size="1280,$3" --screenshot="$2" "file://$1" 2>/dev/null
    echo "wrote $2"
}
shot "$work/matches/report.html" "$root/docs/report.png" 1180
shot "$work/people/index.html" "$root/docs/people.png" 1240
shot "$work/video-matches/report.html" "$root/docs/video-report.png" 760
echo "pages in $work/matches/report.html and $work/people/index.html"
