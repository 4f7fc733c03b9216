"""A bounded load run against picam-api on this machine.

N clients for T seconds mix photo posts, listings, image GETs with ETags (which
should come back 304), GPIO changes and live-view readers, while a time-lapse
runs. It reports requests, errors by status and p50/p99 latency per operation,
and exits 1 on any 5xx or connection error.

Without ``--url`` it starts its own ``picam-api serve`` (mock camera, mock GPIO,
a temporary data dir) and stops it afterwards. ``--url`` must be a loopback
address: this is a tool for your own machine, not for someone else's Pi.
Run it through ``scripts/load`` (which makes the venv).
"""
from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import requests

BIN = Path(sys.executable).parent
MAX_CLIENTS = 32
MAX_DURATION_S = 600
PHOTO = {"width": 320, "height": 240, "quality": 75}
# Relative weights of what a (non-stream) client does next.
MIX = {"post_photo": 2, "list_photos": 4, "get_image": 6, "patch_gpio": 2}
STREAM_PARTS = 10  # parts a stream reader reads before it hangs up and comes back
STREAMS = 2  # stream readers among the clients
OWN_SERVER_TOML = """
[camera.mock]
sensor = [1280, 720]
[timelapse]
min_interval_s = 0.1
[stream]
# A reader that hangs up and comes back at once holds two slots until the server
# notices the first one gone (at its next write): room for both.
max_clients = {slots}
[log]
level = "WARNING"
[[gpio.devices]]
name = "status"
pin = 17
kind = "led"
[[gpio.devices]]
name = "lamp"
pin = 18
kind = "pwm"
"""


