"""Video tracks: rebuilt in the batch that stores a video's frames (facegrid/tracks.py groups them)."""

from __future__ import annotations

import sqlite3

import sqlite_utils

from .. import tracks

TRACK_FACE_SQL = (  # a video's faces, found through its frames (frames_video: video_id, t)
    "SELECT tf.image_id, tf.idx, fr.t, fr.t_end, f.top, f.right, f.bottom, f.left, f.encoding, tf.sharpness "
    "FROM frames fr JOIN track_faces tf ON tf.image_id = fr.image_id "
    "JOIN faces f ON f.image_id = tf.image_id AND f.idx = tf.idx WHERE fr.video_id = ? "
)
# tracks.best_key in SQL: area x sharpness (none or 0: 1), then area, then the earliest
BEST_ORDER = (
    "ORDER BY max(0, f.right - f.left) * max(0, f.bottom - f.top) * "
    "(CASE WHEN tf.sharpness IS NULL OR tf.sharpness = 0 THEN 1.0 ELSE tf.sharpness END) DESC, "
    "max(0, f.right - f.left) * max(0, f.bottom - f.top) DESC, fr.t ASC LIMIT 1"
)


def _open_tracks(conn: sqlite3.Connection, video_id: str, since: float, reach: float) -> list[tracks.Track]:
    """The stored tracks that may go on past `since` (they start before it and end within reach
    seconds of it), each as of its frames before `since`: its last face, and its start, face count
    and best face before that (from its tracks row, less its faces from `since` on; the best face is
    looked for again only when the stored one lies from `since` on). Read before the batch changes
    track_faces, so the stored rows and the assignments agree."""
    out = []
    before = TRACK_FACE_SQL + "AND fr.t < ? AND tf.track = ? "
    rows = conn.execute(
        "SELECT track, start_s, faces, best_image_id, best_idx FROM tracks "
        "WHERE video_id = ? AND start_s < ? AND end_s >= ?",
        (video_id, since, since - reach - 1e-6),
    ).fetchall()
    for number, start, count, best_id, best_idx in rows:
        key = (video_id, since, number)
        last = conn.execute(before + "ORDER BY fr.t DESC LIMIT 1", key).fetchone()
        if last is None:  # no face of it before `since` any more: it stays as stored
            continue
        (moved,) = conn.execute(
            "SELECT count(*) FROM frames fr JOIN track_faces tf ON tf.image_id = fr.image_id "
            "WHERE fr.video_id = ? AND fr.t >= ? AND tf.track = ?",
            key,
        ).fetchone()
        best = conn.execute(before + "AND tf.image_id = ? AND tf.idx = ?", (*key, best_id, best_idx)).fetchone()
        if best is None:  # the stored best face lies from `since` on: the best of those before it
            best = conn.execute(before + BEST_ORDER, key).fetchone() or last
        earlier = tracks.Earlier(start, count - moved - 1, _frame_face(best))
        out.append(tracks.Track([_frame_face(last)], number, earlier))
    return out


def _make_tracks(
    conn: sqlite3.Connection, video_id: str, fps: float, video, since: float, carried: list[tracks.Track]
) -> None:
    """The video's tracks made again from `since` (its earliest frame in this batch) on.

    Tracks are built in time order, so the faces before `since` keep the tracks they
    have; the tracks open there (`carried`, see _open_tracks) go on, and every face
    from `since` on is assigned again. A batch of the newest frames reads those
    frames' faces and a few rows per open track, not the whole video.
    """
    later = [_frame_face(row) for row in conn.execute(TRACK_FACE_SQL + "AND fr.t >= ?", (video_id, since))]
    found = tracks.build(
        later, 1.0 / fps, video.track_gap, video.track_iou, video.track_distance, video.track_jump, active=carried
    )
    numbers = [tr.number for tr in carried]
    marks = ",".join("?" * len(numbers))
    conn.execute(
        f"DELETE FROM tracks WHERE video_id = ? AND (start_s >= ? OR track IN ({marks}))", (video_id, since, *numbers)
    )
    (top,) = conn.execute("SELECT coalesce(max(track), -1) FROM tracks WHERE video_id = ?", (video_id,)).fetchone()
    top = max([top, *numbers])  # new tracks take numbers above every one kept or carried on
    for tr in found:
        if tr.number is None:
            top += 1
            tr.number = top
        conn.executemany(
            "UPDATE track_faces SET track = ? WHERE image_id = ? AND idx = ?",
            [(tr.number, f.image_id, f.idx) for f in tr.faces if f.t >= since],
        )
        best = tr.best
        conn.execute(
            "INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?)",
            (video_id, tr.number, tr.start, tr.end, best.image_id, best.idx, tr.count),
        )


def _frame_face(row) -> tracks.FrameFace:
    return tracks.FrameFace(row[0], row[1], row[2], row[3], (row[4], row[5], row[6], row[7]), _vector(row[8]), row[9])


def _vector(blob: bytes):
    import numpy as np

    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def has_videos(db: sqlite_utils.Database) -> bool:
    return "tracks" in db.table_names()


def face_tracks(db: sqlite_utils.Database, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """(image_id, idx) of frame faces -> their track: video_id, track, start_s, end_s, best face, video path."""
    if not keys or not has_videos(db):
        return {}
    out = {}
    for start in range(0, len(keys), 400):
        part = keys[start : start + 400]
        where = " OR ".join("(tf.image_id = ? AND tf.idx = ?)" for _ in part)
        sql = (
            "SELECT tf.image_id, tf.idx, t.video_id, t.track, t.start_s, t.end_s, t.best_image_id, t.best_idx, "
            "t.faces, v.path, v.host, v.duration FROM track_faces tf "
            "JOIN tracks t ON t.video_id = tf.video_id AND t.track = tf.track "
            f"JOIN videos v ON v.id = t.video_id WHERE {where}"
        )
        for row in db.query(sql, [x for k in part for x in k]):
            out[(row.pop("image_id"), row.pop("idx"))] = row
    return out
