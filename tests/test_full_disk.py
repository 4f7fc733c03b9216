"""A full disk: every write is a 507 (never a 500), and deleting photos and tokens
still works, on a real full file system (a small tmpfs, mounted here as root) and
with SQLite's SQLITE_FULL injected at the one seam every write goes through."""
from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from picam_api.db import Database
from picam_api.files import SpaceReserve

from conftest import ADMIN_PASSWORD, assert_problem, basic

JSON = "application/json"
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "COMMIT")


def _bearer(client, headers) -> dict:
    token = client.post("/api/v1/tokens", headers=headers, content_type=JSON).json["token"]
    return {"Authorization": f"Bearer {token}"}


def _photo(client, headers) -> dict:
    response = client.post("/api/v1/photos", headers=headers, json={"width": 64, "height": 48})
    assert response.status_code == 201, response.text
    return response.json


# -- SQLITE_FULL, injected ---------------------------------------------------------------


class _FullDisk:
    """A connection whose writes fail as SQLite's do when the disk is full."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def _check(self, sql: str) -> None:
        if sql.split(None, 1)[0].upper() in WRITES:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = sqlite3.SQLITE_FULL
            raise error

    def execute(self, sql, *args):
        self._check(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql, *args):
        self._check(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.fixture
def disk_full_db(monkeypatch):
    """Turn SQLITE_FULL on for every write of every Database; returns the switch."""
    state = {"full": False}
    real = Database.conn

    def conn(self):
        connection = real.fget(self)
        return _FullDisk(connection) if state["full"] else connection

    monkeypatch.setattr(Database, "conn", property(conn))
    return state


def test_sqlite_full_is_507_on_every_write(client, services, admin_headers, disk_full_db):
    photo = _photo(client, admin_headers)
    bearer = _bearer(client, admin_headers)
    files = sorted(p for p in (services.data_dir / "photos").rglob("*") if p.is_file())
    disk_full_db["full"] = True
    # Reading, and signing in with a password, still work.
    assert client.get("/api/v1/info", headers=admin_headers).status_code == 200
    assert client.get("/api/v1/photos", headers=bearer).status_code == 200
    for method, url, body in (("POST", "/api/v1/tokens", None),  # sign-in for a token
                              ("DELETE", "/api/v1/tokens/current", None),  # logout
                              ("DELETE", photo["links"]["self"], None),
                              ("PATCH", "/api/v1/camera", {"quality": 50}),
                              ("POST", "/api/v1/photos", {"width": 64, "height": 48}),
                              ("POST", "/api/v1/timelapses", {"interval_s": 1, "frames": 2})):
        headers = bearer if "current" in url else admin_headers
        response = client.open(url, method=method, headers=headers, json=body,
                               content_type=JSON)
        body = assert_problem(response, 507)
        assert "full" in body["detail"], (method, url)
    disk_full_db["full"] = False
    # Nothing changed: the logout that failed says so, and its token still works.
    assert client.get("/api/v1/info", headers=bearer).status_code == 200
    assert client.get(photo["links"]["self"], headers=admin_headers).status_code == 200
    assert sorted(p for p in (services.data_dir / "photos").rglob("*") if p.is_file()) == files


def test_a_login_whose_rehash_cannot_be_stored_still_succeeds(client, services, disk_full_db):
    with services.db.transaction() as conn:
        conn.execute("UPDATE users SET password_hash = ? WHERE name = 'admin'",
                     (generate_password_hash(ADMIN_PASSWORD),))
    disk_full_db["full"] = True
    assert client.get("/api/v1/info", headers=basic("admin", ADMIN_PASSWORD)).status_code == 200


def test_enospc_anywhere_is_507(client, admin_headers, monkeypatch):
    photo = _photo(client, admin_headers)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # A thumbnail is written on first request: the disk fills under it.
    monkeypatch.setattr("picam_api.storage.atomic_write", full)
    assert_problem(client.get(photo["links"]["thumbnail"], headers=admin_headers), 507)


# -- a real full file system -----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs (as root, which CI is); unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs here (needs root): {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(path: Path) -> Path:
    """Fill the file system holding ``path`` to the last byte."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):  # down to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert shutil.disk_usage(path).free == 0
    return filler


def test_deleting_works_on_a_really_full_disk(make_app, config, small_disk, admin_headers):
    config["storage"]["data_dir"] = str(small_disk / "data")
    app = make_app(config)
    client = app.test_client()
    services = app.extensions["picam"]
    assert (services.data_dir / SpaceReserve.NAME).stat().st_size == 2**20
    photos = [_photo(client, admin_headers) for _ in range(3)]
    bearer = _bearer(client, admin_headers)
    filler = _fill(small_disk)

    # Everything that writes says 507, and nothing is a 500.
    assert_problem(client.post("/api/v1/photos", headers=admin_headers, json={}), 507)
    for method, url, body in (("PATCH", "/api/v1/camera", {"quality": 40}),
                              ("POST", "/api/v1/timelapses", {"interval_s": 1, "frames": 2}),
                              ("GET", photos[0]["links"]["thumbnail"], None)):
        response = client.open(url, method=method, headers=admin_headers, json=body)
        assert response.status_code in (200, 201, 507), (url, response.text)
        if response.status_code == 507:
            assert_problem(response, 507)
    assert client.get("/api/v1/health").status_code == 200
    # Space can be freed through the API: deleting a photo, logging out.
    response = client.delete(photos[1]["links"]["self"], headers=admin_headers, content_type=JSON)
    assert response.status_code == 204, response.text
    assert client.get(photos[1]["links"]["self"], headers=admin_headers).status_code == 404
    assert not (services.data_dir / photos[1]["links"]["self"]).exists()
    assert client.delete("/api/v1/tokens/current", headers=bearer).status_code == 204
    assert client.get("/api/v1/info", headers=bearer).status_code == 401
    assert client.delete(photos[2]["links"]["self"], headers=bearer | admin_headers,
                         content_type=JSON).status_code == 204
    # New photos wait until the room kept for deleting can be made again...
    assert_problem(client.post("/api/v1/photos", headers=admin_headers, json={}), 507)
    filler.unlink()
    # ...and then go on, with the reserve back in place first.
    assert client.post("/api/v1/photos", headers=admin_headers, json={}).status_code == 201
    assert (services.data_dir / SpaceReserve.NAME).stat().st_size == 2**20
    assert services.db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
