"""Start-up and the data dir: recovery that never deletes a photo, a data dir that is
ours or refused, one server per data dir, private database files, and a damaged
database said in one line (at start) or by /api/v1/health (while running)."""
from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
import requests

from picam_api import datadir
from picam_api.errors import ConfigError

from conftest import ADMIN_PASSWORD, BIN, ServerProcess, basic, wait_for


def _take(client, headers, count: int, **body) -> list[dict]:
    photos = []
    for _ in range(count):
        response = client.post("/api/v1/photos", headers=headers, json={"width": 64, "height": 48,
                                                                         **body})
        assert response.status_code == 201, response.text
        photos.append(response.json)
    return photos


def _listed(client, headers) -> dict[str, dict]:
    return {p["id"]: p for p in client.get("/api/v1/photos?limit=500", headers=headers).json["items"]}


def _image_files(data: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data)): p.read_bytes() for p in (data / "photos").rglob("*")
            if p.is_file()}


def test_photos_survive_the_database_moved_aside(make_app, config, admin_headers):
    app = make_app(config)
    photos = _take(app.test_client(), admin_headers, 2) + _take(app.test_client(), admin_headers,
                                                                1, format="png")
    services = app.extensions["picam"]
    data = services.data_dir
    files = _image_files(data)
    services.shutdown()
    for name in ("picam.db", "picam.db-wal", "picam.db-shm"):
        if (data / name).exists():
            (data / name).rename(data / f"{name}.aside")

    app = make_app(config)
    client = app.test_client()
    assert _image_files(data) == files  # nothing deleted
    listed = _listed(client, admin_headers)
    assert set(listed) == {p["id"] for p in photos}  # named by their id: the same ids again
    for photo in photos:
        again = listed[photo["id"]]
        assert again["source"] == "recovered"
        assert (again["width"], again["height"], again["format"], again["bytes"]) == (
            photo["width"], photo["height"], photo["format"], photo["bytes"])
        assert again["taken_at"] == photo["taken_at"]
        image = client.get(again["links"]["image"], headers=admin_headers)
        assert image.status_code == 200 and len(image.data) == photo["bytes"]
    info = client.get("/api/v1/info", headers=admin_headers).json
    assert info["storage"]["recovery"]["reindexed"] == 3


def test_photos_newer_than_a_restored_backup_survive(make_app, config, admin_headers):
    app = make_app(config)
    client = app.test_client()
    older = _take(client, admin_headers, 2)
    services = app.extensions["picam"]
    backup = services.data_dir.parent / "backup.db"
    with sqlite3.connect(backup) as copy:
        services.db.conn.backup(copy)
    newer = _take(client, admin_headers, 2)
    thumbnail = client.get(newer[0]["links"]["thumbnail"], headers=admin_headers)
    assert thumbnail.status_code == 200
    services.shutdown()
    for name in ("picam.db-wal", "picam.db-shm"):
        (services.data_dir / name).unlink(missing_ok=True)
    shutil.copy(backup, services.data_dir / "picam.db")

    client = make_app(config).test_client()
    listed = _listed(client, admin_headers)
    assert set(listed) == {p["id"] for p in older + newer}
    assert {listed[p["id"]]["source"] for p in older} == {"api"}
    assert {listed[p["id"]]["source"] for p in newer} == {"recovered"}
    # The newer photo's thumbnail is its own again, not deleted as an orphan.
    assert (services.data_dir / "thumbnails" / f"{newer[0]['id']}.jpg").exists()


def test_only_our_own_leftovers_are_deleted_the_rest_is_quarantined(make_app, config,
                                                                    admin_headers):
    app = make_app(config)
    kept = _take(app.test_client(), admin_headers, 1)[0]
    services = app.extensions["picam"]
    data = services.data_dir
    kept_file = data / services.photos.get(kept["id"]).path
    services.shutdown()
    day = data / "photos" / "2024" / "01" / "02"
    day.mkdir(parents=True)
    ours = [day / ".20240102T030405000000Z-0badc0de.jpg.1a2b3c4d.tmp",  # a write cut short
            data / "thumbnails" / ".x.jpg.cafef00d.tmp",
            data / "thumbnails" / "20240102T030405000000Z-0badc0de.jpg"]  # its photo is gone
    foreign = {day / "holiday.txt": b"not a photo",
               day / "20240102T030405000001Z-0badc0df.jpg": b"torn",  # not a whole image
               day / ".notes.tmp": b"someone else's temp file",
               data / "thumbnails" / "mine.png": b"a user's file"}
    elsewhere = data / "videos" / ".clip.mp4.0123abcd.tmp"  # another part's folder: not ours here
    elsewhere.parent.mkdir()
    for path in [*ours, elsewhere]:
        path.write_bytes(b"partial")
    for path, content in foreign.items():
        path.write_bytes(content)
    outside = data.parent / "outside.jpg"
    outside.write_bytes(kept_file.read_bytes())
    link = day / "20240102T030405000002Z-0badc0e0.jpg"
    link.symlink_to(outside)  # a real image, but outside the data dir: not followed

    client = make_app(config).test_client()
    assert (data / "quarantine" / link.relative_to(data)).is_symlink() and not link.exists()
    assert not any(path.exists() for path in ours)
    assert elsewhere.exists()
    for path, content in foreign.items():
        assert not path.exists()
        assert (data / "quarantine" / path.relative_to(data)).read_bytes() == content
    assert list(_listed(client, admin_headers)) == [kept["id"]]
    recovery = client.get("/api/v1/info", headers=admin_headers).json["storage"]["recovery"]
    assert recovery == {"temp_files_removed": 2, "thumbnails_removed": 1, "reindexed": 0,
                        "quarantined": 5}


