"""Benchmarks for picam-api: one table of medians, each against a baseline from the same run.

Run through ``scripts/bench`` (which makes the venv). Every figure is measured on
this machine in this run, so ratios compare like with like; absolute numbers
depend on the machine. The table is also written as JSON (``--json``).
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import platform
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from picam_api.camera.base import CaptureSettings
from picam_api.camera.mock import MockCamera
from picam_api.camera.owner import CameraOwner
from picam_api.config import from_mapping
from picam_api.streaming import multipart_part

BIN = Path(sys.executable).parent
PASSWORD = "bench-password-1"
ROWS = []


def record(metric: str, value: float, unit: str, baseline: float | None = None,
           target: str = "", met: bool | None = None, note: str = "") -> None:
    ratio = value / baseline if baseline else None
    ROWS.append({"metric": metric, "value": value, "unit": unit, "baseline": baseline,
                 "ratio": ratio, "target": target, "met": met, "note": note})


def median_time(fn, runs: int) -> float:
    fn()  # warm-up: first calls pay imports, caches, connection set-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class Server:
    """``picam-api serve`` on a free port with its own data dir."""

    def __init__(self, data_dir: Path, threads: int = 12, extra_toml: str = ""):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = data_dir.parent / f"{data_dir.name}.toml"
        self.config.write_text(
            f'[server]\nport = {self.port}\nthreads = {threads}\n'
            f'[storage]\ndata_dir = "{data_dir}"\nreserve_mb = 0\n'
            f'[camera]\nbackend = "mock"\n[log]\nlevel = "WARNING"\n{extra_toml}')
        self.proc = None
        self.startup_s = None

    def __enter__(self):
        env = {**os.environ, "PICAM_ADMIN_PASSWORD": PASSWORD}
        started = time.perf_counter()
        self.proc = subprocess.Popen([str(BIN / "picam-api"), "serve", "--config", str(self.config)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                if requests.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up yet
                if self.proc.poll() is not None or time.perf_counter() - started > 60:
                    raise SystemExit("bench: the server did not start")
                time.sleep(0.01)
        self.startup_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)

    def pids(self) -> list[int]:
        """The server and any children it has (none: it is one process)."""
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        return pids

    def rss_bytes(self) -> int:
        """Resident memory of the server."""
        total = 0
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server so far."""
        ticks = 0
        for pid in self.pids():
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")


class Client:
    """A keep-alive HTTP client with as little overhead of its own as possible.

    ``requests`` reads bodies in 10 KiB chunks and would add its own cost to
    every figure; http.client reads a whole body in one call.
    """

    def __init__(self, server: Server, headers: dict | None = None):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port)
        self.headers = headers or {}

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes]:
        self.conn.request("GET", path, headers={**self.headers, **(headers or {})})
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def basic_header() -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}


def bench_snapshot(tmp: Path, runs: int) -> None:
    camera = MockCamera(from_mapping({})["camera"])
    camera.open()
    settings = CaptureSettings(width=1920, height=1080, quality=90)
    in_process = median_time(lambda: camera.capture(settings, 10.0), runs)
    with Server(tmp / "snapshot") as server:
        client = Client(server, basic_header())

        def fetch():
            status, body = client.get("/api/v1/snapshot.jpg?width=1920&height=1080&quality=90")
            assert status == 200 and body[:2] == b"\xff\xd8"

        over_http = median_time(fetch, runs)
        client.close()
    ratio = over_http / in_process
    record("snapshot.jpg 1920x1080 over HTTP", over_http * 1000, "ms", in_process * 1000,
           "API adds <10%", ratio < 1.10, "baseline: the mock backend's capture+encode in-process")


def bench_auth(tmp: Path, runs: int) -> None:
    with Server(tmp / "auth") as server:
        token = requests.post(server.url + "/api/v1/tokens", headers=basic_header(),
                              json={}).json()["token"]
        client = Client(server)
        health = median_time(lambda: client.get("/api/v1/health"), runs)
        bearer = median_time(lambda: client.get("/api/v1/info", {"Authorization": f"Bearer {token}"}),
                             runs)
        basic = median_time(lambda: client.get("/api/v1/info", basic_header()), runs)
        client.close()
        record("GET /info, Basic (cached)", 1 / basic, "req/s", 1 / bearer,
               "within 20% of Bearer", basic / bearer < 1.20, "baseline: the same with a bearer token")
        record("GET /info, Bearer", 1 / bearer, "req/s", 1 / health, "",
               None, "baseline: unauthenticated GET /health")
        record("server start-up to first 200", server.startup_s * 1000, "ms", note="cold start, mock camera")
        record("idle server RSS", server.rss_bytes() / 2**20, "MiB", note="the one process")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"bench: no {field} for process {pid}")


