"""The photo store: atomic writes, crash recovery, the free-space guard and retention."""
from __future__ import annotations

import datetime as dt
import errno
import os
import sqlite3
import time
from collections import namedtuple
from pathlib import Path

import pytest

from picam_api import files, storage
from picam_api.files import atomic_write, inside
from conftest import PROBLEM, wait_for

SMALL = {"width": 64, "height": 48}


class _FullDisk:
    """A file object from ``os.fdopen`` whose writes fail as on a full disk."""

    def __init__(self, real, err: int):
        self._real = real
        self._errno = err

    def write(self, data):
        raise OSError(self._errno, os.strerror(self._errno))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def disk_full(monkeypatch):
    """Make writes through ``picam_api.files.atomic_write`` fail like a full disk.

    Returns a function that sets the errno writes fail with, or None to heal.
    """
    real_fdopen = os.fdopen
    state = {"errno": None}

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        return _FullDisk(f, state["errno"]) if state["errno"] else f

    monkeypatch.setattr(files.os, "fdopen", fdopen)

    def set_errno(value):
        state["errno"] = value

    return set_errno


def post(client, headers, **body):
    return client.post("/api/v1/photos", headers=headers, json={**SMALL, **body})


def stored_files(data_dir: Path) -> set[Path]:
    return {p for folder in ("photos", "thumbnails") for p in (data_dir / folder).rglob("*")
            if p.is_file()}


def temp_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.name.endswith(".tmp")]


def row_count(services) -> int:
    return services.db.conn.execute("SELECT count(*) FROM photos").fetchone()[0]



# -- atomic writes --------------------------------------------------------------

def test_atomic_write_writes_whole_file_and_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "photo.jpg"
    atomic_write(target, b"first")
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o640
    atomic_write(target, b"second version")
    assert target.read_bytes() == b"second version"
    assert sorted(p.name for p in target.parent.iterdir()) == ["photo.jpg"]


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path, disk_full):
    target = tmp_path / "photo.jpg"
    atomic_write(target, b"old")
    disk_full(errno.ENOSPC)
    with pytest.raises(OSError) as raised:
        atomic_write(target, b"new")
    assert raised.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


def test_inside_refuses_escapes(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert inside(root, "photos/x.jpg") == (root / "photos/x.jpg").resolve()
    for escape in ("../x", "/etc/passwd", "photos/../../x"):
        with pytest.raises(ValueError):
            inside(root, escape)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError):
        inside(root, "link/x")


def test_api_writes_leave_no_temp_files(client, admin_headers, services):
    for body in ({}, {"format": "png"}):
        photo = post(client, admin_headers, **body)
        assert photo.status_code == 201
        assert client.get(photo.json["links"]["thumbnail"],
                          headers=admin_headers).status_code == 200
    assert temp_files(services.data_dir) == []
    assert len(stored_files(services.data_dir)) == 4


# -- recovery -------------------------------------------------------------------

def test_recover_removes_temps_and_unindexed_files_and_keeps_indexed(make_app, config,
                                                                    admin_headers):
    app = make_app(config)
    client = app.test_client()
    kept = post(client, admin_headers).json
    assert client.get(kept["links"]["thumbnail"], headers=admin_headers).status_code == 200
    services = app.extensions["picam"]
    data = services.data_dir
    kept_path = data / services.photos.get(kept["id"]).path
    kept_thumb = data / "thumbnails" / f"{kept['id']}.jpg"
    services.shutdown()

    day = data / "photos" / "2024" / "01" / "02"
    day.mkdir(parents=True)
    leftovers = [
        day / ".20240102T030405000000Z-0badc0de.jpg.1a2b3c4d.tmp",   # a write cut short
        kept_path.parent / f".{kept_path.name}.deadbeef.tmp",
        data / "thumbnails" / f".{kept['id']}.jpg.cafef00d.tmp",
        day / "20240102T030405000000Z-0badc0de.jpg",                 # renamed, never indexed
        day / "20240102T030405000001Z-0badc0df.png",
        data / "thumbnails" / "20240102T030405000000Z-0badc0de.jpg",  # row deleted, file not
    ]
    for path in leftovers:
        path.write_bytes(b"partial")
    unrelated = data / "notes.txt"
    unrelated.write_text("not ours to delete")

    app2 = make_app(config)
    for path in leftovers:
        assert not path.exists(), path
    assert kept_path.read_bytes() and kept_thumb.exists()
    assert unrelated.exists()
    client2 = app2.test_client()
    assert client2.get(kept["links"]["image"], headers=admin_headers).status_code == 200
    assert [p["id"] for p in client2.get("/api/v1/photos", headers=admin_headers).json[
        "items"]] == [kept["id"]]


