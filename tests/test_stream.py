"""Live view: GET /api/v1/stream.mjpg, the mjpg-streamer aliases, and the stream hub.

Most tests run a real ``picam-api serve`` (one process, waitress) and read
the multipart body as clients do; the ones that look inside the hub serve an
in-process app from a WSGI server thread.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests
from PIL import Image
from requests.auth import HTTPBasicAuth
from werkzeug.serving import make_server

from conftest import (ADMIN_PASSWORD, BIN, PROBLEM, ServerProcess, assert_problem, basic,
                      wait_for)
from picam_api.camera.base import CaptureSettings
from picam_api.config import from_mapping
from picam_api.errors import CaptureFailed, ConfigError, TooManyStreams

STREAM = "/api/v1/stream.mjpg"
FPS = 10.0
STREAM_TOML = f"[stream]\nfps = {FPS}\nidle_stop_s = 0.5\nmax_clients = 4\n"
ADMIN = basic("admin", ADMIN_PASSWORD)


@pytest.fixture
def stream_server(tmp_path):
    """``picam-api serve`` streaming at 10 fps; stopped after the test."""
    process = ServerProcess(tmp_path, STREAM_TOML).start()
    yield process
    process.stop()


@pytest.fixture
def live(make_app, config):
    """An in-process app served by a WSGI server thread: (base URL, services)."""
    config["stream"] = {"fps": FPS, "idle_stop_s": 0.3, "max_clients": 4}
    app = make_app(config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app.extensions["picam"]
    server.shutdown()
    thread.join()


class Parts:
    """Reads a multipart/x-mixed-replace body part by part, checking its framing."""

    def __init__(self, response: requests.Response):
        assert response.status_code == 200, response.text[:300]
        assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        assert response.headers["Cache-Control"] == "no-store"
        self.response = response
        self.chunks = response.iter_content(chunk_size=None)
        self.buffer = b""
        self.count = 0

    def next(self) -> Image.Image:
        """The next part's JPEG, opened by Pillow, after checking its headers."""
        assert self._until(b"\r\n") == b"--frame"
        lines = self._until(b"\r\n\r\n").decode("ascii").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        assert headers["Content-Type"] == "image/jpeg"
        body = self._take(int(headers["Content-Length"]))
        assert self._take(2) == b"\r\n"  # so Content-Length was exact
        image = Image.open(io.BytesIO(body))
        image.load()
        assert image.format == "JPEG"
        self.count += 1
        return image

    def close(self) -> None:
        self.response.close()

    def _until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            self._fill()
        head, self.buffer = self.buffer[:end], self.buffer[end + len(marker):]
        return head

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _fill(self) -> None:
        self.buffer += next(self.chunks)


def open_stream(base: str, path: str = STREAM, headers: dict | None = ADMIN, **params) -> Parts:
    return Parts(requests.get(base + path, params=params, headers=headers, stream=True,
                              timeout=(5, 10)))


class Reader(threading.Thread):
    """A client reading parts in the background; ``count`` grows as they arrive."""

    def __init__(self, base: str, path: str = STREAM, **params):
        super().__init__(daemon=True)
        self.parts = open_stream(base, path, **params)
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.start()

    @property
    def count(self) -> int:
        return self.parts.count

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.parts.next()
        except BaseException as exc:
            if not self.stopping.is_set():
                self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.parts.close()
        self.join(10)
        assert self.error is None, self.error


def rate(readers: list[Reader], seconds: float) -> list[float]:
    """Parts per second each reader got over ``seconds``."""
    before = [r.count for r in readers]
    time.sleep(seconds)
    return [(r.count - b) / seconds for r, b in zip(readers, before)]


def info(base: str) -> dict:
    response = requests.get(base + "/api/v1/info", headers=ADMIN, timeout=5)
    assert response.status_code == 200
    return response.json()



