"""Watches and alerts (schema 5; the matching itself is in facegrid/alerting.py)."""

from __future__ import annotations

import time

from .schema import get_meta

# -- watches and alerts (schema 5; the matching itself is in alerting.py) -----------------------------
WATCH_COLUMNS = "id, name, source, person_id, mode, tolerance, profile, targets, target_ids, created_at, refreshed_at"


def watches(db) -> list[dict]:
    """Every watch, by id, with its profile and target vectors as stored (float32 BLOBs)."""
    if "watches" not in db.table_names():  # a read-only database from before schema 5
        return []
    return list(db.query(f"SELECT {WATCH_COLUMNS} FROM watches ORDER BY id"))


def watch_version(db) -> str:
    """Changes whenever a watch is added, removed or refreshed: the collector reloads its list then."""
    return get_meta(db, "watch_version") or "0"


def _bump_watches(db) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('watch_version', '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def save_watch(db, watch: dict) -> int:
    """Add a watch (watch has every WATCH_COLUMNS key but id), or, when one of that name exists,
    replace its profile and tolerance (a refresh). Returns its id."""
    cols = [c.strip() for c in WATCH_COLUMNS.split(",")][1:]
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            f"INSERT INTO watches ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) ON CONFLICT (name) DO "
            "UPDATE SET mode = excluded.mode, tolerance = excluded.tolerance, profile = excluded.profile, "
            "refreshed_at = excluded.refreshed_at",
            [watch[c] for c in cols],
        )
        _bump_watches(db)
        return db.execute("SELECT id FROM watches WHERE name = ?", [watch["name"]]).fetchone()[0]


def remove_watch(db, name: str) -> bool:
    """Forget a watch (its alerts stay, as they were sent). False when no watch has that name."""
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        gone = db.execute("DELETE FROM watches WHERE name = ?", [name]).rowcount
        if gone:
            _bump_watches(db)
    return bool(gone)


def alert_counts(db) -> dict[int, tuple[int, float | None]]:
    """Per watch id: how many alerts it gave, and when the last one was stored."""
    sql = "SELECT watch_id, count(*), max(stored_at) FROM alerts GROUP BY watch_id"
    return {row[0]: (row[1], row[2]) for row in db.execute(sql)}


def record_alerts(db, alerts: list[tuple[int, str, str, int, str, float]]) -> list[tuple[int, str, str]]:
    """Record (watch_id, subject, image_id, idx, body, stored_at) rows in one transaction; a watch and
    subject (photo id, or video) that already has an alert keeps it. Returns the new ones as
    (watch_id, subject, body): only those are sent, so a photo stored twice alerts once."""
    new = []
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        for row in alerts:
            cur = db.execute("INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?, ?, NULL)", row)
            if cur.rowcount:
                new.append((row[0], row[1], row[4]))
    return new


def unsent_alerts(db) -> list[tuple[int, str, str]]:
    """(watch_id, subject, body) of alerts recorded but not marked sent (a collector stopped between)."""
    if "alerts" not in db.table_names():
        return []
    sql = "SELECT watch_id, subject, body FROM alerts WHERE sent_at IS NULL ORDER BY stored_at"
    return [tuple(r) for r in db.execute(sql)]


def mark_alerts_sent(db, keys: list[tuple[int, str]]) -> None:
    now = time.time()
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        db.conn.executemany(
            "UPDATE alerts SET sent_at = ? WHERE watch_id = ? AND subject = ?", [(now, *k) for k in keys]
        )