def test_recover_keeps_every_indexed_photo(make_app, config, admin_headers):
    app = make_app(config)
    client = app.test_client()
    ids = [post(client, admin_headers, **body).json["id"]
           for body in ({}, {"format": "png"}, {}, {"width": 100})]
    services = app.extensions["picam"]
    before = stored_files(services.data_dir)
    services.shutdown()
    services2 = make_app(config).extensions["picam"]
    assert stored_files(services2.data_dir) == before
    assert sorted(p.id for p in services2.photos.list(10).items) == sorted(ids)


# -- free-space reserve ---------------------------------------------------------

@pytest.fixture
def tight_app(make_app, config):
    """An app whose reserve is more than any disk has."""
    config["storage"]["reserve_mb"] = 10**9
    return make_app(config)


def test_below_reserve_post_is_507_and_stores_nothing(tight_app, admin_headers):
    client = tight_app.test_client()
    services = tight_app.extensions["picam"]
    frames = services.backend.frames
    response = post(client, admin_headers)
    assert response.status_code == 507
    assert response.content_type == PROBLEM
    body = response.json
    assert body["status"] == 507
    assert "reserve" in body["detail"] and "free" in body["detail"]
    assert row_count(services) == 0
    assert stored_files(services.data_dir) == set()
    assert temp_files(services.data_dir) == []
    # the guard runs before the capture, so a full disk costs no camera time
    assert services.backend.frames == frames
    assert client.get("/api/v1/photos", headers=admin_headers).json["items"] == []


def test_below_reserve_bad_request_is_still_422(tight_app, admin_headers):
    response = post(tight_app.test_client(), admin_headers, width=1)
    assert response.status_code == 422


def test_below_reserve_snapshot_still_works(tight_app, admin_headers):
    client = tight_app.test_client()
    services = tight_app.extensions["picam"]
    response = client.get("/api/v1/snapshot.jpg?width=64&height=48", headers=admin_headers)
    assert response.status_code == 200
    assert response.content_type == "image/jpeg"
    assert response.data[:3] == b"\xff\xd8\xff"
    assert row_count(services) == 0
    assert stored_files(services.data_dir) == set()


def test_reserve_counts_the_incoming_photo(make_app, config, admin_headers, monkeypatch):
    """Free space minus the new image must stay above the reserve."""
    usage = namedtuple("usage", "total used free")
    free = {"bytes": 500 * 2**20}
    monkeypatch.setattr(storage.shutil, "disk_usage",
                        lambda path: usage(10**12, 0, free["bytes"]))
    config["storage"]["reserve_mb"] = 400
    app = make_app(config)
    client = app.test_client()
    assert post(client, admin_headers).status_code == 201
    free["bytes"] = 400 * 2**20 + 10  # less than the reserve plus one photo
    assert post(client, admin_headers).status_code == 507
    free["bytes"] = 300 * 2**20
    assert post(client, admin_headers).status_code == 507
    assert row_count(app.extensions["picam"]) == 1


# -- a disk that fills up mid-write -----------------------------------------------