def bench_login_burst(tmp: Path, burst: int = 32) -> None:
    """Peak RSS of the serving process while ``burst`` wrong logins arrive at once."""
    with Server(tmp / "burst", extra_toml="[auth]\nmax_failures = 1000000\n") as server:
        requests.get(server.url + "/api/v1/info", auth=("admin", "wrong"), timeout=30)  # warm
        pids = server.pids()
        idle = {pid: _status_kib(pid, "VmRSS") for pid in pids}
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from now
        start = threading.Barrier(burst)

        def attempt(n: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            credentials = base64.b64encode(f"user{n}:wrong-{n}".encode()).decode()
            start.wait()
            conn.request("GET", "/api/v1/info", headers={"Authorization": f"Basic {credentials}"})
            conn.getresponse().read()
            conn.close()

        threads = [threading.Thread(target=attempt, args=(n,)) for n in range(burst)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        pid = max(pids, key=lambda p: _status_kib(p, "VmHWM") - idle[p])
        peak, base = _status_kib(pid, "VmHWM") / 1024, idle[pid] / 1024
    record(f"peak RSS, {burst} concurrent wrong logins", peak, "MiB", base,
           "< idle + 100 MiB", peak < base + 100, "baseline: the same process idle")


def fill_index(data_dir: Path, count: int) -> None:
    """Index ``count`` photo rows directly: listing reads only the index."""
    with Server(data_dir):  # creates and migrates the database
        pass
    db = sqlite3.connect(data_dir / "picam.db")
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(count):
        taken = start + dt.timedelta(seconds=i)
        photo_id = f"{taken:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}"
        rows.append((photo_id, taken.isoformat(), f"photos/x/{photo_id}.jpg", 640, 480, "jpeg",
                     1000, "0" * 32, "{}", "{}", "api", None, None, None))
    with db:
        db.executemany("INSERT INTO photos VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.close()


def bench_listing(tmp: Path, runs: int) -> None:
    medians = {}
    for count in (1_000, 100_000):
        data_dir = tmp / f"list-{count}"
        fill_index(data_dir, count)
        with Server(data_dir) as server:
            client = Client(server, basic_header())
            status, body = client.get("/api/v1/photos?limit=50")
            assert status == 200 and len(json.loads(body)["items"]) == 50
            medians[count] = median_time(lambda: client.get("/api/v1/photos?limit=50"), runs)
            client.close()
    ratio = medians[100_000] / medians[1_000]
    record("GET /photos?limit=50, 100k photos", medians[100_000] * 1000, "ms", medians[1_000] * 1000,
           "ratio <1.5", ratio < 1.5, "baseline: the same with 1k photos")


STREAM_FPS = 15.0
STREAM_CLIENTS = (1, 4, 16)
STREAM_WINDOW_S = 4.0


class StreamReader(threading.Thread):
    """An MJPEG client that counts the parts it reads, at as little cost as it can.

    It asks with HTTP/1.0, as mjpg-streamer's clients do, so the body comes
    unchunked and the parts can be read straight off the socket.
    """

    def __init__(self, server: Server):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        auth = basic_header()["Authorization"]
        self.sock.sendall(f"GET /api/v1/stream.mjpg HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n"
                          .encode())
        self.body = self.sock.makefile("rb")
        status = self.body.readline()
        assert b" 200 " in status, status
        while self.body.readline() != b"\r\n":  # the response headers
            pass
        self.parts = 0
        self.bytes = 0  # JPEG bytes read
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        body = self.body
        try:
            while not self.stopping.is_set():
                body.readline()  # --frame
                body.readline()  # Content-Type
                length = int(body.readline().split(b":")[1])  # Content-Length
                body.readline()
                body.read(length + 2)  # the JPEG and its CRLF
                self.parts += 1
                self.bytes += length
        except (OSError, ValueError, IndexError):
            pass  # closed by stop()

    def stop(self) -> None:
        self.stopping.set()
        self.sock.shutdown(socket.SHUT_RDWR)
        self.join(5)
        self.body.close()
        self.sock.close()


def naive_stream(owner: CameraOwner, settings: CaptureSettings, fps: float):
    """The per-client design: every client's generator captures its own frames."""
    period, due = 1 / fps, time.monotonic()
    while True:
        yield multipart_part(owner.capture(settings).data)
        due += period
        time.sleep(max(0.0, due - time.monotonic()))


def measure(counters: list, cpu_seconds) -> tuple[float, float]:
    """(CPU seconds per second, the slowest client's fps) over a window, after a warm-up."""
    time.sleep(1.0)
    cpu, counts, started = cpu_seconds(), [c() for c in counters], time.monotonic()
    time.sleep(STREAM_WINDOW_S)
    elapsed = time.monotonic() - started
    fps = min((c() - n) / elapsed for c, n in zip(counters, counts))
    return (cpu_seconds() - cpu) / elapsed, fps


def shared_stream_figures(tmp: Path) -> dict[int, tuple[float, float]]:
    """The server's CPU and the clients' fps for each client count."""
    most = max(STREAM_CLIENTS)
    extra = (f"[stream]\nfps = {STREAM_FPS}\nmax_clients = {most}\nsizes = [[640, 480]]\n")
    figures = {}
    with Server(tmp / "stream", threads=most + 8, extra_toml=extra) as server:
        for n in STREAM_CLIENTS:
            readers = [StreamReader(server) for _ in range(n)]
            figures[n] = measure([lambda r=r: r.parts for r in readers], server.cpu_seconds)
            for reader in readers:
                reader.stop()
            # The server frees a slot at its next write to the closed socket.
            while requests.get(server.url + "/api/v1/info", headers=basic_header(),
                               timeout=10).json()["stream"]["clients"]:
                time.sleep(0.05)
    return figures


def naive_figures() -> dict[int, tuple[float, float]]:
    """The same with a capture per client, in this process (and no sockets at all)."""
    owner = CameraOwner(MockCamera(from_mapping({})["camera"]), timeout=10.0, retry_after=5)
    settings = CaptureSettings(width=640, height=480, quality=from_mapping({})["stream"]["quality"])
    figures = {}
    for n in STREAM_CLIENTS:
        stop, counts = threading.Event(), [0] * n

        def client(i):
            for _ in naive_stream(owner, settings, STREAM_FPS):
                counts[i] += 1
                if stop.is_set():
                    return

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for thread in threads:
            thread.start()
        figures[n] = measure([lambda i=i: counts[i] for i in range(n)], time.process_time)
        stop.set()
        for thread in threads:
            thread.join(5)
    owner.close()
    return figures


def bench_stream(tmp: Path, runs: int) -> None:
    """One capture fanned out to 1, 4 and 16 MJPEG clients, against a capture per client.

    ``runs`` does not apply: every figure is a rate over the same window.
    """
    shared, naive = shared_stream_figures(tmp), naive_figures()
    goal = 0.95 * STREAM_FPS
    most = max(STREAM_CLIENTS)
    for n in STREAM_CLIENTS:
        cpu, fps = shared[n]
        record(f"stream 640x480@15, {n} client(s): server CPU", cpu, "CPU s/s", shared[1][0],
               "<1.5x" if n == most else "", cpu / shared[1][0] < 1.5 if n == most else None,
               "baseline: the same server with 1 client")
        record(f"stream 640x480@15, {n} client(s): fps per client", fps, "fps", None,
               f">={goal:g}", fps >= goal, "the slowest client")
    for n in STREAM_CLIENTS:
        cpu, fps = naive[n]
        record(f"naive capture per client, {n} client(s): CPU", cpu, "CPU s/s", shared[n][0],
               "", None, "baseline: the shared stream at the same count")
        record(f"naive capture per client, {n} client(s): fps per client", fps, "fps",
               note="the slowest client")


H264_SIZE = (1280, 720)
H264_FPS = 30.0
H264_PEERS = (1, 4, 8)


class WhepPeers(threading.Thread):
    """N aiortc peers receiving the server's WebRTC stream; they count frames, never decode.

    A load generator, not a viewer: decoding 8 streams of 720p here would take the
    CPU the server is being measured on, so aiortc's decoder thread is replaced by
    one that counts the frames and bytes each peer was sent.
    """

    def __init__(self, server: Server, count: int):
        super().__init__(daemon=True)
        self.server, self.count = server, count
        self.frames, self.bytes = [0] * count, [0] * count
        self.locations: list[str] = []
        self.ready, self.stopping = threading.Event(), None
        self.loop = None
        self.start()
        assert self.ready.wait(60), "the peers did not connect"

    def run(self) -> None:
        import asyncio
        asyncio.run(self._main())

    async def _main(self) -> None:
        import asyncio
        import aiortc
        import aiortc.rtcrtpreceiver as receiver

        counts = self

        def counting_worker(loop, input_q, output_q, decode_error):
            peer = counting_worker.peers.pop(0)
            while (task := input_q.get()) is not None:
                counts.frames[peer] += 1
                counts.bytes[peer] += len(task[1].data)

        counting_worker.peers = list(range(self.count))
        receiver.decoder_worker = counting_worker
        self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
        pcs = []
        for _ in range(self.count):
            pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            response = await asyncio.to_thread(
                requests.post, self.server.url + "/api/v1/stream/whep", timeout=30,
                data=pc.localDescription.sdp,
                headers={**basic_header(), "Content-Type": "application/sdp"})
            assert response.status_code == 201, response.text
            self.locations.append(response.headers["Location"])
            await pc.setRemoteDescription(aiortc.RTCSessionDescription(response.text, "answer"))
            pcs.append(pc)
        while min(self.frames) == 0:
            await asyncio.sleep(0.05)
        self.ready.set()
        await self.stopping.wait()
        for pc in pcs:
            await pc.close()

    def stop(self) -> None:
        for location in self.locations:
            requests.delete(self.server.url + location, timeout=10,
                            headers={**basic_header(), "Content-Type": "application/json"})
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.join(10)


def per_peer_encode_figures() -> dict[int, tuple[float, float]]:
    """The baseline: an encode per peer (what a server that hands aiortc raw frames
    costs), as N mock encoders in this process with no network at all."""
    from picam_api.camera.base import VideoSettings
    from picam_api.camera.outputs import Output

    class Counting(Output):
        frames = 0

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            self.frames += 1

    camera = MockCamera(from_mapping({})["camera"])
    settings = VideoSettings(width=H264_SIZE[0], height=H264_SIZE[1], fps=H264_FPS,
                             bitrate=2_000_000)
    figures = {}
    for n in H264_PEERS:
        outputs = [Counting() for _ in range(n)]
        encoders = [camera.start_encoder(settings, output) for output in outputs]
        figures[n] = measure([lambda o=o: o.frames for o in outputs], time.process_time)
        for encoder in encoders:
            camera.stop_encoder(encoder)
    return figures


def h264_latencies(server: Server, seconds: float) -> list[float]:
    """Glass to glass: milliseconds from the mock drawing each frame (the clock it
    stamps into the picture, mock_video.stamp) to an aiortc peer holding it decoded,
    over WHEP on loopback; the first second (the peer settling) is left out."""
    import asyncio

    import aiortc
    from picam_api.camera.mock_video import STAMP_BITS, read_stamp

    async def watch() -> list[float]:
        pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        track = asyncio.get_running_loop().create_future()
        pc.on("track", track.set_result)
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        response = await asyncio.to_thread(
            requests.post, server.url + "/api/v1/stream/whep", timeout=30,
            data=pc.localDescription.sdp,
            headers={**basic_header(), "Content-Type": "application/sdp"})
        assert response.status_code == 201, response.text
        latencies, started = [], None
        try:
            await pc.setRemoteDescription(aiortc.RTCSessionDescription(response.text, "answer"))
            video = await asyncio.wait_for(track, 30)
            while started is None or time.monotonic() - started < 1.0 + seconds:
                frame = await asyncio.wait_for(video.recv(), 10)
                now_ms = int(time.time() * 1000)
                started = started or time.monotonic()
                if time.monotonic() - started < 1.0:
                    continue
                _, stamped = read_stamp(frame.to_ndarray(format="gray"))
                late = (now_ms - stamped) % 2**STAMP_BITS
                latencies.append(late - 2**STAMP_BITS if late >= 2**(STAMP_BITS - 1) else late)
        finally:
            await pc.close()
            await asyncio.to_thread(requests.delete, server.url + response.headers["Location"],
                                    timeout=10, headers={**basic_header(),
                                                         "Content-Type": "application/json"})
        return latencies

    return asyncio.run(watch())


def bench_h264(tmp: Path, runs: int) -> None:
    """Live H.264 to 1, 4 and 8 WebRTC peers from one encoder, against an encode per peer;
    and its bytes per second against MJPEG's of the same picture and size.

    ``runs`` does not apply: every figure is a rate over the same window.
    """
    most = max(H264_PEERS)
    size = f"{H264_SIZE[0]}x{H264_SIZE[1]}"
    extra = (f"[stream]\nsizes = [[{H264_SIZE[0]}, {H264_SIZE[1]}]]\nfps = {H264_FPS}\n"
             f"[stream.h264]\nfps = {H264_FPS}\nmax_peers = {most}\n")
    shared, wire = {}, {}
    with Server(tmp / "h264", extra_toml=extra) as server:
        # Before WhepPeers, which swaps aiortc's decoder for a counter in this process.
        latencies = h264_latencies(server, STREAM_WINDOW_S)
        for n in H264_PEERS:
            peers = WhepPeers(server, n)
            shared[n] = measure([lambda i=i: peers.frames[i] for i in range(n)],
                                server.cpu_seconds)
            if n == 1:
                bytes_before, started = peers.bytes[0], time.monotonic()
                time.sleep(STREAM_WINDOW_S)
                wire["h264"] = (peers.bytes[0] - bytes_before) / (time.monotonic() - started)
            peers.stop()
        reader = StreamReader(server)
        time.sleep(1.0)
        bytes_before, started = reader.bytes, time.monotonic()
        time.sleep(STREAM_WINDOW_S)
        wire["mjpeg"] = (reader.bytes - bytes_before) / (time.monotonic() - started)
        reader.stop()
    naive = per_peer_encode_figures()
    goal = 0.9 * H264_FPS
    for n in H264_PEERS:
        cpu, fps = shared[n]
        record(f"WebRTC {size}@{H264_FPS:g}, {n} peer(s): server CPU", cpu, "CPU s/s",
               shared[1][0], "<1.5x" if n == most else "",
               cpu / shared[1][0] < 1.5 if n == most else None,
               "baseline: the same server with 1 peer (pass-through: one encode)")
        record(f"WebRTC {size}@{H264_FPS:g}, {n} peer(s): fps per peer", fps, "fps", None,
               f">={goal:g}", fps >= goal, "the slowest peer")
    for n in H264_PEERS:
        cpu, fps = naive[n]
        record(f"encode per peer, {n} peer(s): CPU", cpu, "CPU s/s", shared[n][0], "", None,
               f"baseline: pass-through at the same count; {fps:.1f} fps reached, "
               "no network counted")
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    record(f"WebRTC {size}@{H264_FPS:g} glass-to-glass p50", p50, "ms", None, "<150", p50 < 150,
           f"mock's stamped clock to a decoded aiortc frame, loopback; {len(latencies)} frames")
    record(f"WebRTC {size}@{H264_FPS:g} glass-to-glass p99", p99, "ms", None, "", None,
           "the same frames")
    record(f"wire bytes/s {size}@{H264_FPS:g}: H.264", wire["h264"], "B/s", wire["mjpeg"],
           "<0.2x", wire["h264"] / wire["mjpeg"] < 0.2,
           f"baseline: MJPEG of the same scene and size (stream.quality); "
           f"{wire['h264'] * 8 / 1e6:.2f} vs {wire['mjpeg'] * 8 / 1e6:.2f} Mbit/s")


TIMELAPSE_FRAMES = 300
TIMELAPSE_INTERVAL = 0.1
TIMELAPSE_SIZE = {"width": 640, "height": 480}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def snapshot_load(capture, stop: threading.Event) -> threading.Thread:
    """Snapshots at 1280x720 back to back, contending for the camera like real clients."""
    def load():
        while not stop.wait(0.02):
            capture.snapshot({"width": 1280, "height": 720})
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    return thread


def timed_app(data_dir: Path, timelapse: dict):
    """An app on the mock whose time-lapse captures (at TIMELAPSE_SIZE) note when the
    camera was asked; returns its services and that list of wall times."""
    from picam_api.app import create_app

    os.environ.setdefault("PICAM_ADMIN_PASSWORD", PASSWORD)
    app = create_app({"storage": {"data_dir": str(data_dir), "reserve_mb": 0},
                      "camera": {"backend": "mock"}, "timelapse": timelapse,
                      "log": {"level": "WARNING"}})
    services = app.extensions["picam"]
    asked: list[float] = []
    backend_capture = services.backend.capture

    def timed_capture(settings, timeout):
        if settings.width == TIMELAPSE_SIZE["width"]:
            asked.append(time.time())
        return backend_capture(settings, timeout)

    services.backend.capture = timed_capture
    return services, asked


def bench_timelapse(tmp: Path, runs: int) -> None:
    """Schedule accuracy of 300 frames at 100 ms under snapshot load, against capture(); sleep().

    Lateness is when the camera was asked for the frame, against the frame's slot
    (start + k * interval); drift is the last frame's lateness. ``runs`` does not apply.
    """
    services, asked = timed_app(tmp / "timelapse", {"min_interval_s": 0.05})
    stop = threading.Event()
    load = snapshot_load(services.capture, stop)
    job = services.timelapses.create({**TIMELAPSE_SIZE, "interval_s": TIMELAPSE_INTERVAL,
                                      "frames": TIMELAPSE_FRAMES})
    while services.timelapses.get(job.id).state != "completed":
        time.sleep(0.2)
    done = services.timelapses.get(job.id)
    slots = [slot for job_id, slot, _ in services.timelapses.scheduler.lateness if job_id == job.id]
    ours = [t - done.schedule.time_of(slot) for t, slot in zip(asked, slots)]

    # The naive loop every peer example uses, on the same camera, under the same load.
    settings = services.capture.resolve(TIMELAPSE_SIZE)
    starts = []
    for _ in range(TIMELAPSE_FRAMES):
        starts.append(time.monotonic())
        services.owner.capture(settings)
        time.sleep(TIMELAPSE_INTERVAL)
    naive = [t - (starts[0] + k * TIMELAPSE_INTERVAL) for k, t in enumerate(starts)]
    stop.set()
    load.join()
    services.shutdown()

    ms = 1000
    label = f"time-lapse {TIMELAPSE_FRAMES} frames @ {TIMELAPSE_INTERVAL * ms:g} ms, snapshot load"
    note = f"baseline: capture(); sleep() loop; {done.frames_missed} missed"
    record(f"{label}: lateness p50", percentile(ours, 50) * ms, "ms",
           percentile(naive, 50) * ms, "", None, note)
    record(f"{label}: lateness p99", percentile(ours, 99) * ms, "ms",
           percentile(naive, 99) * ms, "<20 ms", percentile(ours, 99) * ms < 20, note)
    record(f"{label}: lateness max", max(ours) * ms, "ms", max(naive) * ms, "", None, note)
    record(f"{label}: end-of-run drift", ours[-1] * ms, "ms", naive[-1] * ms,
           "no cumulative drift", abs(ours[-1]) < TIMELAPSE_INTERVAL / 2, note)


SLOWLORIS_CONNECTIONS = 64
SLOWLORIS_ADDRESSES = 8  # attackers on 127.0.0.2-9, under the per-client connection cap
SLOWLORIS_REQUESTS = 100
SLOWLORIS_TIMEOUT_S = 5.0  # a request that gets no answer within this counts as this long
SLOWLORIS_BUDGET_S = 30.0  # the most one series may take (a starved server answers nothing)


class Slowloris(threading.Thread):
    """Holds connections open by sending a request's headers one byte at a time.

    A connection the server closes is opened again at once, so the attack holds
    ``count`` connections (or tries to) for as long as it runs.
    """

    def __init__(self, port: int, count: int):
        super().__init__(daemon=True)
        self.port = port
        self.socks = [self._open(i) for i in range(count)]
        self.stopping = threading.Event()
        self.start()

    def _open(self, i: int) -> socket.socket | None:
        source = f"127.0.0.{2 + i % SLOWLORIS_ADDRESSES}"
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=1,
                                            source_address=(source, 0))
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n")
            return sock
        except OSError:
            return None

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            for i, sock in enumerate(self.socks):
                try:
                    if sock is None:
                        raise OSError
                    sock.send(b"X")  # one more byte of an endless header
                except OSError:
                    if sock is not None:
                        sock.close()
                    self.socks[i] = self._open(i)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        for sock in self.socks:
            if sock is not None:
                sock.close()


def health_latencies(port: int, count: int) -> list[float]:
    """Seconds to an answer for ``count`` GET /health, each on a new connection
    (fewer if they take longer than ``SLOWLORIS_BUDGET_S`` in all)."""
    times = []
    deadline = time.monotonic() + SLOWLORIS_BUDGET_S
    while len(times) < count and time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SLOWLORIS_TIMEOUT_S)
            conn.request("GET", "/api/v1/health")
            conn.getresponse().read()
            conn.close()
            times.append(time.perf_counter() - started)
        except OSError:
            times.append(SLOWLORIS_TIMEOUT_S)
        time.sleep(0.02)
    return times


def bench_slowloris(tmp: Path, runs: int) -> None:
    """A client's GET /health while 64 connections trickle headers, against no attack.

    ``runs`` does not apply: each figure is over SLOWLORIS_REQUESTS requests.
    """
    with Server(tmp / "slowloris") as server:
        calm = health_latencies(server.port, SLOWLORIS_REQUESTS)
        attack = Slowloris(server.port, SLOWLORIS_CONNECTIONS)
        time.sleep(1.0)  # every attacking connection open and trickling
        attacked = health_latencies(server.port, SLOWLORIS_REQUESTS)
        attack.stop()
    ms = 1000
    label = f"GET /health, {SLOWLORIS_CONNECTIONS} slowloris connections"
    note = (f"baseline: the same client, no attack; {len(attacked)} requests, one "
            f"unanswered in {SLOWLORIS_TIMEOUT_S:g} s counts as {SLOWLORIS_TIMEOUT_S:g} s")
    record(f"{label}: p50", percentile(attacked, 50) * ms, "ms", percentile(calm, 50) * ms,
           "", None, note)
    record(f"{label}: p99", percentile(attacked, 99) * ms, "ms", percentile(calm, 99) * ms,
           "<1000 ms", percentile(attacked, 99) < 1.0, note)


RENDER_FRAMES = 300
RENDER_SIZE = (1920, 1080)


def mock_jpegs(directory: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """``count`` frames of the mock's pattern as 000001.jpg..., the layout ffmpeg's %06d reads."""
    camera = MockCamera(from_mapping({})["camera"])
    settings = CaptureSettings(width=size[0], height=size[1], quality=90)
    if directory.exists():  # made by an earlier bench of this run
        return sorted(directory.glob("*.jpg"))
    directory.mkdir(parents=True)
    paths = []
    start = dt.datetime.now(dt.timezone.utc)
    for n in range(1, count + 1):
        image = camera.render(settings, n, start + dt.timedelta(seconds=n))
        path = directory / f"{n:06d}.jpg"
        image.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def bench_render(tmp: Path, runs: int) -> None:
    """Frames/s of a 300-frame 1080p time-lapse to MP4: our renderer against the ffmpeg
    command line on the same files with the same codec settings, at the same priority."""
    from picam_api.video.render import FrameRef, RenderOptions, render

    config = from_mapping({})["video"]
    frames = mock_jpegs(tmp / "render-frames", RENDER_FRAMES, RENDER_SIZE)
    taken = dt.datetime.now(dt.timezone.utc)
    refs = [FrameRef(path, "jpeg", taken, n) for n, path in enumerate(frames, 1)]
    options = RenderOptions(fps=config["render_fps"], crf=config["crf"], preset=config["preset"],
                            max_px=config["max_render_px"])
    ours_out, theirs_out = tmp / "ours.mp4", tmp / "ffmpeg.mp4"

    def ours() -> float:
        cpu = time.process_time()  # every thread of this process: libx264's too
        render(lambda: refs, len(refs), ours_out, options, lambda *a: None, lambda: False)
        return time.process_time() - cpu

    command = ["ffmpeg", "-v", "error", "-y", "-framerate", f"{options.fps:g}",
               "-i", str(tmp / "render-frames" / "%06d.jpg"), "-c:v", "libx264",
               "-preset", options.preset, "-crf", str(options.crf), "-pix_fmt", "yuv420p",
               "-movflags", "+faststart", str(theirs_out)]

    def theirs() -> float:
        process = subprocess.Popen(command)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = status
        assert status == 0, "ffmpeg failed"
        return usage.ru_utime + usage.ru_stime

    count = max(3, runs // 10)
    (ours_s, ours_cpu), (theirs_s, theirs_cpu) = timed_and_cpu(ours, count), \
        timed_and_cpu(theirs, count)
    fps, baseline = RENDER_FRAMES / ours_s, RENDER_FRAMES / theirs_s
    note = f"baseline: ffmpeg CLI, libx264 {options.preset} crf {options.crf}, same files"
    record(f"render {RENDER_FRAMES} frames {RENDER_SIZE[0]}x{RENDER_SIZE[1]} to MP4", fps,
           "frames/s", baseline, ">=0.9x ffmpeg", fps / baseline >= 0.9, note)
    record("render CPU per frame", ours_cpu / RENDER_FRAMES * 1000, "CPU ms",
           theirs_cpu / RENDER_FRAMES * 1000, "", None, note)
    # The same settings should make about the same file: a render that is fast because it
    # encodes differently (all-intra, another profile) shows here.
    size, baseline_size = ours_out.stat().st_size / 1e6, theirs_out.stat().st_size / 1e6
    record("render output size", size, "MB", baseline_size, "within 10% of ffmpeg",
           abs(size / baseline_size - 1) <= 0.1, note)


def timed_and_cpu(fn, runs: int) -> tuple[float, float]:
    """Medians of wall seconds and of the CPU seconds ``fn`` returns, after a warm-up."""
    fn()
    walls, cpus = [], []
    for _ in range(runs):
        started = time.perf_counter()
        cpus.append(fn())
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), statistics.median(cpus)


LATENESS_FRAMES = 40


def bench_render_lateness(tmp: Path, runs: int) -> None:
    """Time-lapse lateness p99 at 1 s intervals while renders run back to back, against idle."""
    from picam_api.camera.base import Capture

    services, asked = timed_app(tmp / "lateness", {})
    settings = CaptureSettings(width=RENDER_SIZE[0], height=RENDER_SIZE[1])
    source = services.timelapses.create({"interval_s": 3600, "width": 640, "height": 480,
                                         "start_at": dt.datetime.now(dt.timezone.utc)
                                         + dt.timedelta(hours=1)})
    for n, path in enumerate(mock_jpegs(tmp / "render-frames", RENDER_FRAMES, RENDER_SIZE), 1):
        services.photos.add(Capture(path.read_bytes(), *RENDER_SIZE, "jpeg"), settings,
                            source="timelapse", timelapse_id=source.id, sequence=n)
    def lateness(rendering: bool) -> list[float]:
        asked.clear()
        stop = threading.Event()
        renders = 0

        def keep_rendering():
            nonlocal renders
            while not stop.is_set():
                video = services.videos.create({"timelapse": source.id})
                while services.videos.get(video.id).state in ("queued", "rendering"):
                    time.sleep(0.1)
                renders += 1
        feeder = threading.Thread(target=keep_rendering, daemon=True)
        if rendering:
            feeder.start()
            time.sleep(2)
        job = services.timelapses.create({**TIMELAPSE_SIZE, "interval_s": 1.0,
                                          "frames": LATENESS_FRAMES})
        while services.timelapses.get(job.id).state != "completed":
            time.sleep(0.2)
        stop.set()
        if rendering:
            feeder.join(60)
        done = services.timelapses.get(job.id)
        slots = [slot for job_id, slot, _ in services.timelapses.scheduler.lateness
                 if job_id == job.id]
        return [t - done.schedule.time_of(slot) for t, slot in zip(list(asked), slots)]

    idle = lateness(False)
    busy = lateness(True)
    services.shutdown()
    ms = 1000
    p99_idle, p99_busy = percentile(idle, 99) * ms, percentile(busy, 99) * ms
    record(f"time-lapse lateness p99 @ 1 s, {LATENESS_FRAMES} frames, renders running",
           p99_busy, "ms", p99_idle, "within 20 ms of idle", p99_busy - p99_idle <= 20,
           "baseline: the same with no render; renders of the 1080p frames back to back")


CLIP_SIZE, CLIP_FPS, CLIP_SECONDS = (1280, 720), 30, 10


def bench_clip(tmp: Path, runs: int) -> None:
    """Server CPU per second of a 1280x720@30 mock clip, against ffmpeg encoding the same
    raw frames with the same x264 settings; and peak RSS with 10 s of pre-roll."""
    video = (f"[video]\nwidth = {CLIP_SIZE[0]}\nheight = {CLIP_SIZE[1]}\nfps = {CLIP_FPS}\n")
    with Server(tmp / "clip", extra_toml=video) as server:
        auth = basic_header()
        cpu = server.cpu_seconds()
        started = time.monotonic()
        clip = requests.post(server.url + "/api/v1/videos", headers=auth, timeout=10,
                             json={"duration_s": CLIP_SECONDS}).json()
        while requests.get(server.url + clip["links"]["self"], headers=auth,
                           timeout=10).json()["state"] == "recording":
            time.sleep(0.2)
        ours = (server.cpu_seconds() - cpu) / (time.monotonic() - started)
        body = requests.get(server.url + clip["links"]["self"], headers=auth, timeout=10).json()
    theirs = ffmpeg_clip_cpu(tmp)
    record(f"clip {CLIP_SIZE[0]}x{CLIP_SIZE[1]}@{CLIP_FPS} (mock): server CPU", ours, "CPU s/s",
           theirs, "", None, f"baseline: ffmpeg encoding the same raw frames; ours also draws "
           f"them; {body['frames']} frames in {body['duration_s']:.1f} s")
    with Server(tmp / "idle") as server:
        idle = server.rss_bytes()
    with Server(tmp / "preroll", extra_toml=video + "preroll_s = 10.0\n") as server:
        time.sleep(13)
        preroll = requests.get(server.url + "/api/v1/info", headers=basic_header(),
                               timeout=10).json()["video"]["preroll"]
        peak = server.rss_bytes()
    record(f"server RSS with 10 s pre-roll at {CLIP_SIZE[0]}x{CLIP_SIZE[1]}@{CLIP_FPS}",
           peak / 2**20, "MiB", idle / 2**20, "", None,
           f"baseline: idle server without pre-roll; ring {preroll['frames']} frames, "
           f"{preroll['bytes'] / 2**20:.1f} MiB")


def ffmpeg_clip_cpu(tmp: Path) -> float:
    """CPU seconds per second of video of the ffmpeg command line on the mock's raw frames."""
    camera = MockCamera(from_mapping({})["camera"])
    settings = CaptureSettings(width=CLIP_SIZE[0], height=CLIP_SIZE[1])
    frames = CLIP_FPS * CLIP_SECONDS
    raw = [camera.render(settings, n, dt.datetime.now(dt.timezone.utc)).tobytes()
           for n in range(1, CLIP_FPS + 1)]  # a second of distinct frames, repeated
    process = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
         f"{CLIP_SIZE[0]}x{CLIP_SIZE[1]}", "-r", str(CLIP_FPS), "-i", "-", "-c:v", "libx264",
         "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline", "-b:v",
         str(from_mapping({})["video"]["bitrate"]), "-g", str(CLIP_FPS), "-bf", "0",
         "-pix_fmt", "yuv420p", str(tmp / "ffmpeg-clip.mp4")], stdin=subprocess.PIPE)
    for n in range(frames):
        process.stdin.write(raw[n % len(raw)])
    process.stdin.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = status
    return (usage.ru_utime + usage.ru_stime) / CLIP_SECONDS


