"""scripts/status --problems: the photos that failed or showed no face, each with its reason.

Read from the database only (store.problems), opened read-only: beanstalkd is not asked.
"""

from __future__ import annotations

import json

from . import store
from .textsafe import printable


def reason(row: dict) -> str:
    """Why: the stored error, or for a photo without a face the detector settings it was searched with."""
    if row["status"] == "error":
        return row["error"] or "error (no reason stored)"
    try:
        s = json.loads(row["settings"] or "{}")
    except ValueError:
        s = {}
    how = ", ".join(f"{k} {s[k]}" for k in ("model", "upsample", "detect_max_side") if k in s)
    return f"no face found ({how})" if how else "no face found"


def rows(db_path: str) -> list[dict]:
    db = store.open_readonly(db_path)
    try:
        return [
            {k: r[k] for k in ("id", "path", "host", "status")} | {"reason": reason(r), "stored_at": r["stored_at"]}
            for r in store.problems(db)
        ]
    finally:
        db.conn.close()


def render(found: list[dict], db_path: str) -> str:
    lines = [f"{'status':<9} {'id':<16}  {'host':<12}  path / reason"]
    for r in found:
        lines.append(
            f"{r['status']:<9} {r['id'][:16]:<16}  {printable(r['host'] or '')[:12]:<12}  {printable(r['path'])}"
        )
        lines.append(f"{'':<43}{printable(r['reason'])}")
    errors = sum(r["status"] == "error" for r in found)
    lines.append(f"{errors} photo(s) failed, {len(found) - errors} with no face, in {db_path}")
    return "\n".join(lines)


def show(db_path: str, as_json: bool) -> int:
    found = rows(db_path)
    if as_json:
        print(json.dumps({"database": db_path, "problems": found}, indent=2))
    else:
        print(render(found, db_path))
    return 0
