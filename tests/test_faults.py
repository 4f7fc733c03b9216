"""Fault injection: a flaky, a slow and a hung camera, and a full disk, on one
running service each, over real HTTP (a threaded WSGI server in this process,
so the mock camera's fault knobs can be turned while it runs).

Each fault must show as a clear status (503 with Retry-After, 507), leave the
rest of the API answering, keep the time-lapse's books right, and heal by
itself when it clears, with no restart.
"""
from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import sqlite3
import stat
import threading
import time

import pytest
import requests
from werkzeug.serving import make_server

from conftest import ADMIN_PASSWORD, PROBLEM, wait_for
from picam_api import files

AUTH = ("admin", ADMIN_PASSWORD)
TIMEOUT_S = 2.0  # camera.capture_timeout_s
RETRY_AFTER = "3"  # camera.retry_after_s
PHOTO = {"width": 160, "height": 120}


@pytest.fixture
def config(config):
    config["camera"].update(capture_timeout_s=TIMEOUT_S, retry_after_s=int(RETRY_AFTER))
    config["camera"]["mock"]["sensor"] = [320, 240]
    config["timelapse"] = {"min_interval_s": 0.05}
    return config


@pytest.fixture
def url(app):
    """The app behind a threaded WSGI server: concurrent requests, as under picam-api serve."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def call(url: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, url + path, auth=AUTH, timeout=30, **kwargs)


def start_job(url: str, **body) -> str:
    response = call(url, "POST", "/api/v1/timelapses", json={**PHOTO, **body})
    assert response.status_code == 201, response.text
    return response.json()["links"]["self"]


def finished(url: str, job: str, timeout: float = 20.0) -> dict:
    return wait_for(lambda: (j := call(url, "GET", job).json())["state"] in
                    ("completed", "failed", "cancelled") and j, timeout, "the job to end")


def frames_of(url: str, job: dict) -> list[dict]:
    return call(url, "GET", job["links"]["frames"] + "&limit=500").json()["items"]


def assert_books_balance(url: str, job: dict, frames: int) -> None:
    """Every slot is captured, missed or failed, once; every captured frame is stored."""
    assert job["state"] == "completed", job
    assert job["frames_captured"] + job["frames_missed"] + job["frames_failed"] == frames, job
    stored = frames_of(url, job)
    assert len(stored) == job["frames_captured"]
    assert sorted(p["sequence"] for p in stored) == list(range(1, len(stored) + 1))


def assert_camera_problem(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == PROBLEM
    assert response.headers["Retry-After"] == RETRY_AFTER


class FullDisk:
    """``os`` as picam_api.files sees it, with fsync failing as on a full disk.

    A filesystem with delayed allocation reports ENOSPC when the data is flushed,
    so the write "succeeds" and the fsync fails; ``which`` is the file's own fsync
    or its directory's (after the rename).
    """

    def __init__(self, which: str):
        self.which = which

    def __getattr__(self, name):
        return getattr(os, name)

    def fsync(self, fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode) == (self.which == "directory"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)


def assert_store_consistent(services) -> int:
    """Index and files agree, no temp file is left; returns the number of photos."""
    data = services.data_dir
    db = sqlite3.connect(data / "picam.db")
    indexed = {row[0] for row in db.execute("SELECT path FROM photos")}
    db.close()
    on_disk = {str(p.relative_to(data)) for p in (data / "photos").rglob("*") if p.is_file()}
    assert on_disk == indexed
    assert not list(data.rglob("*.tmp"))
    return len(indexed)


def test_a_flaky_camera_fails_some_captures_and_counts_them(url, mock_camera):
    mock_camera.fail_rate = 0.2
    job = start_job(url, interval_s=0.1, frames=50)  # enough that some fail, surely
    statuses = []
    for _ in range(30):
        response = call(url, "POST", "/api/v1/photos", json=PHOTO)
        if response.status_code != 201:
            assert_camera_problem(response)
        statuses.append(response.status_code)
    assert {201, 503} == set(statuses)
    done = finished(url, job)
    assert_books_balance(url, done, 50)
    assert done["frames_failed"] >= 1 and done["last_error"]
    assert mock_camera.opens == 1  # a failed frame is not a reason to reopen the camera


def test_a_slow_camera_misses_frames_and_never_bursts(url, mock_camera):
    mock_camera.delay_s = 0.3  # three intervals
    job = start_job(url, interval_s=0.1, frames=15)
    # Photos share the camera with the job meanwhile.
    assert call(url, "POST", "/api/v1/photos", json=PHOTO).status_code == 201
    done = finished(url, job)
    assert_books_balance(url, done, 15)
    assert done["frames_missed"] >= 5 and done["frames_failed"] == 0
    taken = sorted(dt.datetime.fromisoformat(p["taken_at"]) for p in frames_of(url, done))
    gaps = [(b - a).total_seconds() for a, b in zip(taken, taken[1:])]
    assert min(gaps) >= 0.25, gaps  # one capture at a time, no catching up


def test_a_hung_camera_answers_503_in_time_and_heals_by_itself(url, mock_camera):
    mock_camera.hang = True
    results: list[tuple[float, requests.Response]] = []

    def capture(method, path, **kwargs):
        started = time.monotonic()
        response = call(url, method, path, **kwargs)
        results.append((time.monotonic() - started, response))

    # Captures queue behind the hung one: none may wait for more than its own timeout.
    threads = [threading.Thread(target=capture, args=args, kwargs=kwargs) for args, kwargs in (
        (("POST", "/api/v1/photos"), {"json": PHOTO}), (("GET", "/api/v1/snapshot.jpg"), {}),
        (("POST", "/api/v1/photos"), {"json": PHOTO}))]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    # Meanwhile everything that does not need the camera answers at once.
    for path in ("/api/v1/health", "/api/v1/info", "/api/v1/photos?limit=5", "/api/v1/camera",
                 "/api/v1/gpio", "/api/v1/timelapses"):
        started = time.monotonic()
        response = call(url, "GET", path)
        assert response.status_code == 200, (path, response.text)
        assert time.monotonic() - started < 1.0, path
    for thread in threads:
        thread.join(30)
    assert len(results) == 3
    for elapsed, response in results:
        assert_camera_problem(response)
        assert elapsed <= TIMEOUT_S + 1, (elapsed, response.json()["title"])
    # A time-lapse started while the camera hangs counts its frames as failed.
    job = start_job(url, interval_s=0.1, frames=80)
    wait_for(lambda: call(url, "GET", job).json()["frames_failed"] >= 1, timeout=TIMEOUT_S * 3)
    opens = mock_camera.opens
    mock_camera.hang = False
    # It heals by itself: the next capture reopens the camera.
    wait_for(lambda: call(url, "POST", "/api/v1/photos", json=PHOTO).status_code == 201,
             what="a photo after the fault cleared")
    assert mock_camera.opens > opens
    assert call(url, "GET", "/api/v1/health").json()["camera"]["ok"] is True
    done = finished(url, job)
    assert_books_balance(url, done, 80)
    assert done["frames_failed"] >= 1 and done["frames_captured"] >= 1


# -- a full disk ------------------------------------------------------------------------


def test_below_the_reserve_captures_that_store_get_507_and_jobs_wait(url, services):
    job = start_job(url, interval_s=0.1)
    wait_for(lambda: call(url, "GET", job).json()["frames_captured"] >= 2)
    services.photos.reserve_bytes = shutil.disk_usage(services.data_dir).total + 1
    response = call(url, "POST", "/api/v1/photos", json=PHOTO)
    assert response.status_code == 507 and response.headers["Content-Type"] == PROBLEM
    # A snapshot stores nothing, so it still works.
    assert call(url, "GET", "/api/v1/snapshot.jpg", params=PHOTO).status_code == 200
    paused = wait_for(lambda: (j := call(url, "GET", job).json())["state"] == "paused" and j,
                      what="the job to pause for storage")
    assert paused["pause_reason"] == "storage" and paused["last_error"]
    assert assert_store_consistent(services) == paused["frames_captured"]
    services.photos.reserve_bytes = 0
    wait_for(lambda: (j := call(url, "GET", job).json())["state"] == "running"
             and j["frames_captured"] > paused["frames_captured"],
             what="the job to resume by itself")
    assert call(url, "POST", "/api/v1/photos", json=PHOTO).status_code == 201
    cancelled = call(url, "PATCH", job, json={"state": "cancelled"}).json()
    assert cancelled["state"] == "cancelled"
    # A frame in flight at the cancel is still stored, and counted with its photo.
    settled = wait_for(lambda: (j := call(url, "GET", job).json())
                       and len(frames_of(url, j)) == j["frames_captured"] and j,
                       what="the frames and the count to agree")
    assert settled["frames_captured"] - cancelled["frames_captured"] in (0, 1)


@pytest.mark.parametrize("which", ["file", "directory"])
def test_enospc_at_write_leaves_nothing_half_written(url, services, monkeypatch, which):
    assert call(url, "POST", "/api/v1/photos", json=PHOTO).status_code == 201
    photo = call(url, "GET", "/api/v1/photos").json()["items"][0]
    job = start_job(url, interval_s=0.1)
    wait_for(lambda: call(url, "GET", job).json()["frames_captured"] >= 1)
    monkeypatch.setattr(files, "os", FullDisk(which))
    response = call(url, "POST", "/api/v1/photos", json=PHOTO)
    assert response.status_code == 507 and response.headers["Content-Type"] == PROBLEM
    # A thumbnail made now cannot be kept either.
    assert call(url, "GET", photo["links"]["thumbnail"]).status_code == 507
    paused = wait_for(lambda: (j := call(url, "GET", job).json())["pause_reason"] == "storage"
                      and j, what="the job to pause for storage")
    assert assert_store_consistent(services) == 1 + paused["frames_captured"]
    monkeypatch.undo()
    wait_for(lambda: (j := call(url, "GET", job).json())["state"] == "running"
             and j["frames_captured"] > paused["frames_captured"],
             what="the job to resume by itself")
    assert call(url, "POST", "/api/v1/photos", json=PHOTO).status_code == 201
    assert call(url, "GET", photo["links"]["thumbnail"]).status_code == 200
    call(url, "PATCH", job, json={"state": "paused"})
    time.sleep(0.3)  # the frame in flight lands
    assert_store_consistent(services)
