"""Logins under attack: bounded password hashes, failures counted before hashing and
keyed by address and user, the memory a burst of wrong logins can take (by RSS and
under a memory cgroup), tokens capped and rate-limited, and what reaches the log."""
from __future__ import annotations

import base64
import concurrent.futures
import http.client
import logging
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests
from werkzeug.security import generate_password_hash

from picam_api import passwords
from picam_api.limits import SlidingWindow
from picam_api.passwords import METHOD

from conftest import ADMIN_PASSWORD, VIEWER_PASSWORD, ServerProcess, assert_problem, basic, wait_for

MiB = 2**20
JSON = "application/json"


def _parallel(count: int, call) -> list:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def test_parallel_wrong_logins_check_at_most_max_failures_passwords(make_app, config, hash_calls):
    config["auth"] = {"max_failures": 5, "failure_window_s": 60}
    app = make_app(config)

    def attempt(n: int) -> int:
        return app.test_client().get("/api/v1/info",
                                     headers=basic("admin", f"wrong-{n}")).status_code

    statuses = _parallel(40, attempt)
    # The attempt is counted before its hash runs, so 40 at once cannot outrun the limit.
    assert len(hash_calls) <= 5, len(hash_calls)
    assert statuses.count(401) == len(hash_calls)
    assert set(statuses) <= {401, 429, 503} and 429 in statuses


def test_concurrent_password_checks_are_bounded(make_app, config, monkeypatch):
    config["auth"] = {"max_failures": 1000, "max_concurrent_hashes": 2}
    app = make_app(config)
    running, most = 0, 0
    lock = threading.Lock()
    real = passwords.check_password_hash

    def slow(pwhash: str, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.2)
            return real(pwhash, password)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(passwords, "check_password_hash", slow)

    def attempt(n: int):
        # Each from its own address as its own user: nothing but the hash bound holds them.
        return app.test_client().get("/api/v1/info", headers=basic(f"user{n}", "wrong-password"),
                                     environ_base={"REMOTE_ADDR": f"192.0.2.{n + 1}"})

    responses = _parallel(32, attempt)
    assert most == 2
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {401, 503} and 401 in statuses
    # Those that waited too long are told to come back, not left hanging.
    assert 503 in statuses
    for response in responses:
        if response.status_code == 503:
            assert_problem(response, 503)
            assert int(response.headers["Retry-After"]) >= 1


def test_failures_are_keyed_by_address_and_user(make_app, config):
    config["auth"] = {"max_failures": 3, "failure_window_s": 60}
    app = make_app(config)
    app.extensions["picam"].accounts.add_user("viewer", VIEWER_PASSWORD, "viewer")
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/v1/info", headers=basic("admin", "wrong-password")).status_code == 401
    assert_problem(client.get("/api/v1/info", headers=basic("admin", ADMIN_PASSWORD)), 429)
    # Another user behind the same address (Home Assistant beside OctoPrint) is not locked out.
    assert client.get("/api/v1/info", headers=basic("viewer", VIEWER_PASSWORD)).status_code == 200


def test_spraying_user_names_from_one_address_is_bounded(make_app, config, hash_calls):
    config["auth"] = {"max_failures": 2, "failure_window_s": 60}
    client = make_app(config).test_client()
    statuses = [client.get("/api/v1/info", headers=basic(f"name{n}", "guess")).status_code
                for n in range(20)]
    # ADDRESS_FACTOR (3) times max_failures are checked; the rest are refused unhashed
    # (a plain 401: no user of that name could ever log in).
    assert statuses == [401] * 20 and len(hash_calls) == 6
    # A user that exists is not locked out by it, from the same address.
    assert client.get("/api/v1/info", headers=basic("admin", ADMIN_PASSWORD)).status_code == 200


def test_new_hashes_are_sized_for_a_pi_and_old_ones_are_renewed_on_login(client, services):
    stored = services.accounts.get_user("admin").password_hash
    assert stored.startswith(METHOD + "$")
    n, r, p = map(int, METHOD.split(":")[1:])
    assert 128 * n * r <= 16 * MiB  # the memory one check takes
    # A hash from the first release (werkzeug's default: 32 MiB a check)...
    with services.db.transaction() as conn:
        conn.execute("UPDATE users SET password_hash = ? WHERE name = 'admin'",
                     (generate_password_hash(ADMIN_PASSWORD),))
    assert not services.accounts.get_user("admin").password_hash.startswith(METHOD)
    assert client.get("/api/v1/info", headers=basic("admin", ADMIN_PASSWORD)).status_code == 200
    # ...is replaced at the first successful login, and the password still works.
    assert services.accounts.get_user("admin").password_hash.startswith(METHOD + "$")
    services.credential_cache._entries.clear()
    assert client.get("/api/v1/info", headers=basic("admin", ADMIN_PASSWORD)).status_code == 200
    assert client.get("/api/v1/info", headers=basic("admin", "wrong-password")).status_code == 401


