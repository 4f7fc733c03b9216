"""The HTTP server under attack and under accident, over real sockets to ``picam-api serve``.

Attackers connect from other loopback addresses (127.0.0.2 and up: Linux routes
all of 127.0.0.0/8 to lo), so the per-client cap sees them as other clients;
the legitimate client is 127.0.0.1.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time

import pytest
import requests

from conftest import ADMIN_PASSWORD, ServerProcess, assert_problem, basic
from picam_api.config import from_mapping
from picam_api.http_server import HttpServer
from picam_api.long_lived import ENVIRON_KEY as HOLD_OPEN

AUTH = basic("admin", ADMIN_PASSWORD)["Authorization"]
# Short deadlines and caps, so that the tests of them take seconds.
SHORT = {"request_timeout_s": 2.0, "idle_timeout_s": 1.0, "max_body_bytes": 4096}


def serve(tmp_path, server_keys: dict | None = None, extra_toml: str = "") -> ServerProcess:
    process = ServerProcess(tmp_path, extra_toml)
    text = process.config_file.read_text()
    keys = "".join(f"{key} = {json.dumps(value)}\n" for key, value in (server_keys or {}).items())
    process.config_file.write_text(text.replace("[storage]\n", keys + "[storage]\n", 1))
    return process.start()


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """A server with the SHORT limits, shared by the tests that do not change it."""
    process = serve(tmp_path_factory.mktemp("short"), SHORT)
    yield process
    assert process.stop() == 0


def connect(server: ServerProcess, source: str = "127.0.0.1", data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5,
                                    source_address=(source, 0))
    if data:
        sock.sendall(data)
    return sock


class Raw:
    """A response read off a socket, shaped for ``assert_problem``."""

    def __init__(self, sock: socket.socket, method: str = "GET"):
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        self.status_code = response.status
        self.headers = response.headers
        self.text = response.read().decode()


def raw(server: ServerProcess, data: bytes) -> Raw:
    with connect(server, data=data) as sock:
        return Raw(sock)


def closed_by_server(sock: socket.socket, within: float) -> float | None:
    """Seconds until the server closed ``sock`` (anything it sent is skipped), or None."""
    started = time.monotonic()
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


class Trickle(threading.Thread):
    """Sends each socket's next byte every ``every`` seconds until stopped."""

    def __init__(self, socks: list[socket.socket], byte: bytes, every: float):
        super().__init__(daemon=True)
        self.socks, self.byte, self.every = socks, byte, every
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            for sock in self.socks:
                try:
                    sock.send(self.byte)
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


def timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


# -- slowloris ------------------------------------------------------------------------


def test_trickling_idle_and_slow_body_connections_leave_the_service_answering(tmp_path):
    # Deadlines far off, so that the attack holds for the whole test however slow
    # this machine is (the deadlines have tests of their own).
    server = serve(tmp_path, {"request_timeout_s": 60, "idle_timeout_s": 60})
    attackers = [f"127.0.0.{n}" for n in range(2, 18)]  # 16 addresses, 9 connections each
    trickling = [connect(server, attackers[i % 16], b"GET /api/v1/health HTTP/1.1\r\n"
                         b"Host: localhost\r\nX-Slow: ") for i in range(64)]
    idle = [connect(server, attackers[i % 16]) for i in range(64)]
    slow_bodies = [connect(server, attackers[i % 16],
                           b"POST /api/v1/photos HTTP/1.1\r\nHost: localhost\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{")
                   for i in range(16)]
    attack = Trickle(trickling + slow_bodies, b" ", 0.25)
    try:
        times = []
        with requests.Session() as http:
            http.headers["Authorization"] = AUTH
            started = time.monotonic()
            while time.monotonic() - started < 3.0:  # 12 bytes more on every trickle
                times.append(timed(lambda: requests.get(server.url + "/api/v1/health", timeout=5)
                                   .raise_for_status()))
                times.append(timed(lambda: http.get(server.url + "/api/v1/snapshot.jpg?width=320"
                                                    "&height=240", timeout=5).raise_for_status()))

                def stream_starts():
                    with http.get(server.url + "/api/v1/stream.mjpg", stream=True,
                                  timeout=5) as response:
                        assert response.raw.read(9) == b"--frame\r\n", response.text
                times.append(timed(stream_starts))
                time.sleep(0.3)  # the server frees a stream's slot at its next frame
        assert max(times) < 1.0, times
        # The attack was under way all along: the server held every connection open.
        assert all(still_open(sock) for sock in trickling + idle + slow_bodies)
    finally:
        attack.stop()
        for sock in trickling + idle + slow_bodies:
            sock.close()
        assert server.stop() == 0