class Stats:
    """Latencies and outcomes per operation, shared by every client thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter] = defaultdict(Counter)

    def record(self, operation: str, status: int | str, seconds: float) -> None:
        with self.lock:
            self.latencies[operation].append(seconds)
            self.statuses[operation][status] += 1

    def report(self) -> dict:
        rows = {}
        for operation in sorted(self.statuses):
            times = sorted(self.latencies[operation])
            statuses = self.statuses[operation]
            rows[operation] = {
                "requests": sum(statuses.values()),
                "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
                "errors": sum(v for k, v in statuses.items() if not _ok(k)),
                "p50_ms": round(_percentile(times, 50) * 1000, 1),
                "p99_ms": round(_percentile(times, 99) * 1000, 1),
            }
        return rows


def _ok(status: int | str) -> bool:
    return isinstance(status, int) and status < 400


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


class Client(threading.Thread):
    """One client: a keep-alive session doing a random mix of operations."""

    def __init__(self, url: str, auth: tuple[str, str], stats: Stats, deadline: float,
                 outputs: list[str], seed: int):
        super().__init__(daemon=True)
        self.url, self.stats, self.deadline, self.outputs = url, stats, deadline, outputs
        self.session = requests.Session()
        self.session.auth = auth
        self.random = random.Random(seed)
        self.etags: dict[str, str] = {}  # image URL -> ETag

    def run(self) -> None:
        operations = [op for op in MIX if op != "patch_gpio" or self.outputs]
        weights = [MIX[op] for op in operations]
        while time.monotonic() < self.deadline:
            operation = self.random.choices(operations, weights)[0]
            self.timed(operation, getattr(self, operation))

    def timed(self, operation: str, call) -> None:
        started = time.monotonic()
        try:
            status = call()
        except (requests.RequestException, OSError) as exc:
            status = f"connection error: {type(exc).__name__}"
        except (ValueError, KeyError, IndexError) as exc:  # a reply that is not HTTP or MJPEG
            status = f"malformed reply: {type(exc).__name__}"
        self.stats.record(operation, status, time.monotonic() - started)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, self.url + path, timeout=30, **kwargs)

    def post_photo(self) -> int:
        response = self.request("POST", "/api/v1/photos", json=PHOTO)
        if response.status_code == 201:
            self.etags.setdefault(response.json()["links"]["image"], "")
        return response.status_code

    def list_photos(self) -> int:
        response = self.request("GET", "/api/v1/photos", params={"limit": 20})
        if response.status_code == 200:
            for item in response.json()["items"]:
                self.etags.setdefault(item["links"]["image"], "")
        return response.status_code

    def get_image(self) -> int:
        if not self.etags:
            return self.list_photos()
        image = self.random.choice(sorted(self.etags))
        headers = {"If-None-Match": self.etags[image]} if self.etags[image] else {}
        response = self.request("GET", image, headers=headers)
        if response.status_code == 200:
            self.etags[image] = response.headers["ETag"]
        return response.status_code

    def patch_gpio(self) -> int:
        name = self.random.choice(self.outputs)
        return self.request("PATCH", f"/api/v1/gpio/{name}", json={"toggle": True}).status_code


class StreamClient(Client):
    """A live-view reader: reads ``STREAM_PARTS`` MJPEG parts, hangs up, comes back.

    Its latency is that of the whole visit, so at the stream's default 10 fps
    about a second. HTTP/1.0, as mjpg-streamer's clients ask: the parts come
    unchunked.
    """

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            self.timed(f"stream_{STREAM_PARTS}_parts", self.read_stream)

    def read_stream(self) -> int:
        parts = urlsplit(self.url)
        auth = base64.b64encode(":".join(self.session.auth).encode()).decode()
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock, \
                sock.makefile("rb") as body:
            sock.sendall(f"GET /api/v1/stream.mjpg HTTP/1.0\r\nAuthorization: Basic {auth}"
                         f"\r\n\r\n".encode())
            status = int(body.readline().split()[1])
            while body.readline() not in (b"\r\n", b""):  # headers
                pass
            if status != 200:
                return status
            for _ in range(STREAM_PARTS):
                headers = {}
                while (line := body.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                jpeg = body.read(int(headers["content-length"]) + 2)
                if not jpeg.startswith(b"\xff\xd8"):
                    raise ValueError("a part that is not a JPEG")
        return status


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise SystemExit(f"load: cannot resolve {host!r}") from None
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise SystemExit(f"load: {host} is not a loopback address; this tool only loads "
                         "a server on this machine")


@contextmanager
def own_server(password: str):
    """``picam-api serve`` on a free loopback port with a throwaway data dir."""
    with tempfile.TemporaryDirectory(prefix="picam-load-") as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        config = Path(tmp, "config.toml")
        config.write_text(f'[server]\nhost = "127.0.0.1"\nport = {port}\nthreads = {2 * STREAMS + 12}\n'
                          f'[storage]\ndata_dir = "{tmp}/data"\nreserve_mb = 0\n'
                          f'[camera]\nbackend = "mock"\n'
                          + OWN_SERVER_TOML.format(slots=2 * STREAMS))
        log = Path(tmp, "server.log")
        proc = subprocess.Popen([str(BIN / "picam-api"), "serve", "--config", str(config)],
                                env={**os.environ, "PICAM_ADMIN_PASSWORD": password},
                                stdout=log.open("wb"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(url + "/api/v1/health", timeout=1).status_code == 200:
                        break
                except (requests.ConnectionError, requests.Timeout):  # not up yet, as in conftest
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"load: the server did not start:\n{log.read_text()}")
                time.sleep(0.05)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def run(url: str, auth: tuple[str, str], clients: int, duration: float) -> dict:
    session = requests.Session()
    session.auth = auth
    outputs = [d["name"] for d in session.get(url + "/api/v1/gpio", timeout=10).json()["items"]
               if d["kind"] not in ("button", "input")]
    # A few photos to begin with, so image GETs have something to fetch from the start.
    for _ in range(3):
        session.post(url + "/api/v1/photos", json=PHOTO, timeout=30).raise_for_status()
    job = session.post(url + "/api/v1/timelapses", json={**PHOTO, "interval_s": 0.5,
                                                         "name": f"load-{os.getpid()}"},
                       timeout=30)
    job.raise_for_status()
    stats = Stats()
    deadline = time.monotonic() + duration
    streams = min(STREAMS, clients // 3)
    threads = [(StreamClient if i < streams else Client)(url, auth, stats, deadline, outputs, i)
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 60)
    timelapse = session.patch(url + job.json()["links"]["self"], json={"state": "cancelled"},
                              timeout=30).json()
    return {"clients": clients, "duration_s": duration, "operations": stats.report(),
            "timelapse": {key: timelapse[key] for key in
                          ("frames_captured", "frames_missed", "frames_failed")}}


def print_report(result: dict) -> None:
    print(f"{result['clients']} clients for {result['duration_s']:g} s, a time-lapse every 0.5 s\n")
    header = ("operation", "requests", "errors", "p50 ms", "p99 ms", "statuses")
    lines = [header] + [(op, str(r["requests"]), str(r["errors"]), f"{r['p50_ms']:.1f}",
                         f"{r['p99_ms']:.1f}", " ".join(f"{k}:{v}" for k, v in r["statuses"].items()))
                        for op, r in result["operations"].items()]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    print(f"\ntime-lapse: {result['timelapse']}")
    print(f"5xx: {result['server_errors']}, connection errors: {result['connection_errors']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server on this machine (default: start one)")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default=os.environ.get("PICAM_LOAD_PASSWORD"),
                        help="default: $PICAM_LOAD_PASSWORD (or made up, for its own server)")
    parser.add_argument("--clients", type=int, default=6, help=f"1 to {MAX_CLIENTS}")
    parser.add_argument("--duration", type=float, default=10.0, help=f"seconds, at most {MAX_DURATION_S}")
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--clients must be 1-{MAX_CLIENTS} and --duration 0-{MAX_DURATION_S}")
    if args.url:
        check_loopback(args.url)
        if not args.password:
            parser.error("--url needs --password or $PICAM_LOAD_PASSWORD")
        result = run(args.url.rstrip("/"), (args.user, args.password), args.clients, args.duration)
    else:
        password = args.password or base64.b32encode(os.urandom(10)).decode()
        with own_server(password) as url:
            result = run(url, ("admin", password), args.clients, args.duration)
    statuses = [(k, v) for r in result["operations"].values() for k, v in r["statuses"].items()]
    result["server_errors"] = sum(v for k, v in statuses if k.isdigit() and int(k) >= 500)
    result["connection_errors"] = sum(v for k, v in statuses if not k.isdigit())
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 1 if result["server_errors"] or result["connection_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
