"""Inputs at the edge: far-future and calendar-edge times, durations and rates too
small to wait on, files that vanish or are damaged under a GET, and limits that
must hold under concurrent requests. Each is a 4xx problem (or, for a damaged
stored file, a 500 problem), never a traceback, a dead thread or a broken limit."""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading

import pytest

from picam_api.storage import PhotoStore

from conftest import assert_problem, wait_for

JSON = "application/json"


@pytest.fixture
def config(config):
    config["timelapse"] = {"min_interval_s": 0.05, "max_active_jobs": 4}
    config["gpio"] = {"devices": [{"name": "porch", "pin": 17, "kind": "led"},
                                  {"name": "lamp", "pin": 18, "kind": "pwm"}]}
    return config


def _create(client, headers, **body):
    return client.post("/api/v1/timelapses", headers=headers, json={"width": 64, "height": 48,
                                                                     **body})


@pytest.mark.parametrize("field, value", [
    ("start_at", "9999-12-31T23:59:59Z"),
    ("start_at", "9999-12-31T23:59:59-23:59"),
    ("start_at", "2100-01-01T00:00:00+00:00"),
    ("end_at", "9999-12-31T23:59:59-23:59"),  # past year 9999 once in UTC
    ("end_at", "9999-12-31T23:59:59+23:59"),
    ("end_at", "0001-01-01T00:00:00+23:59"),  # before year 1 in UTC
    ("duration_s", 10 * 366 * 86400 + 1),
    ("duration_s", 1e-300),
    ("interval_s", 1e-300),
])
def test_times_beyond_a_sane_horizon_are_422(client, admin_headers, services, field, value):
    body = {"interval_s": 1, field: value}
    assert_problem(_create(client, admin_headers, **body), 422, field)
    assert services.timelapses.scheduler.is_alive()
    assert client.get("/api/v1/timelapses", headers=admin_headers).json["items"] == []


def test_a_start_within_the_horizon_keeps_the_scheduler_alive(client, admin_headers, services):
    far = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=9 * 366)).isoformat()
    assert _create(client, admin_headers, interval_s=1, start_at=far).status_code == 201
    # A job due in nine years and one due now: the scheduler waits in slices, and runs both.
    job = _create(client, admin_headers, interval_s=0.1, frames=3).json
    wait_for(lambda: client.get(job["links"]["self"], headers=admin_headers).json["state"]
             == "completed", 10, "the near job to finish")
    assert services.timelapses.scheduler.is_alive()


@pytest.mark.parametrize("fps", ["1e-300", "0.01", "0"])
def test_a_stream_rate_too_low_to_wait_on_is_422(client, admin_headers, services, fps):
    assert_problem(client.get(f"/api/v1/stream.mjpg?fps={fps}", headers=admin_headers), 422, "fps")
    assert services.streams.stats()["producers"] == []


@pytest.mark.parametrize("action", [{"blink": {"on_time": 1e-9}}, {"blink": {"off_time": 0.001}},
                                    {"pulse": {"fade_in_time": 1e-9}}])
def test_gpio_times_below_a_hundredth_of_a_second_are_422(client, admin_headers, action):
    name = "lamp" if "pulse" in action else "porch"
    [(kind, times)] = action.items()
    [(field, _)] = times.items()
    body = assert_problem(client.patch(f"/api/v1/gpio/{name}", headers=admin_headers, json=action),
                          422, f"{kind}.{field}")
    assert "0.01" in body["detail"]
    # At the floor it works.
    assert client.patch(f"/api/v1/gpio/{name}", headers=admin_headers,
                        json={kind: {field: 0.01, "n": 1}}).status_code == 200


def test_max_active_jobs_holds_under_concurrent_creates(make_app, config, admin_headers):
    app = make_app(config)

    def create(n: int) -> int:
        return _create(app.test_client(), admin_headers, interval_s=60, name=f"job-{n}").status_code

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(create, range(12)))
    assert sorted(statuses) == [201] * 4 + [409] * 8
    assert app.extensions["picam"].timelapses.store.count_active() == 4


def test_an_active_name_is_unique_under_concurrent_creates(make_app, config, admin_headers):
    app = make_app(config)
    barrier = threading.Barrier(8)

    def create(n: int) -> int:
        client = app.test_client()
        barrier.wait()
        return _create(client, admin_headers, interval_s=60, name="garden").status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(create, range(8)))
    assert sorted(statuses) == [201] + [409] * 7


@pytest.fixture
def photo(client, admin_headers) -> dict:
    return client.post("/api/v1/photos", headers=admin_headers, json={"width": 64, "height": 48}).json


@pytest.mark.parametrize("link", ["image", "thumbnail"])
def test_a_file_deleted_under_a_get_is_404(client, admin_headers, services, photo, monkeypatch,
                                           link):
    # The photo is deleted (by a client or retention) between the lookup and the read.
    real_get = PhotoStore.get

    def get_then_deleted(self, photo_id):
        found = real_get(self, photo_id)
        with self.db.transaction() as conn:  # what delete() does, without its own get()
            conn.execute("DELETE FROM photos WHERE id = ?", (photo_id,))
        self._unlink(found)
        return found

    monkeypatch.setattr(PhotoStore, "get", get_then_deleted)
    body = assert_problem(client.get(photo["links"][link], headers=admin_headers), 404)
    assert photo["id"] in body["detail"]


def test_an_open_image_survives_a_delete(client, admin_headers, services, photo):
    record = services.photos.get(photo["id"])
    with services.photos.open_image(record) as image:
        services.photos.delete(photo["id"])
        assert len(image.read()) == photo["bytes"]  # what the GET had opened is sent whole


def test_a_damaged_image_file_is_a_500_problem_not_a_traceback(client, admin_headers, services,
                                                              photo, caplog):
    # The disk (an SD card) damaged the file after it was stored: not the client's fault,
    # and nothing a retry mends, so a 500 that says what is wrong, not a 4xx.
    (services.data_dir / services.photos.get(photo["id"]).path).write_bytes(b"\xff\xd8garbage")
    body = assert_problem(client.get(photo["links"]["thumbnail"], headers=admin_headers), 500)
    assert body["title"] == "Damaged file" and photo["id"] in body["detail"]
    assert "Traceback" not in caplog.text
    # The file itself is still served as stored.
    assert client.get(photo["links"]["image"], headers=admin_headers).status_code == 200