class SseReader(threading.Thread):
    """An event-stream client: records (arrival time, event) for each event it reads."""

    def __init__(self, server: Server, types: str, source: str = "127.0.0.1"):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30,
                                             source_address=(source, 0))
        auth = basic_header()["Authorization"]
        self.sock.sendall(f"GET /api/v1/events?types={types} HTTP/1.0\r\nAuthorization: {auth}"
                          f"\r\n\r\n".encode())
        self.file = self.sock.makefile("rb")
        status = self.file.readline()
        assert b" 200 " in status, status
        while self.file.readline() != b"\r\n":
            pass
        self.seen: list[tuple[float, dict]] = []
        self.start()

    def run(self) -> None:
        try:
            while line := self.file.readline():
                if line.startswith(b"data: "):
                    self.seen.append((time.time(), json.loads(line[6:])))
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.join(5)
        self.file.close()
        self.sock.close()


def _event_time(event: dict) -> float:
    return dt.datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


def bench_sse_latency(tmp: Path, runs: int) -> None:
    """Photo committed (the event's own time, stamped after the commit) to its arrival at an SSE client."""
    with Server(tmp / "sse-latency") as server:
        reader = SseReader(server, "photo.created")
        client = Client(server, basic_header())
        health = median_time(lambda: client.get("/api/v1/health"), runs)
        for _ in range(runs):
            client.conn.request("POST", "/api/v1/photos", body=b'{"width": 320, "height": 240}',
                                headers={**basic_header(), "Content-Type": "application/json"})
            client.conn.getresponse().read()
        deadline = time.monotonic() + 10
        while len(reader.seen) < runs and time.monotonic() < deadline:
            time.sleep(0.01)
        reader.stop()
        client.close()
    latency = [(arrived - _event_time(event)) * 1000 for arrived, event in reader.seen]
    note = f"{len(latency)} events; baseline: GET /health round trip"
    record("photo committed -> SSE client: p50", percentile(latency, 50), "ms", health * 1000,
           note=note)
    record("photo committed -> SSE client: p99", percentile(latency, 99), "ms", health * 1000,
           note=note)


