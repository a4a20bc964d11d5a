"""Stored results: batched upserts keyed by the photo's sha256, and video frames."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable

import sqlite_utils

from ..envelope import FRAME_VERSION, Result
from ..envelope import VERSION as ENVELOPE_VERSION
from .schema import FACE_COLUMNS, IMAGE_COLUMNS, generation
from .videos import _make_tracks, _open_tracks


def _image_row(r: Result, now: float) -> dict:
    f = r.filter or {}
    return {
        "id": r.id,
        "path": r.path,
        "host": r.host,
        "size": r.size,
        "mtime": r.mtime,
        "width": r.width,
        "height": r.height,
        "status": r.status,
        "error": r.error,
        "face_count": len(r.faces),
        "settings": json.dumps(r.settings, sort_keys=True),
        "filter_host": f.get("host"),
        "filter_pid": f.get("pid"),
        "filter_version": f.get("version"),
        "timings": json.dumps(r.timings, sort_keys=True),
        "reencoded": json.dumps(r.reencoded) if r.reencoded else None,
        "attempts": r.attempts,
        "queued_at": r.queued_at,
        "processed_at": r.processed_at,
        "stored_at": now,
        "envelope_version": FRAME_VERSION if r.frame else ENVELOPE_VERSION,
    }


def _upsert_sql(table: str, columns: list[str], pk: tuple[str, ...]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in pk)
    return f'INSERT INTO "{table}" ({cols}) VALUES ({marks}) ON CONFLICT ({", ".join(pk)}) DO UPDATE SET {updates}'


IMAGE_SQL = _upsert_sql("images", list(IMAGE_COLUMNS), ("id",))
FACE_SQL = _upsert_sql("faces", list(FACE_COLUMNS), ("image_id", "idx"))
ANNOTATED_SQL = _upsert_sql("annotated", ["image_id", "jpeg"], ("image_id",))


def store_results(db: sqlite_utils.Database, results: Iterable[Result], video=None) -> int:
    """Upsert a batch in one transaction. A result stored twice changes nothing.

    video: the [video] settings (track rules); the tracks of every video a frame
    of the batch belongs to are made again in the same transaction.
    """
    results = list(results)
    now = time.time()
    conn = db.conn
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        gen = generation(db) + 1
        conn.executemany(IMAGE_SQL, [tuple(_image_row(r, now).values()) for r in results])
        faces, annotated = [], []
        for r in results:
            model = (r.settings or {}).get("model", "hog")
            for i, face in enumerate(r.faces):
                faces.append((r.id, i, *face.box, face.encoding.astype("<f4").tobytes(), face.crop, model, gen))
            gone = (r.id, len(r.faces))
            conn.execute(
                "INSERT INTO deleted_faces SELECT rowid, ? FROM faces WHERE image_id = ? AND idx >= ?", (gen, *gone)
            )
            conn.execute("DELETE FROM faces WHERE image_id = ? AND idx >= ?", gone)
            if r.annotated:
                annotated.append((r.id, r.annotated))
        conn.executemany(FACE_SQL, faces)
        conn.executemany(ANNOTATED_SQL, annotated)
        _store_frames(conn, [r for r in results if r.frame], now, video)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
    return len(results)


def _store_frames(conn: sqlite3.Connection, results: list[Result], now: float, video) -> None:
    """Frames, their video's row, the sharpness of their faces, then the video's tracks made again
    from the batch's earliest frame on (the tracks open there read before this batch changes them)."""
    if not results:
        return
    from .. import imaging  # here, not at the top: status and buried read the store without OpenCV

    if video is None:
        from ..settings import Video

        video = Video()
    touched: dict[str, tuple[Result, dict]] = {}
    since: dict[str, float] = {}  # per video, the earliest frame of this batch
    for r in results:
        f = r.frame
        assert f is not None  # the caller passes frames only
        touched[f["video_id"]] = (r, f)
        since[f["video_id"]] = min(f["t"], since.get(f["video_id"], f["t"]))
    carried = {v: _open_tracks(conn, v, since[v], 1.0 / f["fps"] + video.track_gap) for v, (_, f) in touched.items()}
    for r in results:
        f = r.frame
        assert f is not None
        conn.execute(
            "INSERT INTO frames VALUES (?, ?, ?, ?, ?) ON CONFLICT (image_id) DO UPDATE SET "
            "t_end = max(t_end, excluded.t_end), frame_index = excluded.frame_index",
            (r.id, f["video_id"], f["t"], f["t_end"], f["index"]),
        )
        conn.execute("DELETE FROM track_faces WHERE image_id = ? AND idx >= ?", (r.id, len(r.faces)))
        conn.executemany(
            "INSERT OR REPLACE INTO track_faces (image_id, idx, video_id, track, sharpness) VALUES (?, ?, ?, NULL, ?)",
            [(r.id, i, f["video_id"], imaging.sharpness(face.crop)) for i, face in enumerate(r.faces)],
        )
    for video_id, (r, f) in touched.items():
        conn.execute(
            "INSERT INTO videos (id, path, host, duration, fps, frames, mtime, stored_at) "
            "VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (id) DO UPDATE SET path = excluded.path, "
            "host = excluded.host, duration = coalesce(excluded.duration, duration), fps = excluded.fps, "
            "mtime = excluded.mtime, stored_at = excluded.stored_at",
            (video_id, r.path, r.host, f.get("duration"), f["fps"], r.mtime, now),
        )
        conn.execute(
            "UPDATE videos SET frames = (SELECT count(*) FROM frames WHERE video_id = ?) WHERE id = ?",
            (video_id, video_id),
        )
        _make_tracks(conn, video_id, f["fps"], video, since[video_id], carried[video_id])


# -- bulk writes for tools: new databases of many rows that are not results --------------
# The benchmarks fill stores of made-up faces far faster than store_results would; the rows
# still go through the tables declared here (copy_photos, in registry.py, is the evaluation's).
BULK_IMAGE_SQL = "INSERT INTO images (id, path, host, status, face_count, width, height) VALUES (?, ?, ?, ?, ?, ?, ?)"
BULK_FACE_SQL = (
    'INSERT INTO faces (image_id, idx, "top", "right", "bottom", "left", encoding, crop, model, gen) '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert_rows(db, images: Iterable[tuple], faces: Iterable[tuple]) -> None:
    """Photos and faces written as given, in the caller's transaction, for a tool filling a new database.

    images: (id, path, host, status, face_count, width, height); faces: (image_id, idx,
    top, right, bottom, left, encoding, crop, model, gen), gen the generation next_generation()
    gave the batch (every face carries the generation of the batch that wrote it)."""
    db.conn.executemany(BULK_IMAGE_SQL, images)
    db.conn.executemany(BULK_FACE_SQL, faces)


def insert_annotated(db, rows: Iterable[tuple[str, bytes]]) -> None:
    """(image_id, jpeg) annotated copies written as given, in the caller's transaction (insert_rows' photos)."""
    db.conn.executemany("INSERT INTO annotated (image_id, jpeg) VALUES (?, ?)", rows)


def next_generation(db) -> int:
    """Count one more generation (in the caller's transaction) and return it: the rows a tool writes in
    it carry it as their gen, so the index reads them as it reads a stored batch."""
    gen = generation(db) + 1
    db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", [str(gen)])
    return gen