def wait_parts(readers: list[Reader], count: int) -> None:
    wait_for(lambda: all(r.count >= count for r in readers), 10, f"{count} parts for every reader")



# -- over a real server -------------------------------------------------------------


def test_concurrent_clients_get_valid_parts_from_one_capture_per_tick(stream_server):
    base = stream_server.url
    readers = [Reader(base) for _ in range(3)]
    wait_parts(readers, 3)
    captures = info(base)["camera"]["captures"]
    started = time.monotonic()
    rates = rate(readers, 3.0)
    per_second = (info(base)["camera"]["captures"] - captures) / (time.monotonic() - started)
    # One producer at 10 fps, shared: a capture per client would be 30 a second.
    assert 0.7 * FPS <= per_second <= 1.3 * FPS, per_second
    assert all(r >= 0.8 * FPS for r in rates), rates
    assert info(base)["stream"] == {"clients": 3, "max_clients": 4, "producers": ["640x480"]}
    for reader in readers:
        reader.stop()
    # Every part was a full 640x480 JPEG with an exact Content-Length (Parts checks).
    assert all(reader.count >= 30 for reader in readers)
    wait_for(lambda: info(base)["stream"]["clients"] == 0, 6, "the server saw the clients go")
    wait_for(lambda: info(base)["stream"]["producers"] == [], 3, "the producer stopped")
    captures = info(base)["camera"]["captures"]
    time.sleep(0.5)
    assert info(base)["camera"]["captures"] == captures  # nothing captures with no clients


