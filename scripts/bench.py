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
import time
from pathlib import Path

import requests

from picam_api.camera.base import CaptureSettings
from picam_api.camera.mock import MockCamera
from picam_api.config import from_mapping

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

    def __init__(self, data_dir: Path, threads: int = 8):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = data_dir.parent / f"{data_dir.name}.toml"
        self.config.write_text(
            f'[server]\nport = {self.port}\nthreads = {threads}\n'
            f'[storage]\ndata_dir = "{data_dir}"\nreserve_mb = 0\n'
            f'[camera]\nbackend = "mock"\n[log]\nlevel = "WARNING"\n')
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
            except requests.ConnectionError:
                if self.proc.poll() is not None or time.perf_counter() - started > 60:
                    raise SystemExit("bench: the server did not start")
                time.sleep(0.01)
        self.startup_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)

    def rss_bytes(self) -> int:
        """Resident memory of the arbiter plus its worker."""
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total


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
        token = requests.post(server.url + "/api/v1/tokens", headers=basic_header()).json()["token"]
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
        record("idle server RSS", server.rss_bytes() / 2**20, "MiB", note="arbiter + worker")


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


def print_table(rows: list[dict]) -> None:
    header = ("metric", "value", "baseline", "ratio", "target", "met")
    lines = [header]
    for row in rows:
        unit = row["unit"]
        lines.append((row["metric"], f"{row['value']:.2f} {unit}",
                      f"{row['baseline']:.2f} {unit}" if row["baseline"] else "-",
                      f"{row['ratio']:.3f}" if row["ratio"] else "-", row["target"] or "-",
                      {True: "yes", False: "NO", None: "-"}[row["met"]]))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per figure")
    parser.add_argument("--json", default="bench-results.json", help="where to write the table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="picam-bench-") as tmp:
        tmp = Path(tmp)
        bench_snapshot(tmp, max(10, args.runs // 2))
        bench_auth(tmp, args.runs * 4)
        bench_listing(tmp, args.runs * 2)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"picam-api benchmarks on {machine}; medians of {args.runs}+ runs\n")
    print_table(ROWS)
    Path(args.json).write_text(json.dumps({"machine": machine, "rows": ROWS}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
