from __future__ import annotations

import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from picam_api import create_app, passwords

PROBLEM = "application/problem+json"
ADMIN_PASSWORD = "admin-password-1"
VIEWER_PASSWORD = "viewer-password-1"
BIN = Path(sys.executable).parent


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def assert_problem(response, status: int, field: str | None = None) -> dict:
    """``response`` (Flask's or requests') is an RFC 9457 problem with ``status``.

    With ``field``, its ``errors`` name that field or one inside it ("blink.on_time").
    """
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"] == PROBLEM
    body = json.loads(response.text)
    for key, kind in (("type", str), ("title", str), ("status", int), ("detail", str)):
        assert isinstance(body.get(key), kind) and body[key] != "", key
    assert body["status"] == status
    assert "<html" not in response.text.lower() and "Traceback" not in response.text
    if field is not None:
        assert any(key == field or key.startswith(field + ".") for key in body["errors"]), body
    return body


def wait_for(predicate, timeout: float = 10.0, what: str = "the condition"):
    """Poll until ``predicate()`` is truthy and return its value; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.02)
    return value


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true",
                     help="run the proof tests (fuzzing, crashes, load) at full length")


# The files that take longest, longest first, run before the rest: scripts/test hands
# whole files to two workers in collection order (--dist loadfile, with xdist's own
# order by test count turned off), so the workers end together rather than one
# running the crash loop or the fuzzer alone after the other is done.
SLOW_FILES = ["test_install.py", "test_web.py", "test_crash.py", "test_pi_versions.py",
              "test_stream.py", "test_pi_backend.py", "test_fuzz.py", "test_mqtt.py",
              "test_video_crash.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest as found


@pytest.fixture
def long_run(request) -> bool:
    """True under ``pytest --long``: the proof tests do more rounds."""
    return request.config.getoption("--long")


@pytest.fixture
def config(tmp_path) -> dict:
    """The test config: mock camera, data in tmp_path, no free-space reserve."""
    return {
        "storage": {"data_dir": str(tmp_path / "data"), "reserve_mb": 0},
        "camera": {"backend": "mock", "capture_timeout_s": 2.0, "retry_after_s": 3,
                   "mock": {"seed": 1}},
    }


@pytest.fixture
def make_app(monkeypatch):
    """Build apps from config mappings; every one is shut down after the test."""
    monkeypatch.setenv("PICAM_ADMIN_PASSWORD", ADMIN_PASSWORD)
    apps = []

    def make(config):
        app = create_app(config)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["picam"].shutdown()


@pytest.fixture
def app(make_app, config):
    return make_app(config)


@pytest.fixture
def services(app):
    return app.extensions["picam"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return basic("admin", ADMIN_PASSWORD)


@pytest.fixture
def viewer_headers(services) -> dict[str, str]:
    services.accounts.add_user("viewer", VIEWER_PASSWORD, "viewer")
    return basic("viewer", VIEWER_PASSWORD)


@pytest.fixture
def hash_calls(monkeypatch) -> list[str]:
    """Counts the slow password hash checks, as ``picam_api.passwords`` makes them."""
    calls: list[str] = []
    real = passwords.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        calls.append(password)
        return real(pwhash, password)

    monkeypatch.setattr(passwords, "check_password_hash", counting)
    return calls


@pytest.fixture
def mock_camera(services):
    """The app's mock backend, whose fault knobs a test may turn."""
    return services.backend


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range.

    A port the kernel hands out for bind(0) is also one it hands out to the next
    outgoing connection; a server started a minute later (after an install) then
    finds it taken. Ports below ip_local_port_range are never picked that way.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class ServerProcess:
    """``picam-api serve`` started as a user starts it, on a free port."""

    def __init__(self, tmp_path: Path, extra_toml: str = "", threads: int = 12):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / "server-data"
        self.config_file = tmp_path / "server.toml"
        self.config_file.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\nthreads = {threads}\n'
            f'graceful_timeout_s = 3.0\n'
            f'[storage]\ndata_dir = "{self.data_dir}"\nreserve_mb = 0\n'
            f'[camera]\nbackend = "mock"\ncapture_timeout_s = 2.0\n{extra_toml}')
        self.log = tmp_path / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        env = {**os.environ, "PICAM_ADMIN_PASSWORD": ADMIN_PASSWORD}
        env.pop("PICAM_CONFIG", None)
        self.proc = subprocess.Popen(
            [str(BIN / "picam-api"), "serve", "--config", str(self.config_file)],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if requests.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or a loaded machine
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not answer within {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the whole server, worker included, as a crash or power cut would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server did not stop within {timeout} s on signal {sig}")


@pytest.fixture
def server(tmp_path):
    """A started server; stopped after the test whatever happened."""
    process = ServerProcess(tmp_path).start()
    yield process
    if process.proc and process.proc.poll() is None:
        process.kill()


def ffprobe(path) -> dict:
    """The first video stream of ``path`` as ffprobe reads it, frames counted by decoding."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,profile,pix_fmt,color_range,color_space,width,height,nb_read_frames,"
         "avg_frame_rate,duration",
         "-of", "json", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    stream = json.loads(done.stdout)["streams"][0]
    numerator, denominator = stream["avg_frame_rate"].split("/")
    stream["fps"] = int(numerator) / int(denominator)
    stream["frames"] = int(stream["nb_read_frames"])
    stream["duration"] = float(stream["duration"])
    return stream


def mp4_boxes(data: bytes) -> list[str]:
    """The top-level box types of an MP4, in file order (``moov`` before ``mdat`` = faststart)."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        boxes.append(data[offset + 4:offset + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        if size < 8:
            break
        offset += size
    return boxes


# -- the simulated Pi camera (tests/simcam) under the real picamera2 ---------------

# tests/test_pi_versions.py runs the picamera2 suite again with another picamera2 first on the path.
if os.environ.get("PICAM_TEST_PICAMERA2"):
    sys.path.insert(0, os.environ["PICAM_TEST_PICAMERA2"])
SIMCAM_SITE = Path(__file__).resolve().parent / "simcam" / "site"


@pytest.fixture
def sim(request, monkeypatch):
    """A fresh simulated machine (``simcam.World``); parametrise with a dict of its fields."""
    monkeypatch.syspath_prepend(str(SIMCAM_SITE))
    import simcam

    fields = dict(getattr(request, "param", {}))
    if os.environ.get("PICAM_TEST_LIBCAMERA"):
        fields.setdefault("libcamera", os.environ["PICAM_TEST_LIBCAMERA"])
    world = simcam.reset(**fields)
    yield world
    import gc

    from picamera2.picamera2 import Picamera2

    gc.collect()  # a Picamera2 whose __init__ failed closes itself in __del__
    assert not [camera for camera in Picamera2._cm.cameras.values() if camera.is_open], \
        "a test left a Picamera2 open"
    simcam.reset()


@pytest.fixture
def backend(sim):
    """The picamera2 backend, opened on the simulated camera 0."""
    from picam_api.camera.pi import Picamera2Camera

    cam = Picamera2Camera({"camera_num": 0})
    cam.open()
    yield cam
    cam.close()