def test_a_request_must_arrive_whole_within_its_deadline_however_it_trickles(short):
    header = connect(short, "127.0.0.20", b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nX-A: ")
    body = connect(short, "127.0.0.21", b"POST /api/v1/photos HTTP/1.1\r\nHost: localhost\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    attack = Trickle([header, body], b" ", 0.2)
    started = time.monotonic()
    try:
        for sock in (header, body):
            response = Raw(sock)
            elapsed = time.monotonic() - started
            body_ = assert_problem(response, 408)
            assert "server.request_timeout_s" in body_["detail"]
            assert response.headers["Connection"] == "close"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert 1.9 < elapsed < 4.0, elapsed
            assert closed_by_server(sock, 2.0) is not None
    finally:
        attack.stop()
        header.close()
        body.close()


def test_idle_connections_are_closed_before_and_between_requests(short):
    silent = connect(short, "127.0.0.22")
    assert 0.9 < closed_by_server(silent, 4.0) < 3.0
    silent.close()
    # Keep-alive: one request answered, then nothing.
    with connect(short, "127.0.0.22", b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n") as sock:
        assert Raw(sock).status_code == 200
        assert 0.9 < closed_by_server(sock, 4.0) < 3.0


def kept_alive(server: ServerProcess, source: str) -> socket.socket:
    """A connection that had one request answered: accepted and counted, now idle."""
    sock = connect(server, source, b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert Raw(sock).status_code == 200
    return sock


def test_a_client_address_gets_only_so_many_connections(tmp_path):
    server = serve(tmp_path, {"max_connections_per_client": 4, "idle_timeout_s": 60})
    mine = [kept_alive(server, "127.0.0.30") for _ in range(4)]
    try:
        refused = connect(server, "127.0.0.30")
        assert closed_by_server(refused, 2.0) is not None
        refused.close()
        assert all(still_open(sock) for sock in mine)
        # Another address is another client.
        kept_alive(server, "127.0.0.31").close()
    finally:
        for sock in mine:
            sock.close()
        assert server.stop() == 0
    assert server.log.read_text().count("refusing connections from 127.0.0.30") == 1


def test_a_full_server_evicts_the_connection_that_waited_longest(tmp_path):
    server = serve(tmp_path, {"max_connections": 8, "idle_timeout_s": 60})
    waiting = [kept_alive(server, f"127.0.0.{40 + n}") for n in range(8)]  # oldest first
    try:
        response = raw(server, b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n"
                               b"Connection: close\r\n\r\n")
        assert response.status_code == 200
        assert closed_by_server(waiting[0], 2.0) is not None  # the oldest made room
        assert all(still_open(sock) for sock in waiting[1:])
        assert "server.max_connections" in server.log.read_text()
    finally:
        for sock in waiting:
            sock.close()
        assert server.stop() == 0


# -- the server's own answers ------------------------------------------------------------


def chunked(body: bytes, path: str = "/api/v1/photos", content_type: str = "application/json") -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH}\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                      for i in range(0, len(body), 1000))
    return head + chunks + b"0\r\n\r\n"


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 12x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Bad\nY: 1\r\n\r\n", 400),
    (b"get / HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
    (b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST /api/v1/photos HTTP/1.1\r\nHost: localhost\r\nContent-Length: 999999999\r\n\r\n", 413),
    (chunked(b" " * 5000), 413),
], ids=["chunk-size", "content-length", "bare-lf", "method", "long-line", "big-header",
        "transfer-coding", "declared-body", "chunked-body"])
def test_requests_the_server_cannot_take_get_a_problem_with_the_security_headers(
        short, request_bytes, status):
    response = raw(short, request_bytes)
    assert_problem(response, status)
    assert response.headers["Connection"] == "close"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Server"] == "picam-api"
    assert "Traceback" not in short.log.read_text()


@pytest.mark.parametrize("framing", ["declared", "chunked"])
def test_a_client_still_sending_a_body_too_large_reads_its_413(short, framing):
    # The server answers at the limit and closes; the client is still sending.
    conn = http.client.HTTPConnection("127.0.0.1", short.port, timeout=10)
    body = b'{"pad": "' + b"x" * (16 << 20) + b'"}'  # more than the socket buffers hold
    conn.request("POST", "/api/v1/photos", body=iter([body]) if framing == "chunked" else body,
                 encode_chunked=framing == "chunked",
                 headers={"Authorization": AUTH, "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/problem+json"
    assert "server.max_body_bytes" in json.loads(response.read())["detail"]
    conn.close()


def test_a_chunked_body_reaches_the_app_as_a_plain_one(short):
    response = raw(short, chunked(json.dumps({"width": 64, "height": 48, "quality": 70}).encode()))
    assert response.status_code == 201, response.text
    assert json.loads(response.text)["width"] == 64
    # The app sees its length, so a chunked body is held to the JSON rule like any other.
    assert_problem(raw(short, chunked(b"width=64", content_type="text/plain")), 415)


class InProcess:
    """The server alone, in this process, in front of ``app``; stopped on exit."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = HttpServer(app, self.sock, from_mapping({})["server"])
        self.loop = threading.Thread(target=self.server.run_until_stopped, args=(1.0,))

    def __enter__(self) -> "InProcess":
        self.loop.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self.loop.join(5)
        assert not self.loop.is_alive()

    def get(self, source: str = "127.0.0.1", data: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5,
                                      source_address=(source, 0)) as client:
            client.sendall(data)
            return Raw(client)


def ok(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_a_failure_while_accepting_is_logged_and_the_server_accepts_on(monkeypatch, caplog):
    with InProcess(ok) as served:
        monkeypatch.setattr(served.server, "_admit", lambda client: 1 / 0)
        with pytest.raises(OSError):  # closed, or reset, with no answer
            served.get().status_code
        monkeypatch.undo()
        assert served.get().text == "ok"
    assert "error while accepting a connection; accepting on" in caplog.text
    assert "ZeroDivisionError" in caplog.text


def test_what_the_server_puts_in_the_environ():
    seen = []

    def app(environ, start_response):
        seen.append({key: environ.get(key) for key in (
            "SERVER_ADDR", "CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING", "REMOTE_ADDR")})
        seen[-1].update(body=environ["wsgi.input"].read(), hold_open=callable(environ[HOLD_OPEN]))
        return ok(environ, start_response)

    with InProcess(app) as served:
        response = served.get("127.0.0.7", b"POST / HTTP/1.1\r\nHost: localhost\r\n"
                                           b"Transfer-Encoding: chunked\r\n\r\n"
                                           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        assert response.text == "ok"
    assert seen == [{"SERVER_ADDR": "127.0.0.1", "CONTENT_LENGTH": "11", "HTTP_TRANSFER_ENCODING": None,
                     "REMOTE_ADDR": "127.0.0.7", "body": b"hello world", "hold_open": True}]


def test_a_long_request_line_within_the_limit_reaches_the_app(short):
    cursor = "%41" * 512  # a 512-character cursor, percent-encoded
    response = requests.get(f"{short.url}/api/v1/photos?limit=1&cursor={cursor}",
                            headers={"Authorization": AUTH}, timeout=10)
    assert_problem(response, 400)  # the app's own answer: not a cursor it made
    assert "cursor" in response.json()["detail"]


def test_the_server_header_names_no_version(short):
    response = requests.get(short.url + "/api/v1/health", timeout=10)
    assert response.headers["Server"] == "picam-api"


def test_a_head_response_has_no_body_even_where_a_get_is_chunked(short):
    with connect(short, data=f"HEAD /api/v1/stream.mjpg HTTP/1.1\r\nHost: localhost\r\n"
                             f"Authorization: {AUTH}\r\n\r\n".encode()) as sock:
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"multipart/x-mixed-replace" in head
    assert rest == b""


# -- accidents --------------------------------------------------------------------------


def test_a_client_that_leaves_its_response_unread_stalls_no_one(short):
    # Python's urllib does this on every Basic challenge: Connection: close, then
    # it never reads the 401. gunicorn 27 held its main loop ~2 s on each.
    for _ in range(5):
        unread = socket.socket()
        unread.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        unread.connect(("127.0.0.1", short.port))
        unread.sendall(b"GET /api/v1/info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        try:
            time.sleep(0.05)
            elapsed = timed(lambda: requests.get(short.url + "/api/v1/health", timeout=5)
                            .raise_for_status())
            assert elapsed < 1.0, elapsed
        finally:
            unread.close()


def test_the_log_shows_no_traceback_after_all_this(short):
    # Runs last in this module: every attack above was answered or dropped cleanly.
    log = short.log.read_text()
    assert "Traceback" not in log and "Exception" not in log
    assert not re.search(r"^\S* ?\S* ?ERROR ", log, re.M), log
