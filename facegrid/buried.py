"""scripts/buried: list buried jobs with their reasons, kick, requeue or delete them.

Listing must not change anything, and peek-buried shows only the first buried
job of a tube. beanstalkd 1.12 answers ``stats-job <id>`` and ``peek <id>`` for
any job in any state, and job ids are handed out in increasing order, so the
list is made by scanning ids with stats-job (pipelined, read-only) until every
job that stats-tube counts as buried has been found (buried_scan.py). The
bodies are then peeked, never reserved.

Reasons: beanstalkd keeps none, so they are reconstructed honestly:
  - a body that envelope.decode refuses was buried for exactly that fault;
  - a photo the filter gave up on has an error result in the database, whose
    error column holds the reason (pass --db);
  - otherwise the worker's log has it: grep for "burying job <id>".

kick moves buried jobs back to ready. A job the filter buried after
beanstalkd.max_attempts keeps its reserve count, so the filter would bury it
again at once: requeue puts a fresh copy of the body (same tube, priority and
TTR) and only then deletes the buried job, so nothing is lost even if the
requeue stops half way (at worst a photo is done twice; the upserts make that
harmless).

delete removes buried jobs for good: the ones named with --id, or with --all-foreign
every buried job whose body is not a facegrid job at all (no facegrid magic: another
program's job on our tubes). A facegrid job is never deleted by --all-foreign, even
a damaged one: its photo would be lost without a word.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import greenstalk

from . import cli, envelope, store
from .beanstalk import Queue
from .buried_scan import SCAN_CHUNK as SCAN_CHUNK  # the scan's, still buried.NAME
from .buried_scan import SCAN_TAIL as SCAN_TAIL
from .buried_scan import BuriedJob, buried_counts, scan
from .buried_scan import Scanner as Scanner
from .envelope import ImageJob, Result
from .errors import BadJob, QueueUnavailable
from .textsafe import printable


def explain(
    client: greenstalk.Client, job: BuriedJob, db_path: str | None, keys: envelope.Keyring | None = None
) -> None:
    """Fill in path, image id and reason from the body (peeked) and the database."""
    try:
        body = client.peek(job.id).body
    except greenstalk.NotFoundError:
        job.reason = "gone since the scan (kicked or deleted)"
        return
    try:
        decoded = envelope.decode(body, keys)
    except BadJob as exc:
        job.reason = f"bad job body: {exc}"
        return
    job.path, job.image_id = decoded.path, decoded.id
    stored = _stored_error(db_path, decoded.id)
    if isinstance(decoded, ImageJob) and stored:
        job.reason = stored
    elif isinstance(decoded, Result):
        job.reason = (
            "collector could not store this result (its log has the SQLite error); "
            f"database has it: {'yes' if stored is not None else 'no'}"
        )
    else:
        job.reason = f"not in the database; see the filter's log: grep 'burying job {job.id}'"


def _stored_error(db_path: str | None, image_id: str) -> str | None:
    """The stored error for this photo, '' if stored without one, None if not stored."""
    if not db_path or not Path(db_path).exists():
        return None
    row = store.stored_status(db_path, image_id)
    return None if row is None else (row[1] or "")


def kick(client: greenstalk.Client, tubes: list[str], bound: int | None) -> dict[str, int]:
    """Kick up to bound buried jobs per tube (None: all of them)."""
    done = {}
    for tube, count in buried_counts(client, tubes).items():
        if count:
            client.use(tube)
            done[tube] = client.kick(count if bound is None else bound)
    return done


def kick_ids(client: greenstalk.Client, ids: list[int]) -> int:
    n = 0
    for jid in ids:
        try:
            client.kick_job(jid)
            n += 1
        except greenstalk.NotFoundError:
            pass
    return n


def requeue(client: greenstalk.Client, jobs: list[BuriedJob]) -> int:
    """A fresh copy of each body on its tube, then delete the buried job."""
    n = 0
    for job in jobs:
        try:
            body = client.peek(job.id).body
        except greenstalk.NotFoundError:
            continue
        client.use(job.tube)
        client.put(body, priority=job.pri, ttr=max(job.ttr, 1))
        with contextlib.suppress(greenstalk.NotFoundError):
            client.delete(job.id)
        n += 1
    return n


def is_foreign(body: bytes) -> bool:
    """Not a facegrid job at all: the body does not start with facegrid's magic."""
    return body[: len(envelope.MAGIC)] != envelope.MAGIC