@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_during_write_is_507_and_leaves_nothing(client, admin_headers, services,
                                                          disk_full, err):
    disk_full(err)
    response = post(client, admin_headers)
    assert response.status_code == 507
    assert response.content_type == PROBLEM
    assert response.json["detail"]
    assert row_count(services) == 0
    assert stored_files(services.data_dir) == set()
    assert temp_files(services.data_dir) == []

    disk_full(None)
    assert post(client, admin_headers).status_code == 201
    assert row_count(services) == 1


def test_other_write_errors_are_500_problem_and_leave_nothing(client, admin_headers,
                                                              services, disk_full):
    disk_full(errno.EIO)
    response = post(client, admin_headers)
    assert response.status_code == 500
    assert response.content_type == PROBLEM
    assert "Traceback" not in response.get_data(as_text=True)
    assert row_count(services) == 0
    assert stored_files(services.data_dir) == set()
    assert temp_files(services.data_dir) == []


def test_disk_full_making_a_thumbnail_is_507_then_heals(client, admin_headers, services,
                                                        disk_full):
    photo = post(client, admin_headers).json
    disk_full(errno.ENOSPC)
    response = client.get(photo["links"]["thumbnail"], headers=admin_headers)
    assert response.status_code == 507
    assert response.content_type == PROBLEM
    assert not (services.data_dir / "thumbnails" / f"{photo['id']}.jpg").exists()
    assert temp_files(services.data_dir) == []
    disk_full(None)
    assert client.get(photo["links"]["thumbnail"], headers=admin_headers).status_code == 200


def test_failed_index_insert_removes_the_file(client, admin_headers, services, monkeypatch):
    def broken_transaction():
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(services.db, "transaction", broken_transaction)
    response = post(client, admin_headers)
    assert response.status_code == 500
    assert response.content_type == PROBLEM
    monkeypatch.undo()
    assert row_count(services) == 0
    assert stored_files(services.data_dir) == set()
    assert temp_files(services.data_dir) == []


# -- retention ------------------------------------------------------------------

def test_retention_is_off_by_default(client, admin_headers, services):
    assert services.retention is None
    for _ in range(4):
        assert post(client, admin_headers).status_code == 201
    time.sleep(0.1)
    assert row_count(services) == 4


def _retention_app(make_app, config, **storage):
    config["storage"].update(storage)
    app = make_app(config)
    return app, app.extensions["picam"]


def test_retention_keeps_the_newest_max_photos(make_app, config, admin_headers):
    app, services = _retention_app(make_app, config, max_photos=3, retention_interval_s=0.1)
    client = app.test_client()
    created = []
    for _ in range(6):
        photo = post(client, admin_headers).json
        assert client.get(photo["links"]["thumbnail"], headers=admin_headers).status_code == 200
        created.append(photo)
    assert wait_for(lambda: row_count(services) == 3)
    remaining = [p["id"] for p in client.get("/api/v1/photos", headers=admin_headers).json[
        "items"]]
    assert remaining == [p["id"] for p in reversed(created[3:])]
    for photo in created[:3]:
        assert client.get(photo["links"]["self"], headers=admin_headers).status_code == 404
    # Rows go first, files just after: wait for the worker to finish unlinking.
    assert wait_for(lambda: len(stored_files(services.data_dir)) == 6)  # 3 images + 3 thumbs
    for photo in created[3:]:
        assert client.get(photo["links"]["image"], headers=admin_headers).status_code == 200
    assert {p.name.split(".")[0] for p in stored_files(services.data_dir)} == \
        {p["id"] for p in created[3:]}


def test_retention_keeps_the_newest_within_max_bytes(make_app, config, admin_headers):
    app, services = _retention_app(make_app, config)
    client = app.test_client()
    created = [post(client, admin_headers, width=160, height=120).json for _ in range(5)]
    services.shutdown()

    newest_three = sum(p["bytes"] for p in created[2:])
    app, services = _retention_app(make_app, config, max_bytes=newest_three,
                                   retention_interval_s=0.1)
    assert wait_for(lambda: row_count(services) == 3)
    time.sleep(0.3)  # and it stops there: the limit holds
    assert row_count(services) == 3
    assert services.photos.stats()["bytes"] == newest_three
    assert sorted(p.id for p in services.photos.list(10).items) == sorted(p["id"]
                                                                      for p in created[2:])
    assert {p.name.split(".")[0] for p in stored_files(services.data_dir)} == \
        {p["id"] for p in created[2:]}


