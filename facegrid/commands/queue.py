"""`facegrid queue` and queuer.py: one job per photo, and per sampled video frame, on the images tube (see --help)."""

from facegrid import cli
from facegrid.delivery import Stopper

EPILOG = """\
examples:
  queuer.py /srv/photos                       queue every photo below /srv/photos
  queuer.py --beanstalkd 10.0.0.5:11300 a/ b/ queue two folders on the arbiter's beanstalkd
  queuer.py --requeue /srv/photos             queue again what an earlier run queued
  queuer.py --max-ready 0 /srv/photos         no bound on the backlog in beanstalkd
  queuer.py --set video.fps=2 /srv/newsroom   videos sampled at 2 frames a second
  queuer.py --watch /srv/incoming             keep running: queue photos as they land

Photos: jpg jpeg png bmp webp tif tiff gif heic heif, any case, found recursively; folder links are
followed once. The queuer never writes to, moves or renames your files. A photo
larger than beanstalkd's max-job-size is re-encoded smaller, and the job says so.
Videos: mp4 mov m4v mkv avi webm mts, any case: decoded on this host, sampled at
[video] fps (default 1 a second), frames that barely change skipped; each frame sent
is one job, put as it is decoded. An interrupted video resumes where it stopped.
A beanstalkd started without -z takes jobs of at most 65,535 bytes: the queuer
refuses it (exit 2) unless --allow-small-jobs.
--watch queues what is new, then every file that appears or changes once its size
has stayed the same for [queuer] settle seconds (a copy in progress waits), until
SIGTERM or Ctrl-C.
exit codes: 0 done, 2 usage or settings error, 3 beanstalkd unreachable
"""


def _state_help() -> str:
    from facegrid.settings import state_dir

    return (
        f"default: one per user and beanstalkd, {state_dir()}/queuer-HOST-PORT-TUBE.sqlite "
        "(HOST, PORT: --beanstalkd; TUBE: the images tube), the same from any working folder"
    )


STATE_HELP = _state_help()


def main(argv=None) -> int:
    p = cli.parser(
        "queuer.py",
        "Walk folders of photos and videos and put one job per photo or sampled frame on the images tube.",
        EPILOG,
    )
    p.add_argument("folders", nargs="+", metavar="DIR", help="folders to walk recursively")
    max_ready_help = "wait while the tube holds more than N ready jobs (0: no bound)"
    cli.setting_flag(p, "--max-ready", "beanstalkd.max_ready", max_ready_help, "N")
    p.add_argument("--requeue", action="store_true", help="queue files again even if an earlier run queued them")
    p.add_argument(
        "--state", metavar="PATH", help=f"the queuer's own record of queued files ([queuer] state); {STATE_HELP}"
    )
    p.add_argument(
        "--allow-small-jobs",
        action="store_true",
        help="queue even when beanstalkd takes jobs under 1 MiB (started without -z): photos are re-encoded to fit",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep running: queue files that appear or change (inotify, else a walk every [queuer] rescan s)",
    )
    args = p.parse_args(argv)
    cli.setup_logging(args)
    settings = cli.load_settings(args, {"queuer.state": args.state})
    from facegrid.queuer import run_queuer, state_path

    if args.watch:
        from facegrid.folder_watch import run_watch

        counts = run_watch(
            settings, args.folders, args.requeue, state_path(settings), Stopper().install(), args.allow_small_jobs
        )
        print(" ".join(f"{k}={v}" for k, v in counts.items()))
        return 0

    stopper = Stopper().install()
    counts = run_queuer(settings, args.folders, args.requeue, state_path(settings), stopper, args.allow_small_jobs)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 0