def delete(client: greenstalk.Client, ids: list[int]) -> int:
    """Delete these jobs if they are (still) buried; returns how many went."""
    n = 0
    for jid in ids:
        try:
            if client.stats_job(jid).get("state") != "buried":
                continue
            client.delete(jid)
            n += 1
        except greenstalk.NotFoundError:
            continue
    return n


def foreign_ids(client: greenstalk.Client, jobs: list[BuriedJob]) -> list[int]:
    """The buried jobs whose bodies are not facegrid's (peeked, never reserved)."""
    out = []
    for job in jobs:
        try:
            body = client.peek(job.id).body
        except greenstalk.NotFoundError:
            continue
        if is_foreign(body):
            out.append(job.id)
    return out


def render(jobs: list[BuriedJob], want: dict[str, int]) -> str:
    lines = [f"{'id':>8}  {'tube':<8}  {'age':>7}  {'tries':>5}  path / reason"]
    for j in sorted(jobs, key=lambda j: j.id):
        lines.append(f"{j.id:>8}  {j.tube:<8}  {_age(j.age):>7}  {j.reserves:>5}  {printable(j.path or '(no path)')}")
        lines.append(f"{'':>37}{printable(j.reason)}")
    total, found = sum(want.values()), len(jobs)
    lines.append(f"{found} buried job(s) on {', '.join(f'{t} ({n})' for t, n in want.items())}")
    if found < total:
        lines.append(
            f"{total - found} counted by beanstalkd were not found by the id scan (buried meanwhile?); run it again"
        )
    return "\n".join(lines)


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


# -- the command line: python -m facegrid.buried (scripts/buried) ----------------------------
EPILOG = """\
examples:
  scripts/buried list                         every buried job, its photo and why (read-only)
  scripts/buried list --db /srv/facegrid/faces.db --json
  scripts/buried kick 10                      back to ready: at most 10 per tube
  scripts/buried kick --all --tube people     after fixing the collector's disk
  scripts/buried requeue --all --tube images  after a filter fix: fresh jobs, attempts from 0
  scripts/buried delete --id 4711             this buried job, for good
  scripts/buried delete --all-foreign         every buried job that is not facegrid's (another program's)

kick keeps a job's reserve count: the filter buries a photo again at once when
it was buried for beanstalkd.max_attempts; requeue puts a fresh copy first and
then deletes the buried job. delete --all-foreign never touches a facegrid job,
even a damaged one. docs/operators.md explains how the list is made.
exit codes: 0 ok (list: nothing buried or listed), 2 usage, 3 beanstalkd unreachable
"""


def _parser():
    """scripts/buried's flags."""
    p = cli.parser("buried", "List, kick, requeue or delete buried jobs.", EPILOG)
    p.add_argument("action", choices=("list", "kick", "requeue", "delete"))
    p.add_argument("count", nargs="?", type=int, metavar="N", help="kick/requeue: at most N jobs per tube")
    p.add_argument("--all", action="store_true", help="kick/requeue: every buried job")
    p.add_argument(
        "--id", type=int, action="append", default=[], metavar="JOB", help="kick/requeue: only this job id (repeatable)"
    )
    p.add_argument(
        "--tube",
        action="append",
        default=[],
        metavar="NAME",
        help="only this tube (repeatable; default: the images and people tubes)",
    )
    p.add_argument(
        "--all-foreign", action="store_true", help="delete: every buried job whose body is not a facegrid job"
    )
    p.add_argument("--db", metavar="PATH", help="database with the stored error of each photo ([collector] database)")
    p.add_argument("--json", action="store_true", help="list: JSON instead of a table")
    return p


