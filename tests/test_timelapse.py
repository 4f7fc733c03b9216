import datetime as dt
import io
import sqlite3
import time
import zipfile
from pathlib import Path

import pytest
import requests
from PIL import Image

from conftest import ADMIN_PASSWORD, ServerProcess, basic, wait_for
from picam_api.clock import Clock
from picam_api.timelapse.scheduler import STORAGE_POLL_S

SMALL = {"width": 160, "height": 120}


@pytest.fixture
def config(config):
    config["timelapse"] = {"min_interval_s": 0.05, "max_active_jobs": 3,
                           "max_consecutive_failures": 3}
    return config



def create(client, headers, **body):
    response = client.post("/api/v1/timelapses", headers=headers, json={**SMALL, **body})
    assert response.status_code == 201, response.json
    assert response.headers["Location"] == response.json["links"]["self"]
    return response.json


def get(client, headers, job_id):
    return client.get(f"/api/v1/timelapses/{job_id}", headers=headers).json


def frames_of(services, job_id):
    return list(services.photos.iter_frames(job_id))


def test_a_job_takes_its_frames_on_time(client, admin_headers, services):
    job = create(client, admin_headers, interval_s=0.2, frames=10, name="garden")
    done = wait_for(lambda: (j := get(client, admin_headers, job["id"]))["state"] == "completed"
                    and j, timeout=10)
    assert (done["frames_captured"], done["frames_missed"], done["frames_failed"]) == (10, 0, 0)
    assert done["finished_at"] and done["next_frame_at"] is None
    frames = frames_of(services, job["id"])
    assert [p.sequence for p in frames] == list(range(1, 11))
    assert {p.source for p in frames} == {"timelapse"}
    lateness = [late for job_id, _, late in services.timelapses.scheduler.lateness
                if job_id == job["id"]]
    assert len(lateness) == 10
    # A correctness bound, not a speed claim: every frame started within its grace.
    assert max(lateness) < 0.1
    # Slots are start + k * interval: frame k was taken no earlier than its slot.
    start = dt.datetime.fromisoformat(job["start_at"]).timestamp()
    for k, photo in enumerate(frames):
        assert photo.taken_at_datetime.timestamp() >= start + k * 0.2 - 0.001


