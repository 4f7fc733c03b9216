"""systemd's watchdog: sd_notify datagrams fed only while the camera path is alive."""
from __future__ import annotations

import os
import threading

import pytest
import requests

from conftest import ADMIN_PASSWORD, ServerProcess, wait_for
from notify_socket import NotifySocket
from picam_api import watchdog
from picam_api.camera.base import CaptureSettings
from picam_api.errors import CameraError, CaptureFailed
from picam_api.watchdog import Watchdog, notify, ping_interval


@pytest.fixture
def notify_socket(tmp_path):
    receiver = NotifySocket(str(tmp_path / "notify"))
    yield receiver
    receiver.close()


@pytest.fixture
def abstract_notify_socket():
    receiver = NotifySocket.abstract()
    yield receiver
    receiver.close()


def test_ping_interval_follows_sd_watchdog_enabled(notify_socket):
    env = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "30000000"}
    assert ping_interval(env) == 15.0
    # systemd's main process is the one that pings; any other inherited the variables.
    assert ping_interval({**env, "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert ping_interval({**env, "WATCHDOG_PID": str(os.getppid())}) is None
    assert ping_interval({**env, "WATCHDOG_PID": "1"}) is None
    assert ping_interval({**env, "WATCHDOG_USEC": "0"}) is None
    assert ping_interval({**env, "WATCHDOG_USEC": "soon"}) is None
    assert ping_interval({"WATCHDOG_USEC": "30000000"}) is None


def test_notify_sends_one_datagram(notify_socket, abstract_notify_socket):
    assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": notify_socket.address})
    assert notify_socket.receive(0.5) == ["WATCHDOG=1"]
    # "@" names a socket in the abstract namespace.
    assert notify("STATUS=hi", {"NOTIFY_SOCKET": abstract_notify_socket.address})
    assert abstract_notify_socket.receive(0.5) == ["STATUS=hi"]
    assert not notify("WATCHDOG=1", {})


def test_pings_stop_while_a_camera_call_is_stuck(make_app, config, notify_socket,
                                                 monkeypatch, caplog):
    config["camera"]["capture_timeout_s"] = 0.3
    owner = make_app(config).extensions["picam"].owner
    monkeypatch.setattr(watchdog, "STUCK_MARGIN_S", 0.2)
    dog = Watchdog(owner, {"NOTIFY_SOCKET": notify_socket.address})
    dog.tick()
    assert notify_socket.receive(0.5) == ["WATCHDOG=1"]

    # A driver stuck in the kernel: the capture ignores its timeout.
    release = threading.Event()

    def hung(settings, timeout):
        release.wait()
        raise CaptureFailed("the driver gave up")  # how such a call ends, if it ever does

    monkeypatch.setattr(owner.backend, "capture", hung)
    stuck = threading.Thread(target=_capture_ignoring_errors, args=(owner,))
    stuck.start()
    try:
        wait_for(lambda: owner.held_for() > 0)
        dog.tick()  # a capture in progress is fine
        assert notify_socket.receive(0.3) == ["WATCHDOG=1"]
        wait_for(lambda: owner.overdue() > watchdog.STUCK_MARGIN_S)
        dog.tick()
        dog.tick()
        assert notify_socket.receive(0.3) == []
        assert "a camera call has not returned" in caplog.text
        assert caplog.text.count("camera path is dead") == 1
    finally:
        release.set()
        stuck.join(5)
    dog.tick()
    assert notify_socket.receive(0.5) == ["WATCHDOG=1"]
    assert "camera path is alive again" in caplog.text


def test_pings_stop_after_capture_timeouts_in_a_row(services, notify_socket):
    owner = services.owner
    dog = Watchdog(owner, {"NOTIFY_SOCKET": notify_socket.address})
    owner.backend.hang = True
    owner.timeout = 0.1
    for _ in range(watchdog.TIMEOUTS_IN_A_ROW - 1):
        _capture_ignoring_errors(owner)
        dog.tick()
        assert notify_socket.receive(0.3) == ["WATCHDOG=1"]
    _capture_ignoring_errors(owner)
    dog.tick()
    assert notify_socket.receive(0.3) == []
    # One good frame and the camera path counts as alive again.
    owner.backend.hang = False
    _capture_ignoring_errors(owner)
    dog.tick()
    assert notify_socket.receive(0.3) == ["WATCHDOG=1"]


def test_served_worker_feeds_the_watchdog_until_the_camera_hangs(
        tmp_path, abstract_notify_socket, monkeypatch):
    # As systemd starts it: $NOTIFY_SOCKET in the abstract namespace, WatchdogSec=0.4s.
    monkeypatch.setenv("NOTIFY_SOCKET", abstract_notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    process = ServerProcess(tmp_path, "[camera.mock]\nhang = true\n")
    # Shorter captures than the usual test server's, to time out sooner.
    config = process.config_file.read_text()
    process.config_file.write_text(config.replace("capture_timeout_s = 2.0",
                                                  "capture_timeout_s = 0.5"))
    process.start()
    try:
        # The server reports ready, then pings every 0.2 s.
        messages = abstract_notify_socket.receive(1.5)
        assert any(m.startswith("READY=1") for m in messages), messages
        assert messages.count("WATCHDOG=1") >= 3, messages

        # Every capture times out; the owner reopens the camera after each.
        for _ in range(watchdog.TIMEOUTS_IN_A_ROW):
            response = requests.get(process.url + "/api/v1/snapshot.jpg",
                                    auth=("admin", ADMIN_PASSWORD), timeout=30)
            assert response.status_code == 503
        abstract_notify_socket.receive(0.3)  # a ping may have been on its way
        assert "WATCHDOG=1" not in abstract_notify_socket.receive(1.5)
        assert "camera path is dead" in process.log.read_text()
    finally:
        process.stop()


def test_the_first_ping_comes_with_ready_not_half_a_watchdog_period_later(
        tmp_path, abstract_notify_socket, monkeypatch):
    # pi-audit F11: systemd starts the watchdog clock at READY=1, so the first ping
    # must not wait for the worker's period (15 s of WatchdogSec=30s).
    monkeypatch.setenv("NOTIFY_SOCKET", abstract_notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    process = ServerProcess(tmp_path).start()
    try:
        messages = abstract_notify_socket.receive(1.0)
        assert messages[0].startswith("READY=1"), messages
        assert "WATCHDOG=1" in messages[1:], messages
    finally:
        assert process.stop() == 0
    # And a clean stop says so first.
    assert "STOPPING=1" in abstract_notify_socket.receive(0.5)


def _capture_ignoring_errors(owner) -> None:
    try:
        owner.capture(CaptureSettings(width=64, height=48))
    except CameraError:
        pass
