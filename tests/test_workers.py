"""No background thread dies silently: an unexpected error is logged, counted in
/api/v1/health (``workers``), and the thread goes on."""
from __future__ import annotations

import sqlite3

import pytest

from picam_api import workers
from picam_api.timelapse import scheduler as scheduler_module
from picam_api.timelapse.scheduler import MAX_CRASHES, Scheduler

from conftest import wait_for

SMALL = {"width": 64, "height": 48}


@pytest.fixture
def config(config):
    config["timelapse"] = {"min_interval_s": 0.05}
    config["storage"].update(max_photos=1000, retention_interval_s=0.05)
    config["gpio"] = {"devices": [{"name": "door", "pin": 23, "kind": "button",
                                   "on_press": [{"action": "photo"}]}]}
    return config


def _workers(client) -> dict:
    return client.get("/api/v1/health").json["workers"]


def _job(client, headers, **body) -> dict:
    response = client.post("/api/v1/timelapses", headers=headers, json={**SMALL, **body})
    assert response.status_code == 201, response.text
    return response.json


def _state(client, headers, job) -> dict:
    return client.get(job["links"]["self"], headers=headers).json


def test_health_lists_every_long_lived_worker(client):
    workers = _workers(client)
    for name in ("picam-timelapse", "picam-retention", "picam-gpio-triggers"):
        assert workers[name] == {"alive": True, "restarts": 0, "last_error": None,
                                 "last_error_at": None}, name


def test_a_job_whose_step_fails_is_retried_then_failed_and_others_go_on(client, admin_headers,
                                                                        monkeypatch):
    bad = _job(client, admin_headers, interval_s=0.1, frames=50, name="bad")
    real = Scheduler._step

    def step(self, job, now):
        if job.id == bad["id"]:
            raise RuntimeError("a bug in the step")
        return real(self, job, now)

    monkeypatch.setattr(Scheduler, "_step", step)
    monkeypatch.setattr(scheduler_module, "CRASH_RETRY_S", 0.05)
    good = _job(client, admin_headers, interval_s=0.1, frames=3, name="good")
    failed = wait_for(lambda: (j := _state(client, admin_headers, bad))["state"] == "failed" and j,
                      10, "the broken job to fail")
    assert "a bug in the step" in failed["last_error"]
    wait_for(lambda: _state(client, admin_headers, good)["state"] == "completed", 10, "the good job")
    record = _workers(client)[f"picam-timelapse (job {bad['id']})"]
    assert record["restarts"] == MAX_CRASHES and "RuntimeError" in record["last_error"]
    assert _workers(client)["picam-timelapse"]["alive"]


def test_the_scheduler_loop_restarts_after_an_unexpected_error(client, admin_headers, services,
                                                               monkeypatch):
    scheduler = services.timelapses.scheduler
    real = scheduler._resume_if_space
    calls = []

    def once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the loop")
        return real(*args)

    monkeypatch.setattr(workers, "RESTART_DELAY_S", 0.05)
    monkeypatch.setattr(scheduler, "_resume_if_space", once)
    job = _job(client, admin_headers, interval_s=0.1, frames=3)
    # A job paused for storage makes the loop call _resume_if_space.
    with scheduler._lock:
        scheduler._jobs[job["id"]].pause_reason = "storage"
    wait_for(lambda: _workers(client)["picam-timelapse"]["restarts"] == 1, 10, "the restart")
    with scheduler._lock:
        scheduler._jobs[job["id"]].pause_reason = None
    wait_for(lambda: _state(client, admin_headers, job)["state"] == "completed", 10,
             "the job to go on after the restart")
    assert scheduler.is_alive()


def test_retention_and_trigger_errors_are_counted_and_they_go_on(client, services, monkeypatch):
    calls = []

    def broken(*args):
        calls.append(1)
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(services.photos, "enforce_retention", broken)
    wait_for(lambda: _workers(client)["picam-retention"]["restarts"] >= 2, 10, "retention errors")
    assert services.retention.is_alive()
    assert "database is locked" in _workers(client)["picam-retention"]["last_error"]

    services.gpio.triggers.submit(lambda: 1 / 0)
    wait_for(lambda: _workers(client)["picam-gpio-triggers"]["restarts"] == 1, 10, "the trigger")
    ran = []
    services.gpio.triggers.submit(lambda: ran.append(1))
    wait_for(lambda: ran, 10, "the next trigger job")


def test_a_stream_producer_error_is_counted_and_the_next_client_streams(client, admin_headers,
                                                                        services, monkeypatch):
    owner = services.owner
    real = owner.stream_frame
    monkeypatch.setattr(owner, "stream_frame", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("a bug in the encoder")))
    response = client.get("/api/v1/stream.mjpg?size=640x480", headers=admin_headers)
    response.close()
    wait_for(lambda: any(name.startswith("picam-stream-") and record["restarts"]
                         for name, record in _workers(client).items()), 10, "the producer error")
    monkeypatch.setattr(owner, "stream_frame", real)
    response = client.get("/api/v1/stream.mjpg", headers=admin_headers, buffered=False)
    try:
        assert response.status_code == 200
        assert b"--frame" in next(response.response)
    finally:
        response.close()


def test_a_far_future_job_stored_by_an_older_release_does_not_stop_the_scheduler(
        make_app, config, admin_headers):
    app = make_app(config)
    client = app.test_client()
    job = _job(client, admin_headers, interval_s=1, start_at="2030-01-01T00:00:00Z")
    services = app.extensions["picam"]
    services.shutdown()
    # The first release let this in; Event.wait() overflowed on it, every start.
    with sqlite3.connect(services.data_dir / "picam.db") as db:
        db.execute("UPDATE timelapses SET start_at = ? WHERE id = ?",
                   ("9999-12-31T23:59:59.000000Z", job["id"]))
    app = make_app(config)
    client = app.test_client()
    assert _state(client, admin_headers, job)["state"] == "scheduled"
    near = _job(client, admin_headers, interval_s=0.1, frames=2)
    wait_for(lambda: _state(client, admin_headers, near)["state"] == "completed", 10, "a near job")
    assert _workers(client)["picam-timelapse"] == {"alive": True, "restarts": 0,
                                                   "last_error": None, "last_error_at": None}