def _open_on(path: Path) -> int:
    """How many of this process's file descriptors are open on ``path`` (or its -wal, -shm)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += str(fd.readlink()).startswith(str(path))
        except FileNotFoundError:  # closed while we looked
            pass
    return count


def test_frames_leave_no_database_connection_behind(client, admin_headers, services):
    # Each frame is taken in a thread of its own; each used to keep its SQLite
    # connection (db, -wal, -shm) until shutdown, so a long job ran out of fds.
    job = create(client, admin_headers, interval_s=0.05, frames=60)
    done = wait_for(lambda: (j := get(client, admin_headers, job["id"]))["state"] == "completed"
                    and j, timeout=30)
    assert done["frames_captured"] >= 30  # a loaded machine may miss a few; each took a thread
    client.post("/api/v1/photos", headers=admin_headers, json=SMALL)  # a thread that reuses one
    assert _open_on(services.db.path) < 3 * 20


def test_frames_are_listed_and_archived_in_order(client, admin_headers):
    # Half a second apart: at 0.1 s a loaded machine missed one (missed, never burst).
    job = create(client, admin_headers, interval_s=0.5, frames=4)
    wait_for(lambda: get(client, admin_headers, job["id"])["state"] == "completed")
    listed = client.get(job["links"]["frames"], headers=admin_headers).json["items"]
    assert [p["sequence"] for p in listed] == [4, 3, 2, 1]
    assert {p["timelapse_id"] for p in listed} == {job["id"]}
    response = client.get(job["links"]["archive"], headers=admin_headers)
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.is_streamed
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.namelist() == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    assert archive.testzip() is None
    assert Image.open(io.BytesIO(archive.read("000003.jpg"))).size == (160, 120)


def test_slow_captures_are_missed_never_burst(client, admin_headers, services, mock_camera):
    mock_camera.delay_s = 0.35  # longer than the interval
    job = create(client, admin_headers, interval_s=0.2, frames=12)
    done = wait_for(lambda: (j := get(client, admin_headers, job["id"]))["state"] == "completed"
                    and j, timeout=15)
    assert done["frames_missed"] > 0
    assert done["frames_captured"] + done["frames_missed"] + done["frames_failed"] == 12
    assert [p.sequence for p in frames_of(services, job["id"])] == \
        list(range(1, done["frames_captured"] + 1))
    # Captures that did start, started within half an interval of their slot.
    assert all(late <= 0.1 for job_id, _, late in services.timelapses.scheduler.lateness
               if job_id == job["id"])


def test_pause_resume_and_cancel(client, admin_headers, services):
    job = create(client, admin_headers, interval_s=0.1)
    wait_for(lambda: get(client, admin_headers, job["id"])["frames_captured"] >= 2)
    paused = client.patch(job["links"]["self"], headers=admin_headers, json={"state": "paused"})
    assert paused.status_code == 200 and paused.json["state"] == "paused"
    assert paused.json["pause_reason"] == "user" and paused.json["next_frame_at"] is None
    count = len(frames_of(services, job["id"]))
    time.sleep(0.6)
    assert len(frames_of(services, job["id"])) <= count + 1  # at most the frame in flight
    resumed = client.patch(job["links"]["self"], headers=admin_headers, json={"state": "running"})
    assert resumed.json["state"] == "running"
    wait_for(lambda: len(frames_of(services, job["id"])) >= count + 3)
    # Time spent paused is not counted as missed.
    assert get(client, admin_headers, job["id"])["frames_missed"] == 0
    assert client.delete(job["links"]["self"], headers=admin_headers,
                         content_type="application/json").status_code == 409
    cancelled = client.patch(job["links"]["self"], headers=admin_headers,
                             json={"state": "cancelled"})
    assert cancelled.json["state"] == "cancelled" and cancelled.json["finished_at"]
    for state in ("running", "paused"):
        response = client.patch(job["links"]["self"], headers=admin_headers, json={"state": state})
        assert response.status_code == 409
        assert response.mimetype == "application/problem+json"
    assert client.delete(job["links"]["self"], headers=admin_headers,
                         content_type="application/json").status_code == 204
    assert client.get(job["links"]["self"], headers=admin_headers).status_code == 404
    # Without ?frames=true the photos stay.
    assert len(frames_of(services, job["id"])) >= count + 3


def test_delete_with_frames_removes_the_photos(client, admin_headers, services):
    job = create(client, admin_headers, interval_s=0.1, frames=3)
    wait_for(lambda: get(client, admin_headers, job["id"])["state"] == "completed")
    files = [services.photos.file(p) for p in frames_of(services, job["id"])]
    response = client.delete(job["links"]["self"] + "?frames=true", headers=admin_headers,
                             content_type="application/json")
    assert response.status_code == 204
    assert frames_of(services, job["id"]) == []
    assert not any(path.exists() for path in files)


class StartingClock(Clock):
    """Real time moved so that its first reading is ``local`` o'clock today.

    The first reading is the scheduler's, when the app is built: measured from there,
    how long building the app takes (a loaded machine) does not eat the margin.
    """

    def __init__(self, hour: int, minute: int, second: float):
        self.start = (hour, minute, second)
        self.offset: float | None = None

    def time(self) -> float:
        real = super().time()
        if self.offset is None:
            hour, minute, second = self.start
            target = dt.datetime.fromtimestamp(real).astimezone().replace(
                hour=hour, minute=minute, second=int(second),
                microsecond=round(second % 1 * 1e6))
            self.offset = target.timestamp() - real
        return real + self.offset


def test_daily_window_with_an_injected_clock(make_app, config, monkeypatch):
    # "Now" is 11:59:58.4 local time when the app is built; the window opens at 12:00.
    clock = StartingClock(11, 59, 58.4)
    monkeypatch.setattr("picam_api.timelapse.service.Clock", lambda: clock)
    app = make_app(config)
    client, headers = app.test_client(), basic("admin", ADMIN_PASSWORD)
    # Frames 0.5 s apart: at 0.2 s a loaded machine missed some, which is not what this is about.
    job = create(client, headers, interval_s=0.5, active_hours={"start": "12:00", "end": "12:01"})
    assert job["next_frame_at"] is not None
    next_local = dt.datetime.fromisoformat(job["next_frame_at"]).astimezone()
    assert (next_local.hour, next_local.minute, next_local.second) == (12, 0, 0)
    time.sleep(0.3)  # still before the window: nothing due, nothing missed
    before = get(client, headers, job["id"])
    assert dt.datetime.fromtimestamp(clock.time()).astimezone().minute == 59
    assert before["frames_captured"] == 0 and before["frames_missed"] == 0
    wait_for(lambda: get(client, headers, job["id"])["frames_captured"] >= 3, timeout=8)
    assert get(client, headers, job["id"])["frames_missed"] == 0


def test_a_window_that_is_closed_now_waits(client, admin_headers):
    now = dt.datetime.now().astimezone()
    opens, closes = now + dt.timedelta(hours=2), now + dt.timedelta(hours=3)
    job = create(client, admin_headers, interval_s=60,
                 active_hours={"start": opens.strftime("%H:%M"), "end": closes.strftime("%H:%M")})
    time.sleep(0.3)
    current = get(client, admin_headers, job["id"])
    assert current["frames_captured"] == 0 and current["frames_missed"] == 0
    next_local = dt.datetime.fromisoformat(current["next_frame_at"]).astimezone()
    assert next_local.strftime("%H:%M") == opens.strftime("%H:%M")


def test_consecutive_failures_fail_the_job(client, admin_headers, mock_camera):
    mock_camera.fail_rate = 1.0
    job = create(client, admin_headers, interval_s=0.1)
    failed = wait_for(lambda: (j := get(client, admin_headers, job["id"]))["state"] == "failed"
                      and j)
    assert failed["frames_failed"] == 3 and failed["frames_captured"] == 0
    assert "failed frame" in failed["last_error"]


def test_a_failure_is_counted_and_the_job_goes_on(client, admin_headers, mock_camera):
    mock_camera.fail_rate = 1.0
    job = create(client, admin_headers, interval_s=0.15)
    wait_for(lambda: get(client, admin_headers, job["id"])["frames_failed"] >= 1)
    mock_camera.fail_rate = 0.0
    recovered = wait_for(lambda: (j := get(client, admin_headers, job["id"]))["frames_captured"] >= 2
                         and j)
    assert recovered["state"] == "running" and recovered["last_error"]


def test_low_storage_pauses_and_space_resumes(client, admin_headers, services):
    services.photos.reserve_bytes = 10**18
    job = create(client, admin_headers, interval_s=0.1)
    paused = wait_for(lambda: (j := get(client, admin_headers, job["id"]))["state"] == "paused" and j)
    assert paused["pause_reason"] == "storage" and "reserve" in paused["last_error"]
    assert frames_of(services, job["id"]) == []
    services.photos.reserve_bytes = 0
    resumed = wait_for(lambda: (j := get(client, admin_headers, job["id"]))["frames_captured"] >= 2
                       and j, timeout=STORAGE_POLL_S + 5)
    assert resumed["state"] == "running" and resumed["pause_reason"] is None


def test_restart_resumes_counts_downtime_and_never_reuses_sequences(make_app, config):
    app = make_app(config)
    client, headers = app.test_client(), basic("admin", ADMIN_PASSWORD)
    job = create(client, headers, interval_s=0.1)
    wait_for(lambda: get(client, headers, job["id"])["frames_captured"] >= 5)
    app.extensions["picam"].shutdown()
    before = get_via_new_store(config, job["id"])
    time.sleep(1.0)  # about ten slots of downtime
    app2 = make_app(config)
    client2, services2 = app2.test_client(), app2.extensions["picam"]
    wait_for(lambda: get(client2, headers, job["id"])["frames_captured"] >= before + 3)
    after = get(client2, headers, job["id"])
    assert after["state"] == "running"
    assert after["frames_missed"] >= 7  # the downtime's slots, not shifted
    sequences = [p.sequence for p in frames_of(services2, job["id"])]
    assert sequences == sorted(set(sequences)) == list(range(1, len(sequences) + 1))


def get_via_new_store(config, job_id):
    """frames_captured as stored, read with a connection of our own."""
    db = sqlite3.connect(Path(config["storage"]["data_dir"]) / "picam.db")
    (count,) = db.execute("SELECT frames_captured FROM timelapses WHERE id = ?", (job_id,)).fetchone()
    db.close()
    return count


def test_active_job_cap(client, admin_headers):
    for _ in range(3):
        create(client, admin_headers, interval_s=60)
    response = client.post("/api/v1/timelapses", headers=admin_headers, json={"interval_s": 60})
    assert response.status_code == 409 and "max_active_jobs" in response.json["detail"]


def test_active_names_are_unique(client, admin_headers):
    create(client, admin_headers, interval_s=60, name="porch")
    response = client.post("/api/v1/timelapses", headers=admin_headers,
                           json={"interval_s": 60, "name": "porch"})
    assert response.status_code == 409


def test_shutdown_with_a_frame_in_flight_is_prompt(make_app, config):
    app = make_app(config)
    services = app.extensions["picam"]
    services.backend.delay_s = 1.0
    job = create(app.test_client(), basic("admin", ADMIN_PASSWORD), interval_s=0.1)
    wait_for(lambda: services.timelapses.scheduler._busy)
    started = time.monotonic()
    services.shutdown()
    assert time.monotonic() - started < 5.0
    assert not services.timelapses.scheduler.is_alive()
    assert get_via_new_store(config, job["id"]) >= 0


@pytest.mark.parametrize("body, field", [
    ({"interval_s": 0.01}, "interval_s"),
    ({"interval_s": "soon"}, "interval_s"),
    ({}, "interval_s"),
    ({"interval_s": 1, "frames": 5, "duration_s": 10}, "frames"),
    ({"interval_s": 1, "frames": 0}, "frames"),
    ({"interval_s": 1, "frames": 10**12}, "frames"),
    ({"interval_s": 1, "duration_s": -5}, "duration_s"),
    ({"interval_s": 1, "start_at": "2030-01-02T00:00:00+00:00",
      "end_at": "2030-01-01T00:00:00+00:00"}, "end_at"),
    ({"interval_s": 1, "start_at": "2020-01-01T00:00:00+00:00"}, "start_at"),
    ({"interval_s": 1, "start_at": "2030-01-01T00:00:00"}, "start_at"),
    ({"interval_s": 1, "start_at": "tomorrow"}, "start_at"),
    ({"interval_s": 1, "active_hours": {"start": "7am", "end": "19:00"}}, "active_hours.start"),
    ({"interval_s": 1, "active_hours": {"start": "07:00"}}, "active_hours.end"),
    ({"interval_s": 1, "active_hours": {"start": "07:00", "end": "07:00"}}, "active_hours"),
    # Python's re took these two, and the time parser then failed with a 500.
    ({"interval_s": 1, "active_hours": {"start": "07:00\n", "end": "19:00"}}, "active_hours.start"),
    ({"interval_s": 1, "active_hours": {"start": "0\u0667:00", "end": "19:00"}},
     "active_hours.start"),
    ({"interval_s": 1, "name": "garden\n"}, "name"),
    ({"interval_s": "1"}, "interval_s"),
    ({"interval_s": 1, "duration_s": 0}, "duration_s"),
    ({"interval_s": 1, "width": 7}, "width"),
    ({"interval_s": 1, "controls": {"Nope": 1}}, "controls.Nope"),
    ({"interval_s": 1, "colour": "red"}, "colour"),
])
def test_bad_jobs_are_422_naming_the_field(client, admin_headers, body, field):
    response = client.post("/api/v1/timelapses", headers=admin_headers, json=body)
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert field in response.json["errors"]


def test_unknown_ids_and_states(client, admin_headers, viewer_headers):
    for path in ("/api/v1/timelapses/20260101T000000000000Z-deadbeef",
                 "/api/v1/timelapses/..%2f..%2fetc", "/api/v1/timelapses/x" * 3):
        assert client.get(path, headers=admin_headers).status_code == 404
    job = create(client, admin_headers, interval_s=60)
    response = client.patch(job["links"]["self"], headers=admin_headers, json={"state": "done"})
    assert response.status_code == 422 and "state" in response.json["errors"]
    assert client.patch(job["links"]["self"], headers=viewer_headers,
                        json={"state": "paused"}).status_code == 403
    assert client.get(job["links"]["self"], headers=viewer_headers).status_code == 200
    missing = client.get("/api/v1/timelapses/20260101T000000000000Z-deadbeef/archive.zip",
                         headers=admin_headers)
    assert missing.status_code == 404


def test_jobs_list_is_paginated(client, admin_headers):
    ids = [create(client, admin_headers, interval_s=60)["id"] for _ in range(3)]
    first = client.get("/api/v1/timelapses?limit=2", headers=admin_headers).json
    second = client.get(first["next"], headers=admin_headers).json
    assert [j["id"] for j in first["items"] + second["items"]] == ids[::-1]
    assert second["next"] is None


def test_a_killed_server_resumes_the_job_with_valid_frames(tmp_path):
    server = ServerProcess(tmp_path, '[timelapse]\nmin_interval_s = 0.05\n').start()
    auth = ("admin", ADMIN_PASSWORD)
    try:
        job = requests.post(server.url + "/api/v1/timelapses", auth=auth,
                            json={**SMALL, "interval_s": 0.1}).json()
        url = server.url + job["links"]["self"]
        wait_for(lambda: requests.get(url, auth=auth).json()["frames_captured"] >= 5)
        server.kill()
        server.start()
        before = requests.get(url, auth=auth).json()
        assert before["state"] == "running"
        wait_for(lambda: requests.get(url, auth=auth).json()["frames_captured"]
                 >= before["frames_captured"] + 3)
        frames, next_url = [], server.url + job["links"]["frames"] + "&limit=500"
        while next_url:
            page = requests.get(next_url, auth=auth).json()
            frames += page["items"]
            next_url = page["next"] and server.url + page["next"]
        sequences = sorted(p["sequence"] for p in frames)
        assert sequences == list(range(1, len(sequences) + 1))
        for photo in frames:
            image = requests.get(server.url + photo["links"]["image"], auth=auth)
            Image.open(io.BytesIO(image.content)).verify()
    finally:
        server.kill()



def test_a_job_bounded_by_duration_says_when_it_ends(client, admin_headers):
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    job = create(client, admin_headers, interval_s=60, duration_s=5400,
                 start_at=start.isoformat())
    assert job["duration_s"] == 5400
    ends = dt.datetime.fromisoformat(job["end_at"].replace("Z", "+00:00"))
    assert abs((ends - start).total_seconds() - 5400) < 0.001
    assert job["end_at"].endswith("Z")
    assert get(client, admin_headers, job["id"])["end_at"] == job["end_at"]
    assert create(client, admin_headers, interval_s=60, frames=3)["end_at"] is None
