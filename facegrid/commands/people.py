"""`facegrid people`: the people registry, its persons named and corrected by hand (see --help)."""

import argparse
import json
import sys

from facegrid import cli
from facegrid.errors import EXIT_NO_RESULT, EXIT_OK, UsageError

EPILOG = """\
commands (those marked * write the registry; the others only read it):
  update *              bring the persons up to date with the stored faces (search.py --people does too)
  list [--json]         every person: id, name, faces, photos
  show ID [--json]      one person's faces with their photos' paths
  name ID NAME *        give a person a name (two persons may share one; ids never change)
  merge ID ID... *      move the other persons' faces into the first; the others are removed
  split ID FACE... *    move these faces of a person into a new person
  reject ID FACE... *   "not this person": the faces leave it, and no later update puts them back
  forget ID *           remove a person and its name; its faces stay out of every person from then on

ID is a person's number (12, #12 or person-012) or, where a person is meant, its name.
FACE is how `show` lists a face: the first 8 or more hex digits of its photo's id, a colon and
the face's number in the photo (0d4b9c1e:0); the photo's id alone will do when the person has one
face in that photo.

examples:
  facegrid people update --db faces.db
  facegrid people list --db faces.db
  facegrid people name 3 "Ada Lovelace" --db faces.db
  search.py --person "Ada Lovelace" --db faces.db
  facegrid people merge 3 17 --db faces.db
exit codes: 0 done, 1 nothing found (an empty list), 2 usage error (an unknown or ambiguous person)
"""


def main(argv=None) -> int:
    p = cli.parser("facegrid people", "Name and correct the persons of the people registry.", EPILOG)
    p.add_argument("--db", metavar="PATH", help="SQLite database ([collector] database)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("update", help="* bring the persons up to date")
    one = sub.add_parser("list", help="every person")
    one.add_argument("--json", action="store_true", help="print a JSON list")
    one = sub.add_parser("show", help="one person's faces")
    one.add_argument("id", metavar="ID")
    one.add_argument("--json", action="store_true", help="print a JSON object")
    one = sub.add_parser("name", help="* name a person")
    one.add_argument("id", metavar="ID")
    one.add_argument("name", metavar="NAME")
    one = sub.add_parser("merge", help="* merge persons into the first")
    one.add_argument("ids", metavar="ID", nargs="+")
    for verb, what in (("split", "* move faces into a new person"), ("reject", "* not this person")):
        one = sub.add_parser(verb, help=what)
        one.add_argument("id", metavar="ID")
        one.add_argument("faces", metavar="FACE", nargs="+")
    one = sub.add_parser("forget", help="* remove a person")
    one.add_argument("id", metavar="ID")
    for one in sub.choices.values():  # the common flags after the command work too
        quiet = argparse.SUPPRESS
        one.add_argument("--db", metavar="PATH", default=quiet, help="SQLite database ([collector] database)")
        one.add_argument("--config", metavar="PATH", default=quiet, help="settings file")
        one.add_argument(
            "--set", metavar="SECTION.KEY=VALUE", action="append", default=quiet, help="override a setting"
        )
        one.add_argument("-v", "--verbose", action="count", default=quiet, help="more log lines")
        one.add_argument("-q", "--quiet", action="count", default=quiet, help="fewer log lines")
    args = p.parse_args(argv)
    cli.setup_logging(args)
    settings = cli.load_settings(args, {"collector.database": args.db})
    path = settings.collector.database
    if args.command in ("list", "show"):
        from facegrid import store

        db = store.open_readonly(path)
        return _list(db, args) if args.command == "list" else _show(db, args)
    return _write(path, args, settings)


def _write(path: str, args, settings) -> int:
    from facegrid import registry, store

    db = store.open_db(path, create=False)
    if args.command == "update":
        print(registry.update(db, settings.search.params()).line(), file=sys.stderr)
        return EXIT_OK
    if args.command == "merge":
        if len(args.ids) < 2:
            raise UsageError("merge needs two or more persons, as in: facegrid people merge 3 7")
        ids = [store.find_person(db, i)["id"] for i in args.ids]
        done = store.merge_persons(db, ids[0], ids[1:])
        print(f"merged {', '.join(map(str, ids[1:]))} into {_label(done)}: {done['faces']} face(s)", file=sys.stderr)
        return EXIT_OK
    person = store.find_person(db, args.id)
    pid = person["id"]
    if args.command == "name":
        done = store.name_person(db, pid, args.name)
        print(f"person {pid} is now named {done['name']!r}", file=sys.stderr)
    elif args.command == "split":
        done = store.split_person(db, pid, _faces(db, pid, args.faces))
        print(f"{len(args.faces)} face(s) of person {pid} are now person {done['id']}", file=sys.stderr)
        print(done["id"])
    elif args.command == "reject":
        n = store.reject_faces(db, pid, _faces(db, pid, args.faces))
        print(f"{n} face(s) left person {pid}; no update puts them back in it", file=sys.stderr)
    else:
        n = store.forget_person(db, pid)
        print(f"person {pid} forgotten; its {n} face(s) stay out of every person", file=sys.stderr)
    return EXIT_OK


def _faces(db, pid: int, specs: list[str]) -> list[tuple[str, int]]:
    """FACE arguments (photo id prefix[:index]) -> (image_id, idx) of the person's faces."""
    from facegrid import store

    members = store.person_faces(db, pid)
    out = []
    for spec in specs:
        prefix, _, index = spec.strip().lower().partition(":")
        if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix) or (index and not index.isdigit()):
            raise UsageError(f"face {spec!r}: give 8+ hex digits of the photo's id and :N, as `people show` lists them")
        hits = [m for m in members if m["image_id"].startswith(prefix) and (not index or m["idx"] == int(index))]
        if len(hits) != 1:
            what = "no face" if not hits else f"{len(hits)} faces"
            raise UsageError(f"face {spec!r}: {what} of person {pid} match; `facegrid people show {pid}` lists them")
        out.append((hits[0]["image_id"], hits[0]["idx"]))
    return out


def _label(person: dict) -> str:
    return f"{person['id']} ({person['name']})" if person["name"] else str(person["id"])


def _list(db, args) -> int:
    from facegrid import store
    from facegrid.textsafe import printable

    found = store.persons(db)
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print(f"{'id':>6}  {'faces':>6}  {'photos':>6}  name")
        for p in found:
            print(f"{p['id']:>6}  {p['faces']:>6}  {p['photos']:>6}  {printable(p['name'] or '-')}")
    if not store.has_registry(db) or store.registry_generation(db) is None:
        print("the registry is empty: `facegrid people update` makes it", file=sys.stderr)
    return EXIT_OK if found else EXIT_NO_RESULT


def _show(db, args) -> int:
    from facegrid import store
    from facegrid.textsafe import printable

    person = store.find_person(db, args.id)
    faces = store.person_faces(db, person["id"])
    if args.json:
        keys = ("image_id", "idx", "path", "host", "top", "right", "bottom", "left", "video_id")
        print(json.dumps({**person, "faces": [{k: f[k] for k in keys} for f in faces]}, indent=2))
        return EXIT_OK
    print(f"person {_label(person)}: {person['faces']} face(s) in {person['photos']} photo(s)")
    for f in faces:
        print(f"  {f['image_id'][:12]}:{f['idx']}  {printable(f['host'] or '')[:12]:<12}  {printable(f['path'])}")
    return EXIT_OK