def _check_choice(p, args) -> None:
    """Each action with the choice of jobs it takes (N, --all, --id or --all-foreign), else a usage
    error (exit 2) before anything is asked of beanstalkd."""
    chosen = sum((args.count is not None, args.all, bool(args.id), args.all_foreign))
    if args.action == "list" and chosen:
        p.error("list takes no N, --all, --id or --all-foreign")
    if args.action == "delete" and (args.count is not None or args.all or chosen != 1):
        p.error("delete: give --id JOB (repeatable) or --all-foreign; requeue or kick facegrid's own jobs instead")
    if args.all_foreign and args.action != "delete":
        p.error("--all-foreign goes with delete")
    if args.action not in ("list", "delete") and chosen != 1:
        p.error(f"{args.action}: give exactly one of N, --all or --id JOB")
    if args.count is not None and args.count < 1:
        p.error("N must be 1 or more")


def main(argv=None) -> int:
    """scripts/buried: list, kick, requeue or delete buried jobs; the exit code."""
    p = _parser()
    args = p.parse_args(argv)
    _check_choice(p, args)
    cli.setup_logging(args)
    settings = cli.load_settings(args, {"collector.database": args.db})
    keys = envelope.load_keys(settings.grid.key_file)  # a forged job then shows why it was buried

    b = settings.beanstalkd
    tubes = args.tube or [b.images_tube, b.people_tube]
    queue = Queue(b).connect()  # exit code 3 when unreachable
    client = queue.client
    if client is None:  # connect() opens it or raises: never here
        raise QueueUnavailable(f"no connection to beanstalkd at {queue.address}")
    done = _without_scan(args, client, tubes)
    if done is not None:
        print(done)
        return 0
    jobs, want = scan(b, client, tubes)
    if args.action == "delete":
        ids = foreign_ids(client, jobs)
        print(f"deleted {delete(client, ids)} buried job(s) that are not facegrid's; {len(jobs) - len(ids)} left")
    elif args.action == "requeue":
        print(f"requeued {requeue(client, _to_requeue(args, jobs, tubes))} job(s) as fresh jobs")
    else:
        _list(client, jobs, want, settings.collector.database, keys, args.json)
    return 0


def _without_scan(args, client: greenstalk.Client, tubes: list[str]) -> str | None:
    """The actions that need no scan of the ids (kick, delete --id), done: the line they print.
    None for the others."""
    if args.action == "kick" and not args.id:
        done = kick(client, tubes, None if args.all else args.count)
        return f"kicked {sum(done.values())} job(s): " + ", ".join(f"{t} {n}" for t, n in done.items())
    if args.action == "kick":
        return f"kicked {kick_ids(client, args.id)} of {len(args.id)} job(s)"
    if args.action == "delete" and args.id:
        return f"deleted {delete(client, args.id)} of {len(args.id)} buried job(s)"
    return None


def _to_requeue(args, jobs: list[BuriedJob], tubes: list[str]) -> list[BuriedJob]:
    """The scanned jobs requeue was asked for: those of --id, or every one (--all), or the first N of
    each tube, lowest id first."""
    if args.id:
        return [j for j in jobs if j.id in set(args.id)]
    jobs = sorted(jobs, key=lambda j: j.id)
    return jobs if args.all else [j for t in tubes for j in [x for x in jobs if x.tube == t][: args.count]]


def _list(client: greenstalk.Client, jobs: list[BuriedJob], want: dict[str, int], db_path, keys, as_json: bool):
    """list: each job explained (its body peeked, its photo looked up), then a table or JSON."""
    for job in jobs:
        explain(client, job, db_path, keys)
    if as_json:
        print(json.dumps({"buried": [j.as_dict() for j in jobs], "counted": want}, indent=2))
    else:
        print(render(jobs, want))


if __name__ == "__main__":
    sys.exit(cli.run(main))
