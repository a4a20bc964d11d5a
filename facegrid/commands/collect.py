"""`facegrid collect` and collector.py: store results from the people tube in SQLite (see --help)."""

from facegrid import cli

EPILOG = """\
examples:
  collector.py                                runs until stopped, into [collector] database
  collector.py --db /srv/facegrid/faces.db --beanstalkd 10.0.0.5:11300
  collector.py --burst                        exit 0 once both tubes are drained

One collector per database: it holds a lock on DB-collector.lock, and a second
one refuses at start, naming the first's host and pid. Results are upserted by
the photo's sha256 in batches, one transaction each, and deleted from the tube
only after the commit: a crash loses nothing and a redelivered result changes
nothing. A database (or its folder) this user cannot write is refused at start;
one that becomes read-only while the collector runs ends it, the jobs it held
released to the tube.
exit codes: 0 done, 2 usage or settings error (a read-only or busy database
included), 3 beanstalkd unreachable
"""


def main(argv=None) -> int:
    p = cli.parser("collector.py", "Store face results from the people tube in SQLite.", EPILOG)
    p.add_argument("--db", metavar="PATH", help="SQLite database ([collector] database)")
    cli.setting_flag(p, "--batch", "collector.batch", "results per transaction", "N")
    p.add_argument("--burst", action="store_true", help="exit 0 once nothing is ready or reserved on either tube")
    args = p.parse_args(argv)
    cli.setup_logging(args)
    settings = cli.load_settings(args, {"collector.database": args.db})
    from facegrid.collector import run_collector

    return run_collector(settings, settings.collector.database, args.burst)