def test_retention_with_both_limits_applies_the_tighter(make_app, config, admin_headers):
    app, services = _retention_app(make_app, config, max_photos=4, max_bytes=1,
                                   retention_interval_s=0.1)
    client = app.test_client()
    for _ in range(3):
        assert post(client, admin_headers).status_code == 201
    assert wait_for(lambda: row_count(services) == 0)
    # Files go after their rows' transaction commits.
    wait_for(lambda: stored_files(services.data_dir) == set(), what="the files to go")


def test_retention_never_runs_inside_a_request(make_app, config, admin_headers):
    app, services = _retention_app(make_app, config, max_photos=3,
                                   retention_interval_s=3600)
    client = app.test_client()
    ids = []
    for _ in range(6):
        response = post(client, admin_headers)
        assert response.status_code == 201  # crossing the limit is no error
        ids.append(response.json["id"])
    # every row and file is still there: only the worker deletes
    assert row_count(services) == 6
    assert len(stored_files(services.data_dir)) == 6
    assert [p["id"] for p in client.get("/api/v1/photos", headers=admin_headers).json[
        "items"]] == list(reversed(ids))

    services.retention.wake()
    assert wait_for(lambda: row_count(services) == 3)
    assert sorted(p.id for p in services.photos.list(10).items) == sorted(ids[3:])
    wait_for(lambda: len(stored_files(services.data_dir)) == 3, what="the files to go")


def test_retention_worker_stops_with_the_app(make_app, config):
    app, services = _retention_app(make_app, config, max_photos=3, retention_interval_s=3600)
    assert services.retention.is_alive()
    started = time.monotonic()
    services.shutdown()
    assert not services.retention.is_alive()
    assert time.monotonic() - started < 2


def test_enforce_retention_directly(services):
    capture = services.owner.capture(services.capture.resolve(SMALL))
    settings = services.capture.resolve(SMALL)
    photos = [services.photos.add(capture, settings) for _ in range(7)]
    assert services.photos.enforce_retention(max_photos=0, max_bytes=0) == 0
    assert services.photos.enforce_retention(max_photos=5, max_bytes=0) == 2
    assert services.photos.enforce_retention(max_photos=5, max_bytes=0) == 0
    assert services.photos.enforce_retention(max_photos=0,
                                             max_bytes=3 * len(capture.data)) == 2
    assert [p.id for p in services.photos.list(10).items] == [p.id for p in reversed(photos[4:])]
    assert services.photos.enforce_retention(max_photos=2, max_bytes=0, batch=1) == 1
    assert services.photos.stats() == {"count": 2, "bytes": 2 * len(capture.data)}


def test_ids_and_paths_use_utc_whatever_the_clock_zone(services):
    capture = services.owner.capture(services.capture.resolve(SMALL))
    settings = services.capture.resolve(SMALL)
    plus_two = dt.timezone(dt.timedelta(hours=2))
    late = services.photos.add(capture, settings,
                               taken_at=dt.datetime(2024, 1, 2, 1, 30, tzinfo=plus_two))
    early = services.photos.add(capture, settings,
                                taken_at=dt.datetime(2024, 1, 1, 23, 45, tzinfo=dt.timezone.utc))
    assert late.id.startswith("20240101T233000000000Z-")
    assert late.taken_at == "2024-01-01T23:30:00.000000Z"
    assert late.path.startswith("photos/2024/01/01/")
    # newest first means by the instant, not by the wall clock it was given in
    assert [p.id for p in services.photos.list(10).items] == [early.id, late.id]
