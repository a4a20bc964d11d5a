"""What the pages read: the databases (read-only, one connection set per thread), searches and their
results, the photos' pictures, and the grid's status.

Every query goes through store.py; every search through searching.py, so a page and the API give
what search.py gives. Results are kept in memory by a random id (a few dozen, the oldest dropped),
so a results page can be reloaded and downloaded as CSV or JSON without searching again.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import importlib
import io
import json
import logging
import re
import secrets
import threading
import time
from pathlib import Path

from .. import htmlkit, imaging, report, searching, store
from .. import targets as targets_mod
from ..databases import Collection
from ..errors import UsageError
from ..settings import Settings

log = logging.getLogger("facegrid.web")

PHOTO_ID = re.compile(r"^[0-9a-f]{64}$")
KEPT_RESULTS = 32  # searches kept for reloads and downloads
KEPT_THUMBS = 4000  # thumbnails kept in memory (about 20 KB each)
PEOPLE_SHOWN = 500  # persons a database shows on the People page (most faces first)
ALERTS_SHOWN = 200  # alerts the Watchlist page starts with
ALERT_TAIL = 1024 * 1024  # bytes of the alerts file read at once


@dataclasses.dataclass
class Result:
    """One search as the pages show it: the matches, the profile it came from, what it was asked."""

    id: str
    asked: str  # "2 uploaded photos", "face 1 of photo 0d4b9c1e..."
    found: searching.Found
    targets: list[targets_mod.Target]
    data: dict  # report.as_data: exactly search.py --json
    sizes: dict[str, tuple[int, int]]  # photo id -> upright width, height (for the boxes)
    at: float = dataclasses.field(default_factory=time.time)


class Library:
    """The databases and the face engine behind the pages (one per server process)."""

    def __init__(self, db_paths: list[str], settings: Settings, engine=None):
        self.paths = list(db_paths)
        self.settings = settings
        Collection(self.paths)  # refuse a missing or foreign database now, with store's one-line error
        self._local = threading.local()
        self._engine = engine
        self._engine_lock = threading.Lock()
        self._search_lock = threading.Lock()
        self._results: collections.OrderedDict[str, Result] = collections.OrderedDict()
        self._thumbs: collections.OrderedDict[tuple[str, int], bytes] = collections.OrderedDict()
        self._lock = threading.Lock()

    # -- the databases ------------------------------------------------------------------------
    def coll(self) -> Collection:
        """This thread's read-only connections (sqlite3 connections stay in the thread that made them)."""
        coll = getattr(self._local, "coll", None)
        if coll is None:
            coll = self._local.coll = Collection(self.paths)
        return coll

    def holder(self, image_id: str):
        """The first database that holds this photo (ids are the photo's sha256: the same everywhere)."""
        if not PHOTO_ID.match(image_id):
            return None
        for db in self.coll().dbs:
            if store.photo(db, image_id) is not None:
                return db
        return None

    def photo(self, image_id: str) -> dict | None:
        """A photo with its faces, or None (a malformed id is simply not stored)."""
        db = self.holder(image_id)
        if db is None:
            return None
        out = store.photo(db, image_id) or {}
        out["faces"] = store.photo_faces(db, image_id)
        return out

    def annotated(self, image_id: str) -> bytes | None:
        db = self.holder(image_id)
        jpeg = store.annotated_jpeg(db, image_id) if db is not None else None
        return jpeg if htmlkit.readable_jpeg(jpeg) else None

    def thumbnail(self, image_id: str, side: int = htmlkit.THUMB_SIDE) -> bytes | None:
        key = (image_id, side)
        with self._lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        jpeg = self.annotated(image_id)
        thumb = htmlkit.thumbnail(jpeg, side, what=f"photo {image_id}") if jpeg else b""
        with self._lock:
            self._thumbs[key] = thumb
            while len(self._thumbs) > KEPT_THUMBS:
                self._thumbs.popitem(last=False)
        return thumb or None

    def crop(self, image_id: str, idx: int) -> bytes | None:
        db = self.holder(image_id)
        crop = store.face_crop(db, image_id, idx) if db is not None else None
        return crop if htmlkit.readable_jpeg(crop) else None

    def counts(self) -> list[dict]:
        return [{"database": path, **store.counts(db)} for path, db in self.coll()]

    # -- searching ----------------------------------------------------------------------------
    def engine(self):
        with self._engine_lock:
            if self._engine is None:
                from ..faces import FaceEngine

                self._engine = FaceEngine(self.settings.filter)
            return self._engine

    def search_photos(self, photos: list[tuple[str, bytes]]) -> Result:
        """A search from uploaded photos, refused as search.py refuses a folder (UsageError)."""
        where = f"the {len(photos)} uploaded photo(s)"
        s = self.settings.search
        with self._search_lock:
            targets = targets_mod.encode_photos(self.engine(), photos, where, s.mixed_distance, s.target_mirror == "on")
            return self._search(targets, where)

    def search_face(self, image_id: str, idx: int) -> Result:
        """A search from one stored face (a click on a face of the Photo page)."""
        db = self.holder(image_id)
        found = store.face_encoding(db, image_id, idx) if db is not None else None
        if found is None:
            raise UsageError(f"photo {image_id[:16]} has no stored face {idx}; open the photo again")
        encoding, crop = found
        path = (store.photo(db, image_id) or {}).get("path") or image_id
        target = targets_mod.Target(f"{path} (face {idx})", image_id, encoding, crop)
        with self._search_lock:
            return self._search([target], f"face {idx} of {path}")

    def _search(self, targets: list[targets_mod.Target], asked: str) -> Result:
        s = self.settings.search
        coll = self.coll()
        found = searching.find(coll, targets, s.params(), s.mode, s.limit)
        sizes = {}
        for m in found.matches:
            row = store.photo(coll, m.image_id) or {}
            sizes[m.image_id] = (int(row.get("width") or 0), int(row.get("height") or 0))
        data = report.as_data(found, targets, self.settings, None)
        result = Result(secrets.token_urlsafe(12), asked, found, targets, data, sizes)
        with self._lock:
            self._results[result.id] = result
            while len(self._results) > KEPT_RESULTS:
                self._results.popitem(last=False)
        return result

    def result(self, rid: str) -> Result | None:
        with self._lock:
            return self._results.get(rid)

    # -- the people registry (docs/people.md) and the watches (docs/alerts.md) ------------------
    def people(self, limit: int = PEOPLE_SHOWN) -> list[dict]:
        """Every database's persons, most faces first, each with its best face (the largest)."""
        persons, person_faces = _store("persons"), _store("person_faces")
        if persons is None or person_faces is None:
            return []
        out = []
        for k, db in enumerate(self.coll().dbs):
            for p in persons(db)[:limit]:
                faces = person_faces(db, p["id"])
                best = max(faces, key=lambda f: (f["right"] - f["left"]) * (f["bottom"] - f["top"]), default=None)
                face = None if best is None else {"image_id": best["image_id"], "idx": best["idx"]}
                out.append({**p, "db": k, "best": face})
        return out

    def named_people(self) -> list[dict]:
        """The named persons of every database, for the Search page's picker."""
        persons = _store("persons")
        if persons is None:
            return []
        return [{**p, "db": k} for k, db in enumerate(self.coll().dbs) for p in persons(db) if p["name"]]

    def person(self, k: int, pid: int) -> dict | None:
        dbs = self.coll().dbs
        get_person, person_faces = _store("get_person"), _store("person_faces")
        if not 0 <= k < len(dbs) or get_person is None or person_faces is None:
            return None
        found = get_person(dbs[k], pid)
        if found is None:
            return None
        return {**found, "db": k, "faces": person_faces(dbs[k], pid)}

    def write(self, k: int, name: str, *args):
        """One registry change (store.name_person, merge_persons, split_person, reject_faces) through the
        store, on the database opened for writing for that change alone."""
        change = _store(name)
        if change is None:
            raise UsageError("this facegrid has no people registry (facegrid people); upgrade it")
        if not 0 <= k < len(self.paths):
            raise UsageError(f"no database {k}; the People page names each person's database")
        db = store.open_db(self.paths[k], create=False)
        try:
            return change(db, *args)
        finally:
            db.conn.close()

    def search_person(self, k: int, pid: int) -> Result:
        """A search from a person's faces, as search.py --person gives it (registry.person_targets)."""
        from types import SimpleNamespace

        try:
            registry = importlib.import_module("facegrid.registry")
        except ImportError:
            raise UsageError("this facegrid has no people registry (facegrid people); upgrade it") from None
        dbs = self.coll().dbs
        if not 0 <= k < len(dbs):
            raise UsageError(f"no database {k}; open the People page again")
        with self._search_lock:
            person, _, targets = registry.person_targets(SimpleNamespace(dbs=[dbs[k]]), str(pid))
            label = person["name"] or f"person {person['id']}"
            return self._search(targets, f"{label}'s {len(targets)} surest face(s)")

    def watches(self) -> list[dict]:
        watches, alert_counts = _store("watches"), _store("alert_counts")
        if watches is None or alert_counts is None:
            return []
        out = []
        for k, db in enumerate(self.coll().dbs):
            counts = alert_counts(db) if "alerts" in db.table_names() else {}
            for w in watches(db):
                n, last = counts.get(w["id"], (0, None))
                keep = ("id", "name", "source", "person_id", "tolerance")
                out.append({"db": k, **{key: w[key] for key in keep}, "alerts": n, "last_alert": last})
        return out

    def alerts(self, after: int) -> dict:
        """The alerts appended to [alerts] file since byte `after` (-1: the last ALERTS_SHOWN of it)."""
        conf = getattr(self.settings, "alerts", None)  # [alerts] (docs/alerts.md); none in an older facegrid
        path = Path(conf.file) if conf is not None and conf.file else None
        if path is None or not path.is_file():
            return {"alerts": [], "next": 0, "file": str(path or "")}
        size = path.stat().st_size
        start = 0 if after > size else after  # a new or emptied file: from its start
        with open(path, "rb") as f:
            if start < 0:
                start = max(0, size - ALERT_TAIL)
            f.seek(start)
            data = f.read(ALERT_TAIL)
        end = data.rfind(b"\n") + 1  # whole lines only; a line being written comes next time
        lines = data[:end].splitlines()
        if start > 0 and after < 0:
            lines = lines[1:]  # the first line of a tail may be cut
        found = []
        for line in lines:
            try:
                alert = json.loads(line)
            except ValueError:
                continue
            if isinstance(alert, dict):
                found.append(alert)
        return {"alerts": found[-ALERTS_SHOWN:], "next": start + end, "file": str(path)}

    def csv(self, result: Result) -> bytes:
        buf = io.StringIO(newline="")
        report.write_csv(buf, result.found.matches)
        return buf.getvalue().encode("utf-8")


def _store(name: str):
    """A store function of the people registry or the watches, or None in a facegrid without them."""
    return getattr(store, name, None)


def upload_name(name: str | None, data: bytes, k: int) -> str:
    """A name for an uploaded photo that is safe to show and log: its own base name, printable and
    short, or its number and the start of its sha256."""
    base = re.sub(r"[^\w.() -]", "_", (name or "").replace("\\", "/").rsplit("/", 1)[-1])[:80].strip()
    return base or f"photo {k + 1} ({hashlib.sha256(data).hexdigest()[:12]})"


def check_upload(name: str, data: bytes, limit: int) -> None:
    """An uploaded target is checked as the queuer and filter check a photo: size, then its first bytes."""
    if len(data) > limit:
        raise UsageError(f"{name}: {len(data):,} bytes, over the limit of {limit:,} ([web] max_upload_mb)")
    if not data:
        raise UsageError(f"{name}: the file is empty; pick a photo of the person")
    if imaging.sniff(data) is None:
        raise UsageError(f"{name}: not a photo (JPEG, PNG, WebP, TIFF, BMP, GIF or HEIC); pick a photo of the person")


__all__ = ["Library", "Result", "upload_name", "check_upload"]
