"""The web server as a real process, a small HTTP client for it, and Debian's Chromium through Playwright.

Shared by tests/test_web.py and tests/test_web_pages.py and by benchmarks/web.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
URL_LINE = re.compile(r"facegrid web: (http://\S+/) serving")


class WebServer:
    """`python -m facegrid web ...` on a free loopback port; stop() ends it (SIGINT, then SIGKILL)."""

    def __init__(self, log: Path, *args: str):
        self.log = log
        self.args = [sys.executable, "-m", "facegrid", "web", "--port", "0", *map(str, args)]
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 60) -> WebServer:
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = URL_LINE.search(self.log.read_text())
            if found:
                self.url = found.group(1).rstrip("/")
                break
            if self.proc.poll() is not None:
                raise AssertionError(f"facegrid web exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        else:
            self.stop()
            raise AssertionError(f"facegrid web did not start in {timeout}s: {self.log.read_text()[-2000:]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the line comes just before uvicorn serves: wait for an answer
            with contextlib.suppress(OSError):
                self.request("GET", "/static/app.css")
                return self
            time.sleep(0.05)
        raise AssertionError("facegrid web printed its address but does not answer")

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, body bytes) of one request."""
        host, port = self.netloc.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data)

    def csrf(self, headers: dict | None = None) -> str:
        status, data = self.json("GET", "/api/csrf", headers=headers)
        assert status == 200, data
        return data["csrf"]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def multipart(files: list[tuple[str, str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """(body, content type) of a multipart form: files as (field, filename, bytes)."""
    boundary = "facegrid" + secrets.token_hex(8)
    out = []
    for name, value in (fields or {}).items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        out.append(head.encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def chromium_path() -> str | None:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium")


@contextlib.contextmanager
def browser():
    """A headless Debian Chromium driven by Playwright (never a browser of Playwright's own)."""
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
