#!/usr/bin/env bash
# Run the fault tests (pytest -m chaos) and print what each one measured:
# photos queued, stored, duplicated and lost. Extra arguments go to pytest.
#   scripts/chaos.sh            every fault test
#   scripts/chaos.sh -k netns   only the ones whose name matches
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="$root/.venv/bin/python"
[ -x "$python" ] || { echo "chaos: $python is missing; run scripts/setup.sh --dev first" >&2; exit 2; }
table="$(mktemp "${TMPDIR:-/tmp}/facegrid-chaos.XXXXXX")"
trap 'rm -f "$table"' EXIT
FACEGRID_CHAOS_TABLE="$table" "$python" -m pytest -m chaos -q "$@"
status=$?
"$python" - "$table" <<'PY'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
if not rows:
    print("\nno fault test recorded a row (all skipped or deselected?)")
    sys.exit(0)
cols = ["fault", "queued", "stored", "duplicates", "lost", "test"]
width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
print()
print(" | ".join(c.ljust(width[c]) for c in cols))
print("-+-".join("-" * width[c] for c in cols))
for r in rows:
    print(" | ".join(str(r[c]).ljust(width[c]) for c in cols))
lost = sum(r["lost"] for r in rows)
dups = sum(r["duplicates"] for r in rows)
print(f"\n{len(rows)} fault(s): {lost} photo(s) lost, {dups} duplicated")
PY
exit $status