def stalled_client(server: ServerProcess, query: str = "") -> socket.socket:
    """A client that asks for the stream and never reads it: once its buffers are
    full, the server's writes to it block."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {STREAM}{query} HTTP/1.1\r\nHost: localhost\r\n"
                 f"Authorization: {ADMIN['Authorization']}\r\n\r\n".encode())
    return sock


def test_a_slow_client_does_not_slow_the_others(stream_server):
    base = stream_server.url
    stalled = stalled_client(stream_server)
    readers = [Reader(base) for _ in range(2)]
    wait_parts(readers, 3)
    assert info(base)["stream"]["clients"] == 3  # all on the one 640x480 producer
    rates = rate(readers, 3.0)
    assert all(r >= 0.8 * FPS for r in rates), rates
    for reader in readers:
        reader.stop()
    stalled.close()


def test_a_client_that_stops_reading_is_dropped_within_seconds_with_one_line(tmp_path):
    # The buffers hold about a frame, so the next write waits at once; after the
    # write timeout (5 s) the client is dropped.
    server = ServerProcess(tmp_path, "[stream]\nquality = 95\n").start()
    try:
        stalled = stalled_client(server, "?size=1280x720&fps=30")
        wait_for(lambda: info(server.url)["stream"]["clients"] == 1, 5, "the client came")
        came = time.monotonic()
        wait_for(lambda: info(server.url)["stream"]["clients"] == 0, 30, "the client was dropped")
        assert time.monotonic() - came < 7.5
        stalled.close()
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log
    assert [line for line in log.splitlines() if "stream.mjpg" in line or "isconnect" in line] == [
        next(line for line in log.splitlines()
             if line.endswith("dropped 127.0.0.1 (GET /api/v1/stream.mjpg): it took no data "
                              "for 5 s"))]


def test_a_paused_viewer_resumes_at_the_live_picture_not_seconds_behind(stream_server):
    # A viewer pauses for 3 s (30 frames at 10 fps). What it reads in the first
    # 0.25 s after that is what was buffered for it, plus two or three new frames.
    # Its own receive buffer is kept small: what is counted is the server's.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", stream_server.port))
    sock.sendall(f"GET {STREAM} HTTP/1.0\r\nAuthorization: {ADMIN['Authorization']}\r\n\r\n"
                 .encode())
    try:
        sock.settimeout(5)
        head = b""
        while head.count(b"--frame") < 3:  # streaming
            head += sock.recv(65536)
        time.sleep(3.0)
        resumed, caught_up = time.monotonic(), b""
        while (left := resumed + 0.25 - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                caught_up += sock.recv(1 << 20)
            except socket.timeout:
                break
        assert caught_up.count(b"--frame") <= 10, caught_up.count(b"--frame")
    finally:
        sock.close()


def test_the_client_cap_gives_503_while_health_and_snapshots_answer(tmp_path):
    server = ServerProcess(tmp_path, STREAM_TOML.replace("max_clients = 4", "max_clients = 2"))
    server.start()
    try:
        readers = [Reader(server.url) for _ in range(2)]
        wait_parts(readers, 2)
        refused = requests.get(server.url + STREAM, headers=ADMIN, stream=True, timeout=5)
        body = assert_problem(refused, 503)
        assert "stream.max_clients" in body["detail"]
        assert int(refused.headers["Retry-After"]) > 0
        started = time.monotonic()
        assert requests.get(server.url + "/api/v1/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
        snapshot = requests.get(server.url + "/api/v1/snapshot.jpg?width=320&height=240",
                                headers=ADMIN, timeout=5)
        assert snapshot.status_code == 200 and snapshot.content[:2] == b"\xff\xd8"
        # A client that leaves frees its slot within seconds.
        readers.pop().stop()
        again = wait_for(lambda: (r := requests.get(server.url + STREAM, headers=ADMIN, stream=True,
                                                     timeout=5)).status_code == 200 and r,
                         6, "a slot was freed")
        Parts(again).next()
        again.close()
        for reader in readers:
            reader.stop()
    finally:
        server.stop()


def test_a_snapshot_and_a_photo_taken_while_streaming_succeed(stream_server):
    base = stream_server.url
    reader = Reader(base)
    wait_parts([reader], 2)
    snapshot = requests.get(base + "/api/v1/snapshot.jpg", headers=ADMIN, timeout=10)
    assert snapshot.status_code == 200
    assert Image.open(io.BytesIO(snapshot.content)).size == (1920, 1080)  # the capture defaults
    photo = requests.post(base + "/api/v1/photos", headers=ADMIN, timeout=10,
                          json={"width": 4608, "height": 2592, "quality": 80})
    assert photo.status_code == 201, photo.text
    image = requests.get(base + photo.json()["links"]["image"], headers=ADMIN, timeout=10)
    assert Image.open(io.BytesIO(image.content)).size == (4608, 2592)
    seen = reader.count
    wait_for(lambda: reader.count >= seen + 5, 5, "the stream went on")
    reader.stop()


def test_the_aliases_answer_like_the_real_paths(stream_server):
    base = stream_server.url
    parts = open_stream(base, "/?action=stream")
    assert parts.next().size == (640, 480)
    parts.next()
    parts.close()
    snapshot = requests.get(base + "/?action=snapshot", headers=ADMIN, timeout=10)
    real = requests.get(base + "/api/v1/snapshot.jpg", headers=ADMIN, timeout=10)
    assert snapshot.status_code == real.status_code == 200
    for name in ("Content-Type", "Cache-Control"):
        assert snapshot.headers[name] == real.headers[name]
    assert (Image.open(io.BytesIO(snapshot.content)).size
            == Image.open(io.BytesIO(real.content)).size)
    for path in ("/?action=stream", "/?action=snapshot", STREAM):
        refused = requests.get(base + path, timeout=5)
        assert_problem(refused, 401)
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
    page = requests.get(base + "/", timeout=5)  # a bare / is the web page (test_web.py)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    body = assert_problem(requests.get(base + "/?action=take", headers=ADMIN, timeout=5), 422)
    assert "action" in body["errors"]


def test_head_answers_like_get_and_holds_no_slot(stream_server):
    base = stream_server.url
    for _ in range(6):  # more than stream.max_clients
        head = requests.head(base + STREAM, headers=ADMIN, timeout=10)
        assert head.status_code == 200
        assert head.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
    wait_for(lambda: info(base)["stream"]["clients"] == 0, 3, "no slot held")


@pytest.mark.parametrize("sig, to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGTERM as systemd sends it", "SIGINT as Ctrl-C sends it"])
def test_a_stop_signal_ends_the_streams_and_stops_cleanly_within_the_grace(
        stream_server, sig, to_group):
    reader = Reader(stream_server.url)
    wait_parts([reader], 2)
    started = time.monotonic()
    if to_group:  # a terminal signals the whole foreground process group
        os.killpg(stream_server.proc.pid, sig)
        assert stream_server.proc.wait(10) == 0
    else:
        assert stream_server.stop(sig, timeout=10) == 0
    assert "Traceback" not in stream_server.log.read_text()
    # Within the grace (3 s), not killed at its end: the app closed the camera.
    assert time.monotonic() - started < 3.0
    assert "picam-api stopped" in stream_server.log.read_text()
    reader.join(5)
    # Its body ended, at a part boundary: the stream was closed, not cut.
    assert isinstance(reader.error, StopIteration) and reader.parts.buffer == b""


def test_ffprobe_identifies_the_stream_as_mjpeg(stream_server):
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (apt-get install ffmpeg); the stream was not "
                    "checked with it")
    url = stream_server.url.replace("http://", f"http://admin:{ADMIN_PASSWORD}@") + STREAM
    done = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                           "stream=codec_name,width,height", "-of", "json", url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (stream,) = json.loads(done.stdout)["streams"]
    assert stream == {"codec_name": "mjpeg", "width": 640, "height": 480}


def test_the_frame_rate_is_in_a_header_and_ffmpeg_times_frames_by_the_wall_clock(
        stream_server, tmp_path):
    opened = requests.get(stream_server.url + STREAM + "?fps=5", headers=ADMIN, stream=True,
                          timeout=10)
    assert opened.headers["X-Framerate"] == "5"
    opened.close()
    capped = requests.get(stream_server.url + STREAM + "?fps=500", headers=ADMIN, stream=True,
                          timeout=10)
    assert capped.headers["X-Framerate"] == "30"  # stream.max_fps
    capped.close()
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    # docs/integrations.md: MJPEG has no timing, so ffmpeg assumes 25 fps unless it
    # stamps each frame with the time it arrived. Two seconds at 5 fps are then ~2 s.
    url = stream_server.url.replace("http://", f"http://admin:{ADMIN_PASSWORD}@") + STREAM + "?fps=5"
    clip = tmp_path / "clip.mkv"
    done = subprocess.run(["ffmpeg", "-v", "error", "-use_wallclock_as_timestamps", "1", "-i", url,
                           "-t", "2", "-c", "copy", "-y", str(clip)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    probed = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
                             "format=duration:stream=nb_read_packets", "-of", "json", str(clip)],
                            capture_output=True, text=True, timeout=30)
    report = json.loads(probed.stdout)
    frames = int(report["streams"][0]["nb_read_packets"])
    assert 6 <= frames <= 14, report  # about 10: 5 fps for 2 s, on a loaded machine
    assert 1.4 <= float(report["format"]["duration"]) <= 2.6, report


def test_the_integration_settings_in_the_docs_work(stream_server, tmp_path):
    """Home Assistant, OctoPrint and ffmpeg as docs/integrations.md sets them up, with a viewer."""
    added = subprocess.run([str(BIN / "picam-api"), "user", "add", "homeassistant", "--role",
                            "viewer", "--password-stdin", "--config",
                            str(stream_server.config_file)],
                           input="viewer-password-1\n", text=True, capture_output=True,
                           timeout=30)
    assert added.returncode == 0, added.stderr
    base = stream_server.url
    viewer = HTTPBasicAuth("homeassistant", "viewer-password-1")
    # Home Assistant's MJPEG IP Camera checks each URL like this, then streams the first.
    for url in (base + STREAM, base + "/api/v1/snapshot.jpg?width=1280&height=720"):
        checked = requests.get(url, auth=viewer, stream=True, timeout=10)
        assert checked.status_code == 200
        checked.close()
    parts = Parts(requests.get(base + STREAM, auth=viewer, stream=True, timeout=10))
    parts.next()
    parts.close()
    # OctoPrint 1.11 fetches the snapshot itself with "Basic" authentication, within 5 s.
    snapshot = requests.get(base + "/api/v1/snapshot.jpg", auth=viewer, timeout=5)
    assert snapshot.status_code == 200 and snapshot.headers["Content-Type"] == "image/jpeg"
    with_credentials = base.replace("http://", "http://homeassistant:viewer-password-1@")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg); its README command was "
                    "not checked")
    frame = tmp_path / "frame.jpg"
    done = subprocess.run(["ffmpeg", "-v", "error", "-i", with_credentials + STREAM,
                           "-frames:v", "1", "-y", str(frame)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Image.open(frame).size == (640, 480)


# -- in-process ----------------------------------------------------------------------


def test_clients_leaving_stop_the_producer(live):
    base, services = live
    hub, camera = services.streams, services.backend
    readers = [Reader(base) for _ in range(2)]
    wait_parts(readers, 3)
    (producer,) = hub._producers.values()
    assert producer.is_alive()
    for reader in readers:
        reader.stop()
    wait_for(lambda: hub.stats()["clients"] == 0, 6, "the hub saw the clients go")
    producer.join(2)
    assert not producer.is_alive() and hub.stats()["producers"] == []
    frames = camera.frames
    time.sleep(0.3)
    assert camera.frames == frames
    # The next client starts a new producer.
    parts = open_stream(base)
    parts.next()
    assert hub.stats() == {"clients": 1, "max_clients": 4, "producers": ["640x480"]}
    parts.close()


def test_each_client_gets_its_own_rate_from_one_producer(services):
    hub = services.streams
    fast, slow = hub.subscribe(fps=10), hub.subscribe(fps=4)
    counts = {}

    def read(name, subscription):
        parts = subscription.parts()
        deadline = time.monotonic() + 2.0
        counts[name] = 0
        while time.monotonic() < deadline:
            next(parts)
            counts[name] += 1
        parts.close()

    threads = [threading.Thread(target=read, args=("fast", fast)),
               threading.Thread(target=read, args=("slow", slow))]
    frames = services.backend.frames
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    captured = services.backend.frames - frames
    assert 17 <= counts["fast"] <= 23, counts
    assert 7 <= counts["slow"] <= 10, counts
    assert captured <= 23  # the slow client rode on the fast one's frames
    assert hub.stats()["clients"] == 0


def test_fps_over_the_maximum_is_capped_and_the_default_is_stream_fps(make_app, config):
    config["stream"] = {"fps": 5.0, "max_fps": 12.0}
    hub = make_app(config).extensions["picam"].streams
    capped, default = hub.subscribe(fps=500), hub.subscribe()
    assert (capped.fps, default.fps) == (12.0, 5.0)
    capped.close()
    default.close()
    default.close()  # idempotent
    assert hub.stats()["clients"] == 0


@pytest.mark.parametrize("query, field", [
    ("fps=0", "fps"), ("fps=-1", "fps"), ("fps=abc", "fps"), ("fps=nan", "fps"),
    ("fps=inf", "fps"), ("fps=", "fps"), ("size=1x1", "size"), ("size=640x481", "size"),
    ("size=big", "size"), ("size=", "size"),
])
def test_bad_stream_queries_are_422_naming_the_field(client, admin_headers, services, query,
                                                     field):
    response = client.get(f"{STREAM}?{query}", headers=admin_headers)
    assert response.status_code == 422
    assert response.content_type == PROBLEM
    assert list(response.json["errors"]) == [field]
    assert services.streams.stats()["clients"] == 0


def test_the_aliases_can_be_opened_to_clients_without_credentials(make_app, config):
    # Only with the hosts named (test_hosts.py has the DNS rebinding side).
    config["stream"] = {"aliases_require_auth": False}
    config["server"] = {"allowed_hosts": ["localhost", "picam.example"]}
    client = make_app(config).test_client()
    snapshot = client.get("/?action=snapshot")
    assert snapshot.status_code == 200 and snapshot.content_type == "image/jpeg"
    stream = client.get("/?action=stream", buffered=False)
    assert stream.status_code == 200
    assert next(iter(stream.response)).startswith(b"--frame\r\nContent-Type: image/jpeg\r\n")
    stream.close()
    assert client.get(STREAM).status_code == 401  # the API itself keeps its auth


def test_a_failing_camera_ends_the_streams_and_new_clients_get_503(make_app, config):
    config["camera"]["capture_timeout_s"] = 0.3
    services = make_app(config).extensions["picam"]
    hub, camera = services.streams, services.backend
    subscription = hub.subscribe()
    parts = subscription.parts()
    next(parts)
    camera.fail_rate = 1.0
    with pytest.raises(StopIteration):  # the stream ends rather than freezing
        for _ in range(100):
            next(parts)
    assert hub.stats() == {"clients": 0, "max_clients": 4, "producers": []}
    with pytest.raises(CaptureFailed) as failed:
        hub.subscribe()
    assert failed.value.headers == {"Retry-After": "3"}
    camera.fail_rate = 0.0
    hub.subscribe().close()


def test_the_cap_counts_subscriptions(make_app, config):
    config["stream"] = {"max_clients": 1}
    hub = make_app(config).extensions["picam"].streams
    first = hub.subscribe()
    with pytest.raises(TooManyStreams) as refused:
        hub.subscribe(size="1280x720")
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "3"}
    first.close()
    hub.subscribe(size="1280x720").close()


def test_shutdown_ends_the_streams_and_joins_the_producers(services):
    subscription = services.streams.subscribe()
    parts = subscription.parts()
    next(parts)
    (producer,) = services.streams._producers.values()
    services.shutdown()
    assert not producer.is_alive()
    assert list(parts) == []
    assert services.streams.stats()["clients"] == 0


def test_stream_frames_are_counted_but_skip_the_capture_hooks(services):
    entered = []
    services.owner.hooks.append(lambda: _Recorder(entered))
    settings = CaptureSettings(width=64, height=48)
    captures = services.owner.captures
    services.owner.stream_frame(settings, 10.0)
    assert entered == [] and services.owner.captures == captures + 1
    services.owner.capture(settings)
    assert entered == ["capture"]


class _Recorder:
    def __init__(self, log):
        self.log = log

    def __enter__(self):
        self.log.append("capture")

    def __exit__(self, *exc):
        return False


def test_the_stream_is_documented_in_openapi(client):
    operation = client.get("/openapi.json").json["paths"][STREAM]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["multipart/x-mixed-replace"]
    assert {"401", "422", "503"} <= set(operation["responses"])
    assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == {"fps", "size"}


@pytest.mark.parametrize("threads, streams, ok", [(8, 4, True), (7, 4, False), (16, 12, True),
                                                  (16, 13, False)])
def test_server_threads_must_leave_room_beside_the_streams(threads, streams, ok):
    mapping = {"server": {"threads": threads}, "stream": {"max_clients": streams},
               "events": {"max_clients": 0}}
    if ok:
        from_mapping(mapping)
        return
    with pytest.raises(ConfigError) as error:
        from_mapping(mapping)
    message = error.value.detail
    assert "\n" not in message
    assert message.startswith("server.threads:") and "stream.max_clients" in message
