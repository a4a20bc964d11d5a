"""`facegrid search` and search.py: find the person in TARGET_DIR across every stored photo (see --help)."""

import sys
from pathlib import Path

from facegrid import cli
from facegrid.errors import EXIT_NO_RESULT, EXIT_OK

EPILOG = """\
examples:
  search.py target/                           photos of one person in target/; ranked matches
  search.py target/ --json > matches.json     the same as JSON
  search.py obama.jpg                         one photo as the target
  search.py target/ --out found/ --tolerance 0.45
  search.py target/ --db /srv/facegrid/faces.db
  search.py target/ --db 2023.db --db 2024.db  several databases searched as one collection
  search.py --people                          who is in the collection: matches/people/index.html
  search.py --person Alice --db faces.db      search from the faces of a person of the registry
  search.py --people --out who/ && search.py who/person-003/
                                              cluster, then search for one of the persons found
  search.py --export photos/ --id 0d4b9c1e    write one stored annotated photo (or all, without --id)

Each target photo should show the person alone; photos with no face or several
faces are named and left out. Matches are copied to --out (default
matches/<target folder name>/, which may not lie inside the target folder) as
0001-<original name>.jpg, with report.csv and report.html; in a group photo the
matched face is boxed in magenta, the others in green. --person NAME (or ID) searches
from the faces of a person of the people registry (`facegrid people`), as a target
folder of those faces would. --people brings the registry up to date first (it writes
it; a plain search writes nothing): persons keep their ids and names from run to run
(person-ID/ folders).
Each search tightens the tolerance (at most 0.5) where the collection holds many
look-alikes of the person, then searches again from its surest matches; the
confidence word comes with the share of right matches measured at that score
(docs/search.md). Lower --tolerance is stricter. A target folder whose photos
show different people is refused, naming the groups.
exit codes: 0 matches found, 1 no match, 2 usage or settings error (a missing --db included)
"""


def _parser():
    """The flags of search.py: a target (TARGET_DIR or --person) or a collection mode (--people, --export)."""
    p = cli.parser("search.py", "Find one person across every photo the grid has stored.", EPILOG)
    p.add_argument(
        "target", metavar="TARGET_DIR", nargs="?", help="folder with photos of the person, or one photo of them"
    )
    p.add_argument(
        "--db",
        metavar="PATH",
        action="append",
        default=[],
        help="SQLite database ([collector] database); repeat to search several as one",
    )
    p.add_argument("--out", metavar="DIR", help="where to copy matches (default: [search] out/<target name>)")
    tolerance_help = "largest face distance that can count as a match (tightened among look-alikes)"
    cli.setting_flag(p, "--tolerance", "search.tolerance", tolerance_help, "D")
    cli.setting_flag(p, "--mode", "search.mode", "distance to the nearest target face, or to their mean")
    cli.setting_flag(p, "--limit", "search.limit", "at most N matches (0: all)", "N")
    p.add_argument("--json", action="store_true", help='print {"matches": [...]} to stdout')
    p.add_argument(
        "--people",
        action="store_true",
        help="no target: cluster every stored face into persons (--out, default [search] out/people)",
    )
    p.add_argument(
        "--person",
        metavar="NAME",
        help="no target: search from the faces of this person of the people registry (a name or an id)",
    )
    p.add_argument("--export", metavar="DIR", help="no target: write stored annotated photos to DIR as <sha256>.jpg")
    p.add_argument(
        "--id",
        metavar="SHA256",
        action="append",
        default=[],
        help="with --export: only this photo (repeatable; 8+ leading hex digits do); default all",
    )
    return p


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if sum(map(bool, (args.target, args.people, args.export, args.person))) != 1:
        p.error("give exactly one of TARGET_DIR, --person NAME, --people or --export DIR")
    cli.setup_logging(args)
    settings = cli.load_settings(
        args,
        {
            "collector.database": (args.db or [None])[0],
        },
    )
    if args.people or args.export:
        return _collection_modes(args, settings)
    return _search(args, settings)


def _search(args, settings) -> int:
    """TARGET_DIR or --person: search for one person, write the copies and report, print the matches."""
    from facegrid import report, searching
    from facegrid import targets as targets_mod
    from facegrid.faces import FaceEngine

    s = settings.search
    files = [] if args.person else targets_mod.target_files(args.target)  # usage errors before loading models
    out = Path(args.out) if args.out else None
    if not args.person:
        out = out or searching.default_out(s.out, args.target)
        searching.check_out(args.target, out)
    db = searching.open_store(args.db or [settings.collector.database])
    if args.person:
        from facegrid import registry

        person, files, targets = registry.person_targets(db, args.person)
        out = out or Path(s.out) / f"person-{person['id']:03d}"
    else:
        targets = targets_mod.encode_targets(
            FaceEngine(settings.filter), args.target, s.mixed_distance, s.target_mirror == "on"
        )
    assert out is not None
    found = searching.find(db, targets, s.params(), s.mode, s.limit)
    matches = found.matches
    report.write_outputs(db, matches, targets, out, settings)
    if args.json:
        print(report.as_json(found, targets, settings, out))
    else:
        report.print_table(matches)
    print(
        f"{len(matches)} match(es) for {len(targets)} of {len(files)} target photo(s); copies and report in {out}/",
        file=sys.stderr,
    )
    return EXIT_OK if matches else EXIT_NO_RESULT


def _collection_modes(args, settings) -> int:
    """--people and --export: they read the whole database, no target."""
    from facegrid import searching

    db = searching.open_store(args.db or [settings.collector.database])
    if args.export:
        from facegrid import export

        written, missing = export.export(db, Path(args.export), args.id)
        print(f"{written} annotated photo(s) written to {args.export}/", file=sys.stderr)
        return EXIT_OK if written else EXIT_NO_RESULT
    from facegrid import registry, report
    from facegrid.faces import FaceEngine

    out = Path(args.out) if args.out else Path(settings.search.out) / "people"
    params = settings.search.params()
    kept = registry.open_registry(db) if len(db) == 1 else None
    if kept is None:
        found = report.write_people(db, out, params, FaceEngine(settings.filter))
    else:
        print(registry.update(kept, params).line(), file=sys.stderr)
        found = report.write_people(kept, out, params, FaceEngine(settings.filter), registry.people_of(kept))
    print(
        f"{len(found)} person(s) in {sum(len(x.faces) for x in found)} face(s); see {out}/index.html", file=sys.stderr
    )
    return EXIT_OK if found else EXIT_NO_RESULT