SSE_FANOUT = (1, 50)
SSE_RATE = 40.0  # events per second during the window
SSE_WINDOW_S = 4.0
SSE_REPEATS = 3  # windows of each size, taken in turn (1, 50, 1, 50, ...): a shared machine drifts
SSE_ADDRESSES = 4  # the 50 clients come from 127.0.0.2-5


def bench_sse_fanout(tmp: Path, runs: int) -> None:
    """Server CPU per event with 50 SSE clients against 1; the events are GPIO toggles.

    The server's CPU while idle, over a window as long, is in the note: what it
    spends without events would be counted as theirs."""
    most = max(SSE_FANOUT)
    extra = (f"[events]\nmax_clients = {most}\nkeepalive_s = 0.5\n[[gpio.devices]]\nname = \"led\"\npin = 17\n"
             f"kind = \"led\"\n")
    per_event = {n: [] for n in SSE_FANOUT}
    with Server(tmp / "sse-fanout", threads=most + 8, extra_toml=extra) as server:
        time.sleep(0.5)
        cpu = server.cpu_seconds()
        time.sleep(SSE_WINDOW_S)
        idle = server.cpu_seconds() - cpu
        client = Client(server, basic_header())
        body, headers = b'{"toggle": true}', {**basic_header(), "Content-Type": "application/json"}
        for n in SSE_FANOUT * SSE_REPEATS:
            # Viewers on a LAN come from addresses of their own: one address may hold
            # only server.max_connections_per_client (32) connections.
            readers = [SseReader(server, "gpio.changed", f"127.0.0.{2 + i % SSE_ADDRESSES}")
                       for i in range(n)]
            time.sleep(0.5)
            cpu, sent, started = server.cpu_seconds(), 0, time.monotonic()
            while (now := time.monotonic()) - started < SSE_WINDOW_S:
                client.conn.request("PATCH", "/api/v1/gpio/led", body=body, headers=headers)
                client.conn.getresponse().read()
                sent += 1
                time.sleep(max(0.0, started + sent / SSE_RATE - time.monotonic()))
            deadline = time.monotonic() + 10
            while min(len(r.seen) for r in readers) < sent and time.monotonic() < deadline:
                time.sleep(0.01)
            per_event[n].append((server.cpu_seconds() - cpu) / sent)
            assert all(len(r.seen) == sent for r in readers), "an SSE client missed events"
            for reader in readers:
                reader.stop()
            # The server frees a slot at its next write to the closed socket.
            while requests.get(server.url + "/api/v1/info", headers=basic_header(),
                               timeout=10).json()["events"]["sse"]["clients"]:
                time.sleep(0.05)
        client.close()
    one, many = (statistics.median(per_event[n]) for n in (1, most))
    record(f"SSE, {most} clients: server CPU per event", many * 1000, "CPU ms", one * 1000,
           "<2x", many / one < 2,
           f"baseline: 1 client; medians of {SSE_REPEATS} windows of {SSE_WINDOW_S:g} s each; "
           f"{SSE_RATE:g} GPIO toggles/s via PATCH, their cost included; idle server: "
           f"{idle * 1000:.0f} CPU ms per window")


