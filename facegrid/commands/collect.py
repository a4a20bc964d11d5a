"""`facegrid collect` and collector.py: store results from the people tube in SQLite (see --help)."""

from facegrid import cli

EPILOG = """\
examples:
  collector.py                                runs until stopped, into [collector] database
  collector.py --db /srv/facegrid/faces.db --beanstalkd 10.0.0.5:11300
  collector.py --burst                        exit 0 once both tubes are drained

Run exactly one collector per database. Results are upserted by the photo's
sha256 in batches, one transaction each, and deleted from the tube only after
the commit: a crash loses nothing and a redelivered result changes nothing.
exit codes: 0 done, 2 usage or settings error, 3 beanstalkd unreachable
"""


def main(argv=None) -> int:
    p = cli.parser("collector.py", "Store face results from the people tube in SQLite.", EPILOG)
    p.add_argument("--db", metavar="PATH", help="SQLite database ([collector] database)")
    cli.setting_flag(p, "--batch", "collector.batch", "results per transaction", "N")
    p.add_argument("--burst", action="store_true", help="exit 0 once nothing is ready or reserved on either tube")
    args = p.parse_args(argv)
    cli.setup_logging(args)
    settings = cli.load_settings(args, {"collector.database": args.db})
    from facegrid.collecting import run_collector

    return run_collector(settings, settings.collector.database, args.burst)