def test_a_data_dir_of_someone_else_is_refused_and_left_alone(make_app, config, tmp_path):
    folder = tmp_path / "Pictures"
    (folder / "photos").mkdir(parents=True)
    files = {folder / "cat.jpg": b"\xff\xd8 a cat", folder / "photos" / "dog.jpg": b"\xff\xd8 a dog",
             folder / ".hidden.abcdef12.tmp": b"temp-like"}
    for path, content in files.items():
        path.write_bytes(content)
    config["storage"]["data_dir"] = str(folder)
    with pytest.raises(ConfigError) as caught:
        make_app(config)
    assert datadir.MARKER in caught.value.detail and "\n" not in caught.value.detail
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == files
    # picam-api serve says the same in one line, and starts nothing.
    config_file = tmp_path / "pictures.toml"
    config_file.write_text(f'[storage]\ndata_dir = "{folder}"\n[camera]\nbackend = "mock"\n')
    done = subprocess.run([str(BIN / "picam-api"), "serve", "--config", str(config_file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "storage.data_dir" in done.stderr
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == files


def test_new_empty_and_first_release_data_dirs_are_made_ours(tmp_path):
    new = datadir.prepare(tmp_path / "new")
    assert (new / datadir.MARKER).exists()
    first = tmp_path / "first-release"
    (first / "photos").mkdir(parents=True)
    sqlite3.connect(first / "picam.db").close()
    (first / "initial-admin-password").write_text("x\n")
    datadir.prepare(first)
    assert (first / datadir.MARKER).exists()


def test_a_second_server_on_one_data_dir_is_refused(tmp_path):
    first = ServerProcess(tmp_path).start()
    try:
        done = subprocess.run([str(BIN / "picam-api"), "serve", "--config", str(first.config_file),
                               "--port", str(first.port + 1)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"PID {first.proc.pid}" in lines[0], lines
        # The user commands share the database, not the lock: they work meanwhile.
        added = subprocess.run([str(BIN / "picam-api"), "user", "add", "carol", "--password-stdin",
                                "--config", str(first.config_file)], input="carol-password\n",
                               capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        assert requests.get(first.url + "/api/v1/info", auth=("carol", "carol-password"),
                            timeout=10).status_code == 200
    finally:
        first.stop()
    # Once the first has stopped, the lock is free again.
    ServerProcess(tmp_path).start().stop()


def test_database_files_are_private_whatever_the_umask(make_app, config):
    data = Path(config["storage"]["data_dir"])
    old = os.umask(0)
    try:
        app = make_app(config)
        client = app.test_client()
        _take(client, basic("admin", ADMIN_PASSWORD), 1)
    finally:
        os.umask(old)
    for name in ("picam.db", "picam.db-wal", "picam.db-shm"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    app.extensions["picam"].shutdown()
    # Files an earlier release left readable are made private at the next start.
    for name in ("picam.db", "picam.db-wal", "picam.db-shm"):
        if (data / name).exists():
            os.chmod(data / name, 0o644)
    make_app(config)
    for name in ("picam.db", "picam.db-wal", "picam.db-shm"):
        if (data / name).exists():
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name


def test_a_damaged_database_at_start_is_one_line(tmp_path):
    server = ServerProcess(tmp_path)
    datadir.prepare(server.data_dir)
    (server.data_dir / "picam.db").write_bytes(b"this is not a database, " * 100)
    os.chmod(server.data_dir / "picam.db", 0o600)
    done = subprocess.run([str(BIN / "picam-api"), "serve", "--config", str(server.config_file)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PICAM_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(server.data_dir / "picam.db") in lines[0] and "backup" in lines[0]
    assert "Traceback" not in done.stderr


def test_health_says_503_when_the_database_is_unusable(client, services):
    assert client.get("/api/v1/health").json["database"] == {"ok": True, "error": None}
    path = services.db.path
    saved = path.read_bytes()
    services.db.close()  # a fresh connection meets what is on disk now
    path.write_bytes(b"garbage " * 1024)
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json
    assert body["status"] == "unavailable" and not body["database"]["ok"]
    assert str(path) in body["database"]["error"]
    services.db.close()
    path.write_bytes(saved)
    wait_for(lambda: client.get("/api/v1/health").status_code == 200, 5, "health back")


def test_info_shows_the_data_dir_to_operators_only(client, admin_headers, viewer_headers, services):
    assert client.get("/api/v1/info", headers=admin_headers).json["storage"]["data_dir"] == \
        str(services.data_dir)
    viewer = client.get("/api/v1/info", headers=viewer_headers).json
    assert "data_dir" not in viewer["storage"]
    assert str(services.data_dir) not in str(viewer)
