"""`facegrid filter` and filter.py: detect and encode faces for jobs on the images tube (see --help)."""

import logging

from facegrid import cli

EPILOG = """\
examples:
  filter.py                                   one worker, runs until stopped
  filter.py --workers auto                    one worker per core, as memory allows
  filter.py --beanstalkd 10.0.0.5:11300 --workers 2
  filter.py --burst                           process until the images tube is empty, then exit 0
  filter.py --model cnn --upsample 0          dlib's CNN detector instead of HOG
  filter.py --upsample-max-side 1024          no upsampling for larger photos: faster, misses small faces

At start each worker logs which dlib it runs (the fast build with BLAS, or the
dlib-bin wheel) and its detector settings.

Each worker is a process with its own beanstalkd connection; add filter hosts to
go faster. SIGTERM or Ctrl-C: finish the current job, then exit 0; a second one
exits at once and the job goes back to the tube.
exit codes: 0 done, 2 usage or settings error, 3 beanstalkd unreachable
"""


def main(argv=None) -> int:
    p = cli.parser("filter.py", "Reserve photos, find and encode faces, push results to the people tube.", EPILOG)
    cli.setting_flag(p, "--workers", "filter.workers", "worker processes (auto: min(cores, memory / need))", "N|auto")
    p.add_argument("--burst", action="store_true", help="exit 0 once the images tube is drained")
    flag = cli.setting_flag
    flag(p, "--model", "filter.model", "face detector")
    flag(p, "--upsample", "filter.upsample", "times dlib upsamples before detecting", "N")
    flag(
        p,
        "--upsample-max-side",
        "filter.upsample_max_side",
        "upsample only photos at most this large (0: every photo)",
        "PX",
    )
    flag(p, "--detect-max-side", "filter.detect_max_side", "detect on a copy this large (0: full size)", "PX")
    flag(p, "--clahe", "filter.clahe", "contrast boost for dark or flat photos")
    flag(p, "--jitters", "filter.jitters", "re-samplings per encoding (slower, steadier)", "N")
    flag(p, "--ttr", "beanstalkd.ttr", "seconds a job may stay reserved without a touch", "S")
    args = p.parse_args(argv)
    cli.setup_logging(args)
    settings = cli.load_settings(args)
    from facegrid import envelope, filter_pool
    from facegrid.beanstalk import Queue

    if envelope.load_keys(settings.grid.key_file) is None:  # a bad key file: exit 2 here, not in each worker
        logging.getLogger("facegrid.filter").warning("%s", envelope.UNSIGNED_WARNING)
    Queue(settings.beanstalkd).connect().close()  # fail fast, with exit code 3
    return filter_pool.run_pool(
        settings, filter_pool.resolve_workers(settings.filter.workers, settings.filter.max_pixels), args.burst
    )
