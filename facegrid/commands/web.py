"""`facegrid web`: the search pages and their API on uvicorn (see --help and docs/web.md)."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

from facegrid import cli
from facegrid.errors import EXIT_OK, UsageError

EPILOG = """\
examples:
  facegrid web --db faces.db                       http://127.0.0.1:8080/ on this machine only
  facegrid web --db 2023.db --db 2024.db --port 8090
  facegrid web --db faces.db --host 0.0.0.0 --token-file ~/.config/facegrid/web-token
                                                   on the network: every request needs the token

Pages: Search (drop photos of a person, or click a face), Photo, People, Watchlist
and alerts, Status. The databases are opened read-only; only the People page's
rename, merge, split and "not this person" write, through the people registry.
Any address but a loopback one needs --token-file (a file only you can read with
one secret word of 16+ characters); requests then carry it as
"Authorization: Bearer TOKEN" or log in once at /login. docs/web.md has the API.
exit codes: 0 stopped, 2 usage or settings error (a busy port, a missing database)
"""


def main(argv=None) -> int:
    p = cli.parser("facegrid web", "Serve the search pages and their API.", EPILOG)
    p.add_argument(
        "--db",
        metavar="PATH",
        action="append",
        default=[],
        help="SQLite database ([collector] database); repeat to serve several as one collection",
    )
    cli.setting_flag(p, "--host", "web.host", "address to listen on (a loopback one unless --token-file)", "ADDR")
    cli.setting_flag(p, "--port", "web.port", "port to listen on (0: any free one, printed)", "N")
    p.add_argument("--token-file", metavar="FILE", help="a file holding the secret every request must carry")
    args = p.parse_args(argv)
    cli.setup_logging(args)
    port_flag = getattr(args, cli.SETTING_DEST + "web.port")
    if port_flag == 0:  # any free port: below the setting's rule, so not passed to it
        setattr(args, cli.SETTING_DEST + "web.port", None)
    settings = cli.load_settings(args, {"collector.database": (args.db or [None])[0]})
    from facegrid.web import security

    host = settings.web.host
    port = 0 if port_flag == 0 else settings.web.port
    token = security.read_token(args.token_file) if args.token_file else None
    security.check_bind(host, token)
    dbs = args.db or [settings.collector.database]
    for path in dbs:
        if not Path(path).is_file():
            raise UsageError(f"database {path} does not exist; pass --db with the database collector.py wrote")
    sock = _listen(host, port)
    import uvicorn

    from facegrid.web.app import Config, create_app

    app = create_app(Config(dbs, settings, token))
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"facegrid web: http://{shown}:{bound}/ serving {', '.join(dbs)} (Ctrl-C stops)", file=sys.stderr, flush=True)
    level = logging.getLogger("facegrid").getEffectiveLevel()
    server = uvicorn.Server(
        uvicorn.Config(app, log_level=logging.getLevelName(level).lower(), access_log=args.verbose > 0, lifespan="off")
    )
    server.run(sockets=[sock])
    return EXIT_OK


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = exc.strerror or exc
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({why}); pass another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
