#!/usr/bin/env python3
"""Make docs/web-search.png, web-photo.png, web-people.png, web-watch.png and web-status.png.

The labelled photos (../shared/faces or $FACEGRID_FACES), copied so the pages show the copy's
paths, go through a private grid (localgrid.run_grid); the people registry is made and two
persons named; one is watched; a new photo of him is stored, so the watch page has an alert;
photos are queued with no filter running, so the status page has work waiting. Then
`python -m facegrid web` serves the database and Debian's Chromium (Playwright) takes each page.
  scripts/web-screenshots.py [WORK_DIR]     (default: /tmp/facegrid-web-screenshots, emptied first)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import localgrid  # noqa: E402  (tests/localgrid.py: a private beanstalkd and the real scripts)
from PIL import Image, ImageOps  # noqa: E402

FACES = Path(os.environ.get("FACEGRID_FACES", ROOT.parent / "shared" / "faces"))


def facegrid(*args) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "facegrid", *map(str, args)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        words = " ".join(map(str, args))
        raise SystemExit(f"web-screenshots: facegrid {words} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


def person_of(db: Path, photo_name: str) -> int:
    for p in json.loads(facegrid("people", "list", "--json", "--db", db)):
        shown = json.loads(facegrid("people", "show", p["id"], "--json", "--db", db))
        if any(f["path"].endswith("/" + photo_name) for f in shown["faces"]):
            return p["id"]
    raise SystemExit(f"web-screenshots: no person holds {photo_name}")


def main(argv: list[str]) -> int:
    import argparse

    from webserver import WebServer, browser, chromium_path

    p = argparse.ArgumentParser(prog="web-screenshots.py", description=__doc__.split("\n\n")[0])
    p.add_argument("work", nargs="?", default="/tmp/facegrid-web-screenshots", help="work folder (emptied first)")
    args = p.parse_args(argv)
    if not (FACES / "labels.csv").exists() or chromium_path() is None:
        print("web-screenshots: needs ../shared/faces (or FACEGRID_FACES) and Debian's chromium", file=sys.stderr)
        return 2
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    photos, new, db, alerts = work / "photos", work / "new", work / "faces.db", work / "alerts.jsonl"
    shutil.copytree(FACES, photos, ignore=shutil.ignore_patterns("*.csv", "*.md"))
    new.mkdir()
    # a photo of him the grid has not seen: the same frame, mirrored (other bytes, another id)
    ImageOps.mirror(Image.open(FACES / "people/obama/obama2.jpg")).save(new / "obama-at-the-podium.jpg", quality=90)
    extra = ("--set", f"alerts.file={alerts}")
    from facegrid.commands import COMMANDS

    people, watch = "people" in COMMANDS, "watch" in COMMANDS  # the registry and the watches (issue 19)
    localgrid.run_grid([photos], db, work / "grid", extra=extra)
    if people:
        facegrid("people", "update", "--db", db)
        obama, biden = person_of(db, "obama.jpg"), person_of(db, "biden.jpg")
        facegrid("people", "name", obama, "Barack Obama", "--db", db)
        facegrid("people", "name", biden, "Joe Biden", "--db", db)
    if watch:
        target = work / "target"
        target.mkdir()
        shutil.copy(FACES / "people/obama/obama.jpg", target)
        facegrid("watch", "add", "Barack Obama", target, "--db", db)
        localgrid.run_grid([new], db, work / "grid-new", extra=extra)
    with localgrid.Server(work / "binlog") as server:
        client = server.client(use="images", watch="images")  # one job the filter would bury: a bad body
        client.put(b"not a facegrid job")
        client.bury(client.reserve(timeout=5))
        client.close()
        subprocess.run(
            localgrid.script("queuer.py", photos, "--state", work / "q.sqlite", "--beanstalkd", server.address, "-q"),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        web = WebServer(work / "web.log", "--db", db, "--beanstalkd", server.address, *extra).start()
        try:
            shots(web, browser, people, watch)
        finally:
            web.stop()
    return 0


def shots(web, browser, people: bool, watch: bool) -> None:
    docs = ROOT / "docs"
    with browser() as b:
        pg = b.new_page(viewport={"width": 1280, "height": 900})
        pg.goto(web.url + "/")
        pg.set_input_files("#target", [str(FACES / "people/obama/obama.jpg")])
        pg.wait_for_url("**/results/**")
        pg.wait_for_load_state("networkidle")
        pg.screenshot(path=docs / "web-search.png")
        pg.locator("#matches .card", has_text="obama_and_biden.jpg").locator("a.thumb").click()
        pg.wait_for_load_state("networkidle")
        pg.screenshot(path=docs / "web-photo.png")
        if people:
            pg.goto(web.url + "/people")
            pg.wait_for_load_state("networkidle")
            pg.screenshot(path=docs / "web-people.png")
        if watch:
            pg.goto(web.url + "/watch")
            pg.wait_for_selector("#alerts-body tr")
            pg.wait_for_load_state("networkidle")
            pg.screenshot(path=docs / "web-watch.png")
        pg.goto(web.url + "/status")
        pg.wait_for_selector("#status table")
        time.sleep(4.5)  # two more samples: rates over a few seconds
        pg.screenshot(path=docs / "web-status.png")
    made = "web-search.png, web-photo.png, " + ("web-people.png, " if people else "")
    made += ("web-watch.png, " if watch else "") + "web-status.png"
    print(f"wrote docs/{made}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