def test_tokens_per_user_are_capped_oldest_first(make_app, config, admin_headers):
    config["auth"] = {"max_tokens_per_user": 3, "tokens_per_minute": 100}
    client = make_app(config).test_client()
    tokens = [client.post("/api/v1/tokens", headers=admin_headers, content_type=JSON).json["token"]
              for _ in range(5)]
    working = [client.get("/api/v1/info", headers={"Authorization": f"Bearer {t}"}).status_code
               for t in tokens]
    assert working == [401, 401, 200, 200, 200]


def test_token_creation_is_rate_limited(make_app, config, admin_headers):
    config["auth"] = {"tokens_per_minute": 4}
    app = make_app(config)
    client = app.test_client()
    for _ in range(4):
        assert client.post("/api/v1/tokens", headers=admin_headers,
                           content_type=JSON).status_code == 201
    refused = client.post("/api/v1/tokens", headers=admin_headers, content_type=JSON)
    assert_problem(refused, 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    # Per user: another one still gets its tokens.
    app.extensions["picam"].accounts.add_user("viewer", VIEWER_PASSWORD, "viewer")
    assert client.post("/api/v1/tokens", headers=basic("viewer", VIEWER_PASSWORD),
                       content_type=JSON).status_code == 201


def test_a_password_typed_as_the_user_name_is_not_logged(client, caplog):
    secret = "correct-horse-" + secrets.token_hex(4)
    with caplog.at_level(logging.WARNING, "picam_api"):
        assert client.get("/api/v1/info", headers=basic(secret, "")).status_code == 401
        assert client.get("/api/v1/info", headers=basic("admin", "wrong-password")).status_code == 401
    assert secret not in caplog.text
    assert "unknown user (tag " in caplog.text
    assert "user 'admin'" in caplog.text  # a user that exists is named


# -- a burst of wrong logins against a real server ------------------------------------

BURST = 32
BURST_TOML = """
[auth]
# Every attempt must reach the hash: the limiter is what this does not test.
max_failures = 1000000
"""


def _server_pids(server: ServerProcess) -> list[int]:
    """The server's process and its descendants (a pre-fork server's workers)."""
    pids, queue = [], [server.proc.pid]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            queue += [int(child) for child in children]
    return pids


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _wrong_login_burst(url: str, count: int = BURST) -> list[int]:
    host, port = url.removeprefix("http://").split(":")
    start = threading.Barrier(count)

    def attempt(n: int) -> int:
        # From eight loopback addresses: one address may hold only
        # server.max_connections_per_client (32) connections, and a viewer may hold one.
        conn = http.client.HTTPConnection(host, int(port), timeout=60,
                                          source_address=(f"127.0.0.{2 + n % 8}", 0))
        # Each its own user name: one name's tries take turns, so spraying names
        # is what brings many hashes at once.
        credentials = base64.b64encode(f"user{n}:wrong-{n}".encode()).decode()
        start.wait()
        conn.request("GET", "/api/v1/info", headers={"Authorization": f"Basic {credentials}"})
        status = conn.getresponse().status
        conn.close()
        return status

    return _parallel(count, attempt)


def test_a_burst_of_wrong_logins_takes_little_memory(tmp_path):
    server = ServerProcess(tmp_path, BURST_TOML).start()
    try:
        # Warm: one wrong login has run the hash once, as any running server has.
        assert requests.get(server.url + "/api/v1/info", auth=("admin", "x"), timeout=30).status_code == 401
        pids = _server_pids(server)
        idle = {pid: _status_kib(pid, "VmRSS") for pid in pids}
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak starts again from now
        statuses = _wrong_login_burst(server.url)
        peak = {pid: _status_kib(pid, "VmHWM") for pid in pids}
        assert set(statuses) <= {401, 503} and statuses.count(401) >= 2, statuses
        growth_mib = max(peak[pid] - idle[pid] for pid in pids) / 1024
        print(f"peak RSS growth during {BURST} wrong logins: {growth_mib:.1f} MiB")
        # werkzeug's default scrypt took 32 MiB a check, all at once.
        assert growth_mib < 100, f"peak RSS {growth_mib:.0f} MiB over idle"
        assert requests.get(server.url + "/api/v1/health", timeout=10).status_code == 200
    finally:
        server.stop()


class MemoryCgroup:
    """A memory cgroup made under this process's own, for the server under test.

    cgroup v2 where this process's cgroup has the memory controller, else v1's
    memory hierarchy (this machine: v1 at /sys/fs/cgroup/memory; no systemd, so
    no ``systemd-run --scope``). Fails, never skips, when neither can be made.
    """

    def __init__(self, limit_bytes_over_usage: int):
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        v1 = [line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory"]
        v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
        name = f"picam-test-{secrets.token_hex(4)}"
        if v2 and "memory" in self._read(Path("/sys/fs/cgroup") / v2[0].lstrip("/") /
                                         "cgroup.subtree_control"):
            self.version, self.path = 2, Path("/sys/fs/cgroup") / v2[0].lstrip("/") / name
        elif v1 and Path("/sys/fs/cgroup/memory").is_dir():
            self.version, self.path = 1, Path("/sys/fs/cgroup/memory") / v1[0].lstrip("/") / name
        else:
            raise AssertionError("no memory cgroup can be made here: neither cgroup v2 with the "
                                 "memory controller nor v1's memory hierarchy")
        self.path.mkdir()
        self.headroom = limit_bytes_over_usage

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text()
        except OSError:
            return ""

    def enter(self, pids: list[int]) -> None:
        """Move ``pids`` in; what they allocate from now on may total the headroom.

        Memory they already had stays charged where it was, as both versions do.
        """
        for pid in pids:
            (self.path / "cgroup.procs").write_text(str(pid))
        usage = int((self.path / ("memory.usage_in_bytes" if self.version == 1
                                  else "memory.current")).read_text())
        (self.path / ("memory.limit_in_bytes" if self.version == 1 else "memory.max")).write_text(
            str(usage + self.headroom))

    def oom_kills(self) -> int:
        text = (self.path / ("memory.oom_control" if self.version == 1 else "memory.events")).read_text()
        counts = dict(line.split() for line in text.splitlines())
        return int(counts.get("oom_kill", 0))

    def remove(self) -> None:
        for pid in self._read(self.path / "cgroup.procs").split():
            try:
                (self.path.parent / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        self.path.rmdir()


def test_a_burst_of_wrong_logins_survives_a_memory_cgroup(tmp_path):
    server = ServerProcess(tmp_path, BURST_TOML).start()
    cgroup = MemoryCgroup(100 * MiB)  # the target: less than idle + 100 MiB
    frames = []
    try:
        assert requests.get(server.url + "/api/v1/info", auth=("admin", "x"), timeout=30).status_code == 401
        pids = _server_pids(server)
        cgroup.enter(pids)
        # A live viewer watches throughout: it must not drop.
        stream = requests.get(server.url + "/api/v1/stream.mjpg?fps=5",
                              auth=("admin", ADMIN_PASSWORD), stream=True, timeout=30)
        assert stream.status_code == 200
        reading = threading.Event()

        def watch():
            for chunk in stream.iter_content(4096):
                if b"--frame" in chunk:
                    frames.append(time.monotonic())
                if not reading.is_set():
                    return

        reading.set()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        wait_for(lambda: len(frames) >= 2, 10, "the stream to run")
        for _ in range(3):  # three bursts, as in the issue
            statuses = _wrong_login_burst(server.url)
            assert set(statuses) <= {401, 503}, statuses
        before = len(frames)
        wait_for(lambda: len(frames) > before + 2, 10, "the stream to go on after the bursts")
        reading.clear()
        watcher.join(10)  # it leaves at its next frame
        stream.close()
        assert cgroup.oom_kills() == 0
        assert all(Path(f"/proc/{pid}").exists() for pid in pids), "a server process was killed"
        assert server.proc.poll() is None
        assert requests.get(server.url + "/api/v1/health", timeout=10).status_code == 200
    finally:
        server.stop()
        cgroup.remove()


def test_retry_after_never_exceeds_the_window():
    # Seen as "RateLimit-Reset: 61" for a 60 s window: the float sum rounded up.
    for now in (4.5678979, 1234.5, 0.1):
        window = SlidingWindow(60.0)
        window.add("k", now)
        assert window.retry_after("k", now) == 60
        assert window.retry_after("k", now + 59.5) == 1
