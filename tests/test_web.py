"""facegrid web as a real process over a real grid's database: the API gives what search.py gives,
and the access rules hold (loopback or a token, CSRF on every write, uploads checked, blobs only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, run_script
from webserver import WebServer, multipart


@pytest.fixture(scope="module")
def web(faces_db, labelled_grid, tmp_path_factory):
    server = WebServer(tmp_path_factory.mktemp("web") / "web.log", "--db", faces_db, *labelled_grid["addr"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def web_token(faces_db, labelled_grid, tmp_path_factory):
    folder = tmp_path_factory.mktemp("webtoken")
    token = folder / "token"
    token.write_text("s3cret-token-for-the-test-0123456789\n")
    token.chmod(0o600)
    server = WebServer(folder / "web.log", "--db", faces_db, "--token-file", token, *labelled_grid["addr"])
    server.start()
    server.token = "s3cret-token-for-the-test-0123456789"
    yield server
    server.stop()


def photo(faces_dir, rel: str) -> tuple[str, str, bytes]:
    return ("target", rel.rsplit("/", 1)[-1], (faces_dir / rel).read_bytes())


def search(web, files, headers=None, csrf=True):
    body, ctype = multipart(files)
    h = {"Content-Type": ctype, **(headers or {})}
    if csrf:
        h["X-CSRF-Token"] = web.csrf(headers)
    return web.json("POST", "/api/search", body, h)


def test_api_search_is_search_py_json(web, faces_db, faces_dir, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        (target / name).write_bytes((faces_dir / "people/obama" / name).read_bytes())
    cli = run_script("search.py", target, "--db", faces_db, "--json", "--out", tmp_path / "out", "-q", check=True)
    expected = json.loads(cli.stdout)
    status, got = search(web, [photo(faces_dir, "people/obama/obama.jpg"), photo(faces_dir, "people/obama/obama2.jpg")])
    assert status == 200, got
    # the same ranks, distances, confidence, boxes, paths; search.py also names its copy of each
    assert [m["file"] for m in got["matches"]] == [""] * len(got["matches"])
    assert [{**m, "file": ""} for m in expected["matches"]] == got["matches"]
    assert len(got["matches"]) >= 10
    assert got["targets"] == ["obama.jpg", "obama2.jpg"]
    assert {k: got[k] for k in ("tolerance", "search_tolerance", "mode")} == {
        k: expected[k] for k in ("tolerance", "search_tolerance", "mode")
    }
    assert got["out"] is None  # nothing was written


def test_api_refuses_as_search_py_does(web, faces_dir):
    status, got = search(web, [photo(faces_dir, "people/obama/obama.jpg"), photo(faces_dir, "people/biden/biden.jpg")])
    assert status == 400
    assert "show 2 different people (obama.jpg | biden.jpg)" in got["error"]
    status, got = search(web, [photo(faces_dir, "groups/two_people.jpg")])
    assert status == 400 and "no photo with one clear face" in got["error"]


def test_uploads_are_checked(web, faces_dir):
    status, got = search(web, [("target", "notes.txt", b"just some text, not a photo")])
    assert status == 400 and "notes.txt: not a photo" in got["error"]
    status, got = search(web, [("target", "empty.jpg", b"")])
    assert status == 400 and "empty" in got["error"]
    status, got = search(web, [])
    assert status == 400 and "no photo was sent" in got["error"]
    # a truncated JPEG: decoded as the filter decodes, left out, and the search refused
    data = (faces_dir / "people/obama/obama.jpg").read_bytes()
    status, got = search(web, [("target", "cut.jpg", data[: len(data) // 3])])
    assert status == 400 and "no photo with one clear face" in got["error"]
    # a hostile file name is never echoed as a path
    status, got = search(web, [("target", "../../etc/<script>.jpg", data)])
    assert status == 200 and got["targets"] == ["_script_.jpg"]


def test_upload_size_limit(faces_db, labelled_grid, faces_dir, tmp_path):
    limits = ("--set", "web.max_upload_mb=1", "--set", "web.max_targets=2")
    server = WebServer(tmp_path / "web.log", "--db", faces_db, *limits).start()
    try:
        big = b"\xff\xd8\xff" + os.urandom(1024 * 1024 + 10)
        status, got = search(server, [("target", "big.jpg", big)])
        assert status == 400 and "over the limit of 1,048,576" in got["error"]
        status, got = search(server, [("target", "big.jpg", big)] * 3)  # over 2 x 1 MB: refused unread
        assert status == 413 and "over the limit" in got["error"]
        status, got = search(server, [photo(faces_dir, "people/obama/obama.jpg")] * 3)
        assert status == 400 and "Too many files" in got["error"]
    finally:
        server.stop()


def test_csrf_on_every_write(web, faces_dir):
    body, ctype = multipart([photo(faces_dir, "people/obama/obama.jpg")])
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        status, got = web.json("POST", "/api/search", body, {"Content-Type": ctype, **headers})
        assert status == 403 and "CSRF" in got["error"], headers
    # a form carries it as its csrf field instead
    body, ctype = multipart([photo(faces_dir, "people/obama/obama.jpg")], {"csrf": web.csrf()})
    status, _ = web.json("POST", "/api/search", body, {"Content-Type": ctype})
    assert status == 200
    body, ctype = multipart([photo(faces_dir, "people/obama/obama.jpg")], {"csrf": "wrong"})
    status, _ = web.json("POST", "/api/search", body, {"Content-Type": ctype})
    assert status == 403
    # every writing route refuses without it
    for path in ("/search", "/login", "/logout", "/api/search"):
        status, _, _ = web.request("POST", path, b"{}", {"Content-Type": "application/json"})
        assert status == 403, path
    # a page of another site posting here is refused even with a token
    status, _, _ = web.request(
        "POST", "/api/search", body, {"Content-Type": ctype, "X-CSRF-Token": web.csrf(), "Origin": "http://evil.test"}
    )
    assert status == 403


def test_loopback_names_only_without_a_token(web):
    status, _, _ = web.request("GET", "/api/status", headers={"Host": "evil.test:8080"})
    assert status == 421  # DNS rebinding: another name pointed at 127.0.0.1 gets nothing
    status, _, _ = web.request("GET", "/api/status", headers={"Host": f"localhost:{web.netloc.rsplit(':', 1)[1]}"})
    assert status == 200


def test_token_rules(web_token, faces_dir):
    web = web_token
    status, got = web.json("GET", "/api/status")
    assert status == 401 and "Bearer" in got["error"]
    status, headers, _ = web.request("GET", "/", headers={"Accept": "text/html"})
    assert status == 303 and headers["location"].startswith("/login")
    bearer = {"Authorization": f"Bearer {web.token}"}
    assert web.json("GET", "/api/status", headers={"Authorization": "Bearer nope-nope-nope-nope"})[0] == 401
    assert web.json("GET", "/api/status", headers=bearer)[0] == 200
    status, got = search(web, [photo(faces_dir, "people/obama/obama.jpg")], headers=bearer)
    assert status == 200 and got["matches"]
    assert web.request("GET", "/static/app.css")[0] == 200  # the login page needs its assets
    # the login cookie: POST /login with the form's csrf field and the token
    csrf = web.csrf(bearer)
    form = f"csrf={csrf}&token=wrong-wrong-wrong-wrong&next=/status".encode()
    urlenc = {"Content-Type": "application/x-www-form-urlencoded"}
    assert web.request("POST", "/login", form, urlenc)[0] == 401
    form = f"csrf={csrf}&token={web.token}&next=/status".encode()
    status, headers, _ = web.request("POST", "/login", form, urlenc)
    assert status == 303 and headers["location"] == "/status"
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert web.token not in cookie and "httponly" in headers["set-cookie"].lower()
    assert "samesite=strict" in headers["set-cookie"].lower()
    assert web.request("GET", "/status", headers={"Cookie": cookie})[0] == 200
    status, got = web.json("GET", "/api/people", headers={"Cookie": cookie + "x"})
    assert status == 401


def test_pictures_come_from_the_database_only(web, faces_db):
    import sqlite3

    conn = sqlite3.connect(faces_db)
    image_id, idx = conn.execute("SELECT image_id, idx FROM faces LIMIT 1").fetchone()
    conn.close()
    status, headers, body = web.request("GET", f"/photos/{image_id}/thumb.jpg")
    assert status == 200 and body[:3] == b"\xff\xd8\xff" and "max-age" in headers["cache-control"]
    assert web.request("GET", f"/faces/{image_id}/{idx}.jpg")[0] == 200
    for path in (
        "/photos/../../../etc/passwd",
        "/photos/%2e%2e%2f%2e%2e%2fetc%2fpasswd/annotated.jpg",
        f"/photos/{image_id[:-1]}x/annotated.jpg",
        f"/faces/{image_id}/99.jpg",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
    ):
        status, _, body = web.request("GET", path)
        assert status == 404, path
        assert b"import" not in body and b"root:" not in body
    status, got = web.json("GET", f"/api/photos/{image_id}")
    assert status == 200 and got["faces"] and got["path"].startswith("/")
    assert got["faces"][0]["search"] == f"/search?face={image_id}.{got['faces'][0]['idx']}"
    # the answers say: no framing, no sniffing, scripts from this server only
    _, headers, _ = web.request("GET", "/")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"


def test_database_is_not_written(web, faces_db, faces_dir):
    before = faces_db.stat().st_mtime_ns, faces_db.read_bytes()
    search(web, [photo(faces_dir, "people/biden/biden.jpg")])
    web.request("GET", "/api/status")
    assert (faces_db.stat().st_mtime_ns, faces_db.read_bytes()) == before


def test_status_api(web):
    status, got = web.json("GET", "/api/status")
    assert status == 200
    assert set(got["tubes"]) == {"images", "people"} and "eta_s" in got
    assert got["dbs"][0]["counts"]["faces"] > 20


def test_a_non_loopback_address_needs_a_token(faces_db, tmp_path):
    cmd = [sys.executable, "-m", "facegrid", "web", "--db", str(faces_db), "--host", "0.0.0.0", "--port", "0"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--host 0.0.0.0: not a loopback address" in proc.stderr
    assert "Traceback" not in proc.stderr
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123")
    token.chmod(0o644)
    proc = subprocess.run(cmd + ["--token-file", str(token)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "others may read it; chmod 600" in proc.stderr
    token.write_text("short")
    token.chmod(0o600)
    proc = subprocess.run(cmd + ["--token-file", str(token)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "16 or more characters" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "facegrid", "web", "--db", str(tmp_path / "none.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "none.db does not exist" in proc.stderr
