"""Sections video (only with --only video) and tracks: the queuer's decode rate on a long video, and
the cost of tracks."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

import numpy as np
from localgrid import Server, script

from facegrid import envelope, store
from facegrid import settings as settings_mod

from .collector import standin_template
from .common import FACES, MB, PY, log, med, run
from .context import Context
from .programs import RSS_WRAPPER


def make_bench_video(path: Path, seconds: int, fps: int = 30, size=(1920, 1080), shot: int = 20) -> Path:
    """Labelled photos, a new one every `shot` seconds, panning slowly so no sample is skipped."""
    import cv2

    photos = sorted(p for p in (FACES / "people").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    w, h = size
    fitted = []
    for p in photos:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            continue
        k = min(w / img.shape[1], h / img.shape[0]) * 0.7
        fitted.append(cv2.resize(img, (round(img.shape[1] * k), round(img.shape[0] * k))))
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]
    writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v video")
    for n in range(seconds * fps):
        t = n / fps
        img = fitted[int(t // shot) % len(fitted)]
        frame = np.full((h, w, 3), 50, np.uint8)
        x = int((w - img.shape[1]) / 2 + 80 * math.sin(t / 3))
        y = (h - img.shape[0]) // 2
        frame[y : y + img.shape[0], x : x + img.shape[1]] = img
        writer.write(frame)
    writer.release()
    return path


def queuer_rss(ctx: Context, video: Path, tag: str) -> tuple[float, float, int]:
    """(wall seconds, peak RSS bytes, frames put) of queuer.py on one video, with no backlog bound."""
    folder = video.parent
    server = Server(ctx.tmp / f"bs-{tag}" / "binlog").start()
    try:
        out = ctx.tmp / f"rss-{tag}"
        cmd: list = [
            PY,
            RSS_WRAPPER,
            out,
            *script(
                "queuer.py",
                "--beanstalkd",
                server.address,
                "--state",
                ctx.tmp / f"q-{tag}.sqlite",
                "--set",
                "beanstalkd.max_ready=0",
                folder,
            ),
        ]
        wall = run(cmd, ctx.tmp / f"queuer-{tag}.log")
        frames = int(server.tube("images")["current-jobs-ready"])
        return wall, float(out.read_text()), frames
    finally:
        server.stop()


def sec_video(ctx: Context) -> None:
    rep = ctx.report
    long_s, short_s = (120, 30) if ctx.args.quick else (600, 60)
    log(f"making a {long_s} s and a {short_s} s 1080p video")
    t0 = time.perf_counter()
    for tag in ("long", "short"):  # one video per folder: the queuer walks folders
        (ctx.tmp / f"video-{tag}").mkdir()
    long_v = make_bench_video(ctx.tmp / "video-long" / "long.mp4", long_s)
    short_v = make_bench_video(ctx.tmp / "video-short" / "short.mp4", short_s)
    log(f"videos made in {time.perf_counter() - t0:.0f} s")
    short_wall, short_rss, _ = queuer_rss(ctx, short_v, "short")
    # the long one: decode on the queuer host, then the frames it put go through one filter host
    folder = long_v.parent
    server = ctx.beanstalkd()
    out = ctx.tmp / "rss-long"
    cmd: list = [
        PY,
        RSS_WRAPPER,
        out,
        *script(
            "queuer.py",
            "--beanstalkd",
            server.address,
            "--state",
            ctx.tmp / "q-long.sqlite",
            "--set",
            "beanstalkd.max_ready=0",
            folder,
        ),
    ]
    long_wall = run(cmd, ctx.tmp / "queuer-long.log")
    long_rss = float(out.read_text())
    frames = int(server.tube("images")["current-jobs-ready"])
    workers = ctx.args.scale_workers
    filter_wall = run(
        script("filter.py", "--beanstalkd", server.address, "--burst", "--workers", workers),
        ctx.tmp / "filter-video.log",
    )
    db = ctx.tmp / "video.db"
    run(script("collector.py", "--beanstalkd", server.address, "--burst", "--db", db), ctx.tmp / "collector-video.log")
    with sqlite3.connect(db) as conn:
        tracks = conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
        stored = conn.execute("SELECT frames FROM videos").fetchone()[0]
    decode_x, filter_x = long_s / long_wall, long_s / filter_wall
    rep.add("video", f"{long_s} s 1080p30 video: frames sent at 1 fps", f"{frames}")
    rep.add("video", "queuer host: decode, sample, JPEG and put (x real time)", f"{decode_x:.1f}x")
    rep.add("video", f"one filter host, {workers} workers (x real time)", f"{filter_x:.1f}x", ">= 5x", filter_x >= 5)
    rep.add("video", "filter host: frames/s", f"{frames / filter_wall:.2f}")
    every_x = frames / filter_wall / settings_mod.Video().fps  # had no sample been skipped as unchanged
    rep.add("video", "the same if every sample were sent (x real time)", f"{every_x:.1f}x")
    rep.add("video", "frames stored / tracks made", f"{stored} / {tracks}")
    rep.add("video", f"queuer peak RSS, {short_s} s video", f"{short_rss / MB:.0f} MB")
    growth = long_rss / short_rss
    rep.add("video", f"queuer peak RSS, {long_s} s video", f"{long_rss / MB:.0f} MB")
    rep.add("video", f"RSS {long_s} s / {short_s} s", f"{growth:.2f}x", "<= 1.1x", growth <= 1.1)
    ctx.keys.update(
        video_seconds=long_s,
        video_frames=frames,
        video_decode_x_realtime=round(decode_x, 2),
        video_filter_x_realtime=round(filter_x, 2),
        video_filter_workers=workers,
        video_filter_frames_per_s=round(frames / filter_wall, 2),
        video_filter_x_realtime_every_sample=round(every_x, 2),
        video_queuer_rss_short_mb=round(short_rss / MB, 1),
        video_queuer_rss_long_mb=round(long_rss / MB, 1),
        video_queuer_rss_growth=round(growth, 3),
        video_short_seconds=short_s,
        video_short_queuer_s=round(short_wall, 1),
    )


def sec_tracks(ctx: Context) -> None:
    """The collector's cost per one-frame batch as one video grows: tracks are built on from
    each batch's earliest frame, so the last frames of a long video should cost what the first do."""

    rep, n = ctx.report, 3000 if not ctx.args.quick else 600
    rng = np.random.default_rng(4)
    crop = standin_template()["crops"][0]
    people = [rng.normal(size=envelope.ENCODING_DIM).astype(np.float32) * 0.05 for _ in range(2)]
    video_id = "cd" * 32
    db = store.open_db(ctx.tmp / "tracks.db")
    took = []
    for k in range(n):  # two people on screen the whole time: two tracks as long as the video
        t = float(k)
        faces = [
            envelope.Face(
                (50, 260 + 300 * p + k % 40, 170, 140 + 300 * p + k % 40),
                base + rng.normal(size=envelope.ENCODING_DIM).astype(np.float32) * 0.01,
                crop,
            )
            for p, base in enumerate(people)
        ]
        frame = {"video_id": video_id, "t": t, "t_end": t, "index": 30 * k, "fps": 1.0, "duration": float(n)}
        result = envelope.Result(
            id=envelope.frame_id(video_id, t),
            path="long.mp4",
            host="bench",
            size=40_000,
            mtime=0.0,
            queued_at=0.0,
            status="ok",
            width=1280,
            height=720,
            faces=faces,
            frame=frame,
        )
        t0 = time.perf_counter()
        store.store_results(db, [result])
        took.append(time.perf_counter() - t0)
    tracks = db.execute("SELECT count(*) FROM tracks").fetchone()[0]
    db.conn.close()
    tenth = n // 10
    first, last = med(took[:tenth]) * 1000, med(took[-tenth:]) * 1000
    rep.add("tracks", f"one-frame batches of one {n}-frame video: tracks made", str(tracks))
    rep.add("tracks", f"collector ms per one-frame batch, frames 1-{tenth}", f"{first:.2f}")
    rep.add("tracks", f"collector ms per one-frame batch, frames {n - tenth + 1}-{n}", f"{last:.2f}")
    rep.add("tracks", "last tenth / first tenth", f"{last / first:.2f}x")
    ctx.keys.update(tracks_frames=n, tracks_first_ms=round(first, 3), tracks_last_ms=round(last, 3))
