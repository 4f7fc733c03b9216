"""Crash consistency: SIGKILL a real server at random moments while a time-lapse
runs and clients post photos, restart it, and check what it left behind.

SQLite's own crash tests kill it mid-COMMIT and run integrity_check; this is
the same at the level of the service: the index, the image files and the
time-lapse's counters must agree after every kill, and the job must go on.
"""
from __future__ import annotations

import random
import sqlite3
import threading
import time

import pytest
import requests
from PIL import Image

from conftest import ADMIN_PASSWORD, ServerProcess, wait_for

AUTH = ("admin", ADMIN_PASSWORD)
SERVER_TOML = """
[camera.mock]
sensor = [320, 240]
[timelapse]
min_interval_s = 0.05
"""
PHOTO = {"width": 160, "height": 120, "quality": 70}
POSTERS = 2


class Posters:
    """Threads that post photos until stopped, keeping the ids answered with 201."""

    def __init__(self, url: str):
        self.url = url + "/api/v1/photos"
        self.stored: set[str] = set()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._post, daemon=True) for _ in range(POSTERS)]
        for thread in self.threads:
            thread.start()

    def _post(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            try:
                response = session.post(self.url, json=PHOTO, auth=AUTH, timeout=5)
            except requests.RequestException:  # the server is being killed
                time.sleep(0.02)
                continue
            if response.status_code == 201:
                self.stored.add(response.json()["id"])

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)


@pytest.fixture
def server(tmp_path):
    """A server for this module's small images and short intervals (the conftest one has neither)."""
    process = ServerProcess(tmp_path, SERVER_TOML).start()
    yield process
    if process.proc.poll() is None:
        process.kill()


def api(server, method: str, path: str, **kwargs) -> dict:
    response = requests.request(method, server.url + path, auth=AUTH, timeout=10, **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


def check_data_dir(server, job_id: str, acknowledged: set[str]) -> set[str]:
    """The invariants of a data dir at rest; returns the ids of the indexed photos."""
    data = server.data_dir
    db = sqlite3.connect(data / "picam.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = db.execute("SELECT id, path, timelapse_id, sequence FROM photos ORDER BY id").fetchall()
        captured, next_sequence = db.execute(
            "SELECT frames_captured, next_sequence FROM timelapses WHERE id = ?",
            (job_id,)).fetchone()
    finally:
        db.close()
    indexed = {path for _, path, _, _ in rows}
    on_disk = {str(p.relative_to(data)) for p in (data / "photos").rglob("*") if p.is_file()}
    assert on_disk == indexed, (f"unindexed files: {sorted(on_disk - indexed)}; "
                                f"rows without a file: {sorted(indexed - on_disk)}")
    assert not list(data.rglob("*.tmp")), "temp files survived the restart"
    for _, path, _, _ in rows:
        with Image.open(data / path) as image:
            image.load()  # decodes every byte: a torn file fails here
    # Every photo the server answered 201 for is still there (synchronous=FULL).
    assert acknowledged <= {photo_id for photo_id, _, _, _ in rows}
    sequences = [sequence for _, _, timelapse, sequence in rows if timelapse == job_id]
    assert sequences == sorted(set(sequences)), "sequence numbers repeat or go backwards"
    assert not sequences or sequences[0] == 1
    # A frame's photo and the job's counters are committed together.
    assert captured == len(sequences)
    assert next_sequence > max(sequences, default=0)
    return {photo_id for photo_id, _, _, _ in rows}


def listed_ids(server) -> set[str]:
    ids, url = set(), "/api/v1/photos?limit=500"
    while url:
        page = api(server, "GET", url)
        ids |= {item["id"] for item in page["items"]}
        url = page["next"]
    return ids


@pytest.mark.timeout(900)  # --long does 100 rounds
def test_sigkill_at_random_moments_leaves_a_consistent_store(server, long_run):
    rounds = 100 if long_run else 25
    job = api(server, "POST", "/api/v1/timelapses", json={**PHOTO, "interval_s": 0.1})
    job_url = job["links"]["self"]
    acknowledged: set[str] = set()
    rng = random.Random()
    for _ in range(rounds):
        posters = Posters(server.url)
        time.sleep(rng.uniform(0.2, 1.2))
        server.kill()
        posters.stop()
        acknowledged |= posters.stored
        server.start()
        # The job resumed by itself and takes new frames.
        resumed = api(server, "GET", job_url)
        assert resumed["state"] == "running", resumed
        wait_for(lambda: api(server, "GET", job_url)["frames_captured"]
                 > resumed["frames_captured"], what="a new frame after the restart")
        # Hold it while the files are compared with the index; let a frame in flight land.
        api(server, "PATCH", job_url, json={"state": "paused"})
        time.sleep(0.3)
        indexed = check_data_dir(server, job["id"], acknowledged)
        # The API lists exactly what is indexed: no temp file, nothing lost.
        assert listed_ids(server) == indexed
        api(server, "PATCH", job_url, json={"state": "running"})
    assert api(server, "GET", job_url)["frames_captured"] >= rounds
    assert len(acknowledged) >= rounds
