"""`facegrid watch`: the watched people, whose every new photo the collector alerts on (see --help)."""

from __future__ import annotations

import datetime
import json
import os
import sys

from facegrid import cli
from facegrid.errors import EXIT_NO_RESULT, EXIT_OK, UsageError
from facegrid.textsafe import printable

EPILOG = """\
examples:
  facegrid watch add alice photos-of-alice/ --db faces.db
  facegrid watch add "Alice B" --person 12 --db faces.db   a person of the people registry
  facegrid watch list --db faces.db                        (--json for a program)
  facegrid watch refresh --db faces.db                     every watch measured again
  facegrid watch remove alice --db faces.db

A watch is what a search for the person would use now: the profile made from its
photos and the first pass's surest matches, and the tolerance the look-alike rule
gives it in this collection. The collector checks every face it stores against it,
with the search's own rule and confidence, and alerts once per watch and photo:
[alerts] file, a log line, [alerts] tube, [alerts] command (docs/alerts.md).
Refresh once the collection has grown a lot: the tolerance tightens with it.
Only these commands write the watches; the collector writes the alerts.
exit codes: 0 done, 1 nothing to list or no such watch, 2 usage or settings error
"""
MAX_NAME = 100


VERBS = {
    "add": "watch a person: NAME and a folder of their photos, or --person ID",
    "list": "the watches, their tolerance and alerts",
    "refresh": "make each watch's profile and tolerance again from its photos",
    "remove": "stop watching NAME; its alerts stay recorded",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in VERBS:
        p = cli.parser("facegrid watch", "Watch people: alert when the collector stores a new photo of them.", EPILOG)
        p.add_argument("verb", choices=list(VERBS), help="; ".join(f"{k}: {v}" for k, v in VERBS.items()))
        p.parse_args(argv[:1])  # --help, or a usage error naming the verbs
        return EXIT_OK
    verb, rest = argv[0], argv[1:]
    p = cli.parser(f"facegrid watch {verb}", VERBS[verb] + ".", EPILOG)
    p.prog = f"{cli.PROG or 'facegrid watch'} {verb}"
    p.add_argument("--db", metavar="PATH", help="SQLite database ([collector] database)")
    if verb == "add":
        p.add_argument("name", metavar="NAME")
        p.add_argument("target", metavar="TARGET_DIR", nargs="?", help="folder with photos of the person")
        p.add_argument("--person", metavar="ID", type=int, help="a person of the people registry (facegrid people)")
    elif verb == "list":
        p.add_argument("--json", action="store_true", help="one JSON array on stdout")
    elif verb == "refresh":
        p.add_argument("names", metavar="NAME", nargs="*", help="only these (default: every watch)")
    else:
        p.add_argument("name", metavar="NAME")
    args = p.parse_args(rest)
    if verb == "add" and (args.target is None) == (args.person is None):
        p.error("watch add NAME needs exactly one of TARGET_DIR or --person ID")
    cli.setup_logging(args)
    settings = cli.load_settings(args, {"collector.database": args.db})
    run = {"add": _add, "list": _list, "refresh": _refresh, "remove": _remove}[verb]
    return run(args, settings, settings.collector.database)


def _open(db_path: str, create: bool = False):
    from facegrid import store

    if not create and not os.path.isfile(db_path):
        raise UsageError(f"database {db_path} does not exist; pass --db with the database the collector writes")
    return store.open_db(db_path, create=create)


def _add(args, settings, db_path: str) -> int:
    import numpy as np

    from facegrid import alerting, store

    name = _checked_name(args.name)
    db = _open(db_path, create=True)  # a watch may come before the first photo
    if any(w["name"] == name for w in store.watches(db)):
        raise UsageError(f"a watch named {name!r} exists; remove it first, or: facegrid watch refresh {name}")
    if args.person is not None:
        faces, encodings = _person(db, db_path, args.person)
        ids, source = [f["image_id"] for f in faces], f"person {args.person}"
    else:
        from facegrid import targets as targets_mod
        from facegrid.faces import FaceEngine

        targets_mod.target_files(args.target)  # usage errors before loading models
        targets = targets_mod.encode_targets(FaceEngine(settings.filter), args.target, settings.search.mixed_distance)
        encodings = np.stack([t.encoding for t in targets])
        ids, source = [t.id for t in targets], f"folder {os.path.abspath(args.target)}"
    watch = alerting.make_watch(db_path, name, encodings, ids, settings, source, args.person)
    watch_id = store.save_watch(db, watch)
    print(
        f"watching {printable(name)} (watch {watch_id}): {len(encodings)} photo(s), tolerance {watch['tolerance']:.3f}",
        file=sys.stderr,
    )
    return EXIT_OK


def _person(db, db_path: str, person_id: int):
    """The faces and encodings of a person of the people registry (store.person_encodings)."""
    from facegrid import store

    # the registry's reads, from its own migration; a build without them watches folders only
    has_registry, encodings_of = getattr(store, "has_registry", None), getattr(store, "person_encodings", None)
    if has_registry is None or encodings_of is None or not has_registry(db):
        raise UsageError(
            f"{db_path} has no people registry; run facegrid people update --db {db_path} first, "
            "or watch a folder of the person's photos: facegrid watch add NAME TARGET_DIR"
        )
    faces, encodings = encodings_of(db, person_id)
    if not faces:
        raise UsageError(f"person {person_id} is not in the people registry of {db_path}; see facegrid people list")
    return faces, encodings


def _refresh(args, settings, db_path: str) -> int:
    from facegrid import alerting, store

    db = _open(db_path)
    chosen = [w for w in store.watches(db) if not args.names or w["name"] in args.names]
    unknown = set(args.names) - {w["name"] for w in chosen}
    if unknown:
        raise UsageError(f"no watch named {sorted(unknown)[0]!r}; see facegrid watch list")
    for w in chosen:
        ids = json.loads(w["target_ids"])
        fresh = alerting.make_watch(
            db_path, w["name"], alerting.vectors(w["targets"]), ids, settings, w["source"], w["person_id"]
        )
        store.save_watch(db, fresh)
        print(f"{printable(w['name'])}: tolerance {w['tolerance']:.3f} -> {fresh['tolerance']:.3f}", file=sys.stderr)
    return EXIT_OK if chosen else EXIT_NO_RESULT


def _remove(args, settings, db_path: str) -> int:
    from facegrid import store

    if not store.remove_watch(_open(db_path), args.name):
        print(f"no watch named {printable(args.name)!r} in {db_path}; see facegrid watch list", file=sys.stderr)
        return EXIT_NO_RESULT
    print(f"stopped watching {printable(args.name)}", file=sys.stderr)
    return EXIT_OK


def _list(args, settings, db_path: str) -> int:
    from facegrid import alerting, store

    db = _open(db_path)
    counts = store.alert_counts(db)
    rows = []
    for w in store.watches(db):
        n, last = counts.get(w["id"], (0, None))
        rows.append(
            {
                "id": w["id"],
                "name": w["name"],
                "person": w["person_id"],
                "source": w["source"],
                "photos": len(alerting.vectors(w["targets"])),
                "mode": w["mode"],
                "tolerance": round(w["tolerance"], 4),
                "alerts": n,
                "last_alert": last,
                "refreshed_at": w["refreshed_at"],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(f"{'id':>4}  {'name':<24}  {'photos':>6}  {'tolerance':>9}  {'alerts':>6}  {'last alert':<19}  source")
        for r in rows:
            when = _clock(r["last_alert"]) if r["last_alert"] else "-"
            name, source = printable(r["name"])[:24], printable(r["source"])
            figures = f"{r['photos']:>6}  {r['tolerance']:>9.3f}  {r['alerts']:>6}"
            print(f"{r['id']:>4}  {name:<24}  {figures}  {when:<19}  {source}")
    return EXIT_OK if rows else EXIT_NO_RESULT


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or printable(name) != name:
        raise UsageError(f"watch name {printable(name)!r}: use 1-{MAX_NAME} printable characters")
    return name
