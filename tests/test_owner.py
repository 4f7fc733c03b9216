import threading
import time

import pytest

from picam_api.camera.base import CaptureSettings
from picam_api.camera.mock import MockCamera
from picam_api.camera.owner import CameraOwner
from picam_api.config import from_mapping
from picam_api.errors import CameraBusy, CameraUnavailable, CaptureTimeout

SMALL = CaptureSettings(width=64, height=48)


@pytest.fixture
def mock():
    return MockCamera(from_mapping({})["camera"])


@pytest.fixture
def owner(mock):
    owner = CameraOwner(mock, timeout=0.5, retry_after=7, reopen_backoff=0.0)
    yield owner
    owner.close()


def test_opens_on_first_use(owner, mock):
    assert mock.opens == 0
    owner.capture(SMALL)
    assert mock.opens == 1 and owner.captures == 1


def test_timeout_closes_and_the_next_capture_reopens(owner, mock):
    owner.capture(SMALL)
    mock.hang = True
    with pytest.raises(CaptureTimeout) as caught:
        owner.capture(SMALL)
    assert caught.value.retry_after == 7
    assert caught.value.headers == {"Retry-After": "7"}
    mock.hang = False
    owner.capture(SMALL)
    assert mock.opens == 2
    assert owner.failures == 1 and owner.last_error is None


def test_a_capture_holding_the_lock_makes_others_busy(owner, mock):
    mock.delay_s = 0.45  # under the timeout, so the first capture succeeds
    results = {}

    def slow():
        results["slow"] = owner.capture(SMALL)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.02)
    mock.delay_s = 0.0
    owner.timeout = 0.1  # the second caller gives up waiting for the lock
    with pytest.raises(CameraBusy):
        owner.capture(SMALL)
    thread.join()
    assert results["slow"].width == 64


def test_health_reports_a_missing_camera_and_recovers(mock):
    mock.missing = True
    owner = CameraOwner(mock, timeout=0.5, retry_after=3, reopen_backoff=0.0)
    health = owner.health()
    assert not health["ok"] and "no camera" in health["error"]
    with pytest.raises(CameraUnavailable):
        owner.capture(SMALL)
    mock.missing = False
    assert owner.health()["ok"]
    owner.capture(SMALL)
    owner.close()


def test_reopen_is_rate_limited(mock):
    mock.missing = True
    owner = CameraOwner(mock, timeout=0.5, retry_after=3, reopen_backoff=60)
    with pytest.raises(CameraUnavailable):
        owner.capture(SMALL)
    mock.missing = False
    with pytest.raises(CameraUnavailable):  # still inside the backoff: no new attempt
        owner.capture(SMALL)
    assert mock.opens == 0


def test_hooks_wrap_each_capture(owner):
    events = []

    class Light:
        def __enter__(self):
            events.append("on")

        def __exit__(self, *exc):
            events.append("off")

    owner.hooks.append(Light)
    owner.capture(SMALL)
    assert events == ["on", "off"]