def bench_webhooks(tmp: Path, runs: int) -> None:
    """Outbox deliveries per second to a local receiver, against plain POSTs to it."""
    import http.server

    count = max(runs * 4, 100)
    arrived: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            arrived.append(time.monotonic())
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = receiver.server_address[1]
    # The baseline: the same POSTs, one new connection each as the outbox makes them.
    started = time.monotonic()
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("POST", "/hook", body=b"{}", headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()
    plain = count / (time.monotonic() - started)
    arrived.clear()
    extra = ('[webhooks]\nallowed_networks = ["127.0.0.0/8"]\ndenied_networks = []\n'
             '[[gpio.devices]]\nname = "led"\npin = 17\nkind = "led"\n')
    with Server(tmp / "webhooks", extra_toml=extra) as server:
        requests.post(server.url + "/api/v1/webhooks", headers=basic_header(), timeout=10,
                      json={"url": f"http://127.0.0.1:{port}/hook", "types": ["gpio.changed"]})
        client = Client(server, basic_header())
        headers = {**basic_header(), "Content-Type": "application/json"}
        for _ in range(count):  # queued faster than they go out
            client.conn.request("PATCH", "/api/v1/gpio/led", body=b'{"toggle": true}',
                                headers=headers)
            client.conn.getresponse().read()
        deadline = time.monotonic() + 60
        while len(arrived) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        client.close()
    receiver.shutdown()
    rate = (len(arrived) - 1) / (arrived[-1] - arrived[0])
    record("webhook outbox deliveries to a local receiver", rate, "/s", plain, "", None,
           f"{len(arrived)} of {count}; baseline: plain POSTs from one client, a connection each")


def _mosquitto(tmp: Path) -> tuple[subprocess.Popen, int]:
    import getpass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("bench: mosquitto did not start")


def bench_mqtt_latency(tmp: Path, runs: int) -> None:
    """An edge on a mock pin to its gpio.changed message at an MQTT subscriber."""
    import paho.mqtt.client as mqtt

    from picam_api.app import create_app

    proc, port = _mosquitto(tmp)
    got: list[tuple[float, bytes]] = []
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    ready = threading.Event()
    subscriber.on_connect = lambda c, *a: (c.subscribe([("picam/bench/events/gpio.changed", 0),
                                                        ("bench/echo", 0)]), ready.set())
    subscriber.on_message = lambda c, u, m: got.append((time.perf_counter(), m.topic))
    subscriber.connect("127.0.0.1", port)
    subscriber.loop_start()
    ready.wait(10)
    time.sleep(0.3)
    # The baseline: a message from a client to the subscriber, through the same broker.
    echo = []
    for _ in range(runs):
        count = len(got)
        started = time.perf_counter()
        subscriber.publish("bench/echo", b"x")
        while len(got) == count:
            time.sleep(0.0002)
        echo.append((got[-1][0] - started) * 1000)
    os.environ.setdefault("PICAM_ADMIN_PASSWORD", PASSWORD)
    app = create_app({"storage": {"data_dir": str(tmp / "mqtt"), "reserve_mb": 0},
                      "camera": {"backend": "mock"}, "log": {"level": "WARNING"},
                      "gpio": {"pin_factory": "mock", "devices": [
                          {"name": "pir", "pin": 27, "kind": "input"}]},
                      "mqtt": {"host": "127.0.0.1", "port": port, "node_id": "bench", "qos": 0}})
    services = app.extensions["picam"]
    deadline = time.monotonic() + 10
    while not services.mqtt.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    pin = services.gpio.factory.pin("GPIO27")
    latency = []
    for n in range(runs):
        got.clear()
        started = time.perf_counter()
        (pin.drive_high if n % 2 == 0 else pin.drive_low)()
        deadline = time.monotonic() + 5
        while not any(t == "picam/bench/events/gpio.changed" for _, t in got):
            if time.monotonic() > deadline:
                raise SystemExit("bench: no MQTT message for a GPIO edge")
            time.sleep(0.0002)
        latency.append((next(a for a, t in got if t.endswith("gpio.changed")) - started) * 1000)
        time.sleep(0.01)
    services.shutdown()
    subscriber.loop_stop()
    proc.terminate()
    proc.wait(10)
    note = "mock pin, QoS 0; baseline: a client's message to the subscriber via the broker"
    record("GPIO edge -> MQTT subscriber: p50", percentile(latency, 50), "ms",
           percentile(echo, 50), note=note)
    record("GPIO edge -> MQTT subscriber: p99", percentile(latency, 99), "ms",
           percentile(echo, 99), note=note)


HEADER = ("metric", "value", "baseline", "ratio", "target", "met")
# docs/testing.md's Performance section holds the latest table between these (--doc).
TABLE_START, TABLE_END = "<!-- bench-table -->", "<!-- /bench-table -->"


def cells(row: dict) -> tuple[str, ...]:
    unit = row["unit"]
    return (row["metric"], f"{row['value']:.2f} {unit}",
            f"{row['baseline']:.2f} {unit}" if row["baseline"] else "-",
            f"{row['ratio']:.3f}" if row["ratio"] else "-", row["target"] or "-",
            {True: "yes", False: "NO", None: "-"}[row["met"]])


MOTION_SIZE = (320, 240)
MOTION_FPS = 5.0


def _python_motion_diff(frame, background, threshold: float) -> int:
    """The naive detector: a pure-Python loop over every pixel of the frame."""
    changed = 0
    for row, base in zip(frame.tolist(), background.tolist()):
        for value, expected in zip(row, base):
            if abs(value - expected) > threshold:
                changed += 1
    return changed


def bench_motion(tmp: Path, runs: int) -> None:
    """The detector's CPU per 320x240 frame (thread CPU time) against a pure-Python loop
    over the same frame and a numpy diff of the full 1920x1080 frame; detection at
    motion.fps as percent of one core against reading the frames alone; and, over
    scripted scenes in scene time, latency, missed crossings and false events."""
    import numpy as np

    from picam_api.camera.mock_scene import Scene
    from picam_api.motion.detector import Detector
    from picam_api.motion.tracker import Tracker

    width, height = MOTION_SIZE
    scene = Scene(path=[[-0.15, 0.5], [1.15, 0.5]], speed=0.5, repeat_s=4.0, noise=4.0,
                  flicker=0.1, seed=1)
    frames = [scene.luma(width, height, i / MOTION_FPS) for i in range(max(runs, 40))]
    detector = Detector(width, height, fps=MOTION_FPS)
    for frame in frames[:10]:
        detector.feed(frame)

    def cpu_per_call(fn, count: int) -> float:
        times = []
        for i in range(count):
            started = time.thread_time()
            fn(i)
            times.append(time.thread_time() - started)
        return statistics.median(times)

    ours = cpu_per_call(lambda i: detector.feed(frames[i % len(frames)]), runs * 4)
    background = frames[0].astype(np.int16)
    naive = cpu_per_call(lambda i: _python_motion_diff(frames[i % len(frames)], background, 20.0),
                         max(3, runs // 10))
    full_scene = Scene(noise=4.0, seed=2)
    full = [full_scene.luma(1920, 1080, i) for i in range(2)]
    full_diff = cpu_per_call(lambda i: int((np.abs(full[i % 2].astype(np.int16) - full[1 - i % 2])
                                            > 20).sum()), runs)
    reading = cpu_per_call(lambda i: scene.luma(width, height, i / MOTION_FPS), runs * 2)
    record("motion detect 320x240, CPU per frame", ours * 1000, "ms", naive * 1000, "",
           None, "baseline: a pure-Python loop over the same frame (threshold only)")
    record("motion detect 320x240 vs full-res diff", ours * 1000, "ms", full_diff * 1000, "",
           None, "baseline: numpy abs-diff and count of one 1920x1080 luma frame")
    percent = ours * MOTION_FPS * 100
    record("motion detection at 5 fps, % of one core", percent, "%",
           reading * MOTION_FPS * 100, "< 5% of one core", percent < 5,
           "baseline: the mock drawing the same frames, no detection")
    latencies, missed = _motion_crossings(Scene, Detector, Tracker, width, height, 100)
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = sorted(latencies)[max(0, int(len(latencies) * 0.99) - 1)] if latencies else float("nan")
    record("motion.start latency p50 (frames)", p50, "frames", None, "< 2 frame intervals",
           p50 < 2, "from the first frame the object can be seen in; scene time")
    record("motion.start latency p99 (frames)", p99, "frames", None, "< 2 frame intervals",
           p99 < 2, "")
    record("missed crossings of 100", missed, "", None, "0", missed == 0,
           "random height, speed and direction; noise 4, flicker 10%")
    minutes = 15
    false = _motion_false_events(Scene, Detector, Tracker, width, height, minutes * 60)
    record("false motion events per hour", false * 60 / minutes, "/h", None, "0", false == 0,
           f"static scene, noise 4, flicker 25%, a slow ramp and clouds; {minutes} min of scene time")


def _motion_crossings(Scene, Detector, Tracker, width: int, height: int, count: int):
    """Frames from the object's first detectable frame to motion.start, for each crossing."""
    import random
    chance = random.Random(3)
    detector, tracker = Detector(width, height, fps=MOTION_FPS), Tracker(cooldown_s=0.0)
    latencies, missed, t = [], 0, 0.0
    for _ in range(count):
        y = chance.uniform(0.2, 0.8)
        path = [[-0.15, y], [1.15, y]] if chance.random() < 0.5 else [[1.15, y], [-0.15, y]]
        scene = Scene(path=path, speed=chance.uniform(0.3, 1.0), start_s=t + 2.0, noise=4.0,
                      flicker=0.1, seed=chance.randrange(1000))
        seen_at, started_at = None, None
        leaves = scene.start_s + 1.3 / scene.speed  # the path is 1.3 frame widths long
        while True:
            box = scene.object_box(t, width, height)
            gone = t > leaves
            events = tracker.update(detector.feed(scene.luma(width, height, t)), t)
            if seen_at is None and box and box[2] * box[3] * 100 >= detector.min_area_pct:
                seen_at = t
            if started_at is None and any(kind == "motion.start" for kind, _ in events):
                started_at = t
            t += 1 / MOTION_FPS
            if gone and tracker.event is None:
                break
        if started_at is None or seen_at is None:
            missed += 1
        else:
            latencies.append(round((started_at - seen_at) * MOTION_FPS))
    return latencies, missed


def _motion_false_events(Scene, Detector, Tracker, width: int, height: int, seconds: int) -> int:
    scene = Scene(noise=4.0, flicker=0.25, ramp=0.01, cloud_s=120.0, seed=4)
    detector, tracker = Detector(width, height, fps=MOTION_FPS), Tracker()
    events = 0
    for i in range(int(seconds * MOTION_FPS)):
        t = i / MOTION_FPS
        events += sum(kind == "motion.start" for kind, _ in
                      tracker.update(detector.feed(scene.luma(width, height, t)), t))
    return events


def print_table(rows: list[dict]) -> None:
    lines = [HEADER] + [cells(row) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))


def update_doc(path: Path, machine: str, rows: list[dict]) -> None:
    """Put the table, as Markdown, between the bench-table markers of ``path``."""
    text = path.read_text()
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    table = "\n".join("| " + " | ".join(line) + " |" for line in
                      [HEADER, ("---",) * len(HEADER), *(cells(row) for row in rows)])
    block = (f"{TABLE_START}\nLatest run, {dt.date.today():%Y-%m-%d}: {machine}, mock camera.\n\n"
             f"{table}\n")
    path.write_text(text[:start] + block + text[end:])


def machine_name() -> str:
    """The CPU model, its cores and the Python: what the figures depend on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({platform.machine()}), {os.cpu_count()} cores, Python {platform.python_version()}"


def bench_picamera2(tmp: Path, runs: int) -> None:
    """The picamera2 backend over the simulated Pi: camera memory, RSS, capture cost."""
    from bench_pi import bench_picamera2 as rows  # tests/simcam under the real picamera2

    rows(record, runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per figure")
    parser.add_argument("--json", default="bench-results.json", help="where to write the table")
    parser.add_argument("--doc", type=Path, help="also put the table in this Markdown file "
                        f"(between {TABLE_START} and {TABLE_END})")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only the benchmarks whose name has NAME in it (snapshot, auth, "
                             "login-burst, listing, stream, timelapse, slowloris, sse-latency, "
                             "sse-fanout, webhooks, mqtt, render, render-lateness, clip, "
                             "motion, h264, picamera2); "
                             "may be repeated")
    args = parser.parse_args(argv)
    benches = [("snapshot", bench_snapshot, (max(10, args.runs // 2),)),
               ("auth", bench_auth, (args.runs * 4,)), ("login-burst", bench_login_burst, ()),
               ("listing", bench_listing, (args.runs * 2,)), ("stream", bench_stream, (args.runs,)),
               ("timelapse", bench_timelapse, (args.runs,)),
               ("slowloris", bench_slowloris, (args.runs,)),
               ("sse-latency", bench_sse_latency, (args.runs * 2,)),
               ("sse-fanout", bench_sse_fanout, (args.runs,)),
               ("webhooks", bench_webhooks, (args.runs,)),
               ("mqtt", bench_mqtt_latency, (args.runs * 2,)),
               ("render", bench_render, (args.runs,)),
               ("render-lateness", bench_render_lateness, (args.runs,)),
               ("clip", bench_clip, (args.runs,)),
               ("motion", bench_motion, (args.runs,)),
               ("h264", bench_h264, (args.runs,)),
               ("picamera2", bench_picamera2, (max(10, args.runs // 2),))]
    with tempfile.TemporaryDirectory(prefix="picam-bench-") as tmp:
        tmp = Path(tmp)
        for name, bench, extra in benches:
            if not args.only or any(part in name for part in args.only):
                bench(tmp, *extra)
    machine = machine_name()
    print(f"picam-api benchmarks on {machine}; medians of {args.runs}+ runs\n")
    print_table(ROWS)
    Path(args.json).write_text(json.dumps({"machine": machine, "rows": ROWS}, indent=2))
    if args.doc:
        update_doc(args.doc, machine, ROWS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
