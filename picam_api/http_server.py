"""The HTTP server in front of the app: waitress, plus the limits it lacks.

Why waitress (see also the commit that brought it): its one loop thread accepts
every connection and reads, parses and buffers each request, body included; a
request reaches one of the ``server.threads`` only once it is whole. A client
that sends slowly (slowloris, a trickled body) or not at all costs a socket and
a buffer, never a thread. It is one process, pure Python, and keeps WSGI's
thread per response, which the MJPEG stream needs (its generator runs there).

What this module adds, in small subclasses of waitress's server, channel and tasks:

Deadlines (checked by the loop twice a second)
    A request must arrive whole, request line, headers and body, within
    ``server.request_timeout_s`` of its first byte; a trickle does not extend it.
    Past it the client gets 408 and the connection closes. A connection with no
    request under way (before its first one, or between keep-alive requests) is
    closed after ``server.idle_timeout_s`` without a byte either way. A write that
    the client does not take within ``WRITE_TIMEOUT_S`` drops the client (one
    warning line, and the response's iterator is closed). After a response that
    ends its connection (an error, ``Connection: close``) the server sends its FIN
    and drops what the client still sends for ``LINGER_S``, then closes: a client
    still sending a body too large reads its 413, not a reset.

Connection caps, at accept
    ``server.max_connections_per_client`` per client address (an IPv6 client by
    its /64, which one host can fill with addresses): further connections from it
    are closed at once. ``server.max_connections`` in all: when full, a new
    connection evicts the one that has waited longest with no request in service
    (idle, or its request still arriving), so an attacker with many addresses
    cannot lock others out; only if every connection is being served is the new
    one closed. The first refusal of an episode is logged.

What the app sees
    A chunked request body arrives de-chunked, with ``CONTENT_LENGTH`` set and no
    ``Transfer-Encoding``, so the app handles every body alike. A body larger than
    ``server.max_body_bytes`` (declared, or chunked, whose framing counts too) never
    reaches it. ``SERVER_ADDR`` is this end of the connection (hosts.py uses it).
    ``picam.hold_open`` marks a response long-lived, and ``picam.push`` lets
    another thread write to it without waiting (long_lived.py).

The server's own responses are problem+json with the security headers of
headers.py, ``Connection: close``, and ``Server: picam-api`` (no version):

- 400 for a request that is not valid HTTP: a malformed request line or header,
  a bare CR or LF, an invalid ``Content-Length``, an invalid chunk size,
  extension or chunk end;
- 408 for a request not whole within ``server.request_timeout_s``;
- 413 for a body over ``server.max_body_bytes``, declared or chunked;
- 431 for a request line plus headers over ``HEADER_LIMIT`` bytes. There is no
  414: the request line counts toward this limit, so a long line is a 431 too
  (a line well within it, such as the API's 512-character cursors, reaches the app);
- 501 for a transfer coding other than chunked;
- 500 if the app raised before it started its response (Flask answers its own
  errors, so this is a bug; it is logged with its traceback).

Nothing is sent, by design, to a connection closed by a cap, by the idle timeout or
for a write the client did not take (there is no request to answer, or no way to
answer it), nor once a response has begun: an error inside a streamed body can
only end the connection.
"""
from __future__ import annotations

import copy
import ipaddress
import logging
import re
import socket
import struct
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Mapping

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import Error

from . import headers, problems
from .long_lived import ENVIRON_KEY as HOLD_OPEN
from .long_lived import PUSH_KEY as PUSH

log = logging.getLogger(__name__)

IDENT = "picam-api"
# Request line plus headers. Room for a URL with the API's longest query (a
# 512-character cursor, percent-encoded) and any sane set of headers.
HEADER_LIMIT = 16 * 1024
WRITE_TIMEOUT_S = 5.0
# After a response that ends the connection, how long the rest of the request is
# read and dropped: a client still sending a body too large then reads its 413
# instead of a reset.
LINGER_S = 2.0
CHECK_INTERVAL_S = 0.5
LOOP_TIMEOUT_S = 1.0
HOLD_OPEN_BUFFER = (16 * 1024, 4 * 2**20)  # the least and most SO_SNDBUF of hold_open
_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST and drops unsent data


@dataclass(frozen=True)
class Limits:
    request_timeout_s: float
    idle_timeout_s: float
    max_connections: int
    max_per_client: int
    max_body_bytes: int

    @classmethod
    def from_config(cls, server: Mapping) -> "Limits":
        return cls(server["request_timeout_s"], server["idle_timeout_s"],
                   server["max_connections"], server["max_connections_per_client"],
                   server["max_body_bytes"])


class RequestTimeout(Error):
    code = 408
    reason = "Request Timeout"


def client_key(address: str) -> str:
    """Whose connection this is, for the per-client cap: the address, an IPv6 one by /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class ProblemTask(ErrorTask):
    """waitress's error response (a request it could not parse) as problem+json."""

    def execute(self) -> None:
        error = self.request.error
        detail = _detail(error, self.channel.server.limits)
        response = problems.problem(error.code, detail)
        body = response.get_data()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", response.content_type))
        self.response_headers.extend(headers.fixed_headers().items())
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


def _detail(error: Error, limits: Limits) -> str:
    if error.code == 400:
        # waitress quotes the offending line in some messages; it may hold credentials.
        reason = re.sub(r'\s*"[^"]*"', "", error.body).strip().rstrip(".")
        return f"The request is not valid HTTP: {reason}."
    return {
        408: f"The request did not arrive whole within {limits.request_timeout_s:g} s "
             "(server.request_timeout_s).",
        413: f"The request body is larger than {limits.max_body_bytes} bytes "
             "(server.max_body_bytes).",
        431: f"The request line and headers are larger than {HEADER_LIMIT} bytes.",
        501: "Transfer-Encoding: only chunked is supported.",
    }.get(error.code, "The server failed; the error is in its log.")


class AppTask(WSGITask):
    """A request for the app, with what this server adds to its environ."""

    def get_environment(self) -> dict:
        environ = super().get_environment()
        environ["SERVER_ADDR"] = self.channel.local_address
        environ[HOLD_OPEN] = self._hold_open
        environ[PUSH] = self._push
        return environ

    def finish(self) -> None:
        if not self.wrote_header:
            self.write(b"")
        if self.request.command == "HEAD":
            # waitress ends a HEAD response that would have been chunked with a last
            # chunk; a HEAD response has no body, so a keep-alive client would read
            # that "0" as the start of its next response.
            self.chunked_response = False
        super().finish()

    def _hold_open(self, buffer_bytes: int) -> None:
        self.set_close_on_finish()
        self.channel.hold_open(buffer_bytes)

    def _push(self, data: bytes) -> bool:
        # Any thread, while the response's iterator is open. Before its first
        # chunk the headers are not out yet.
        if not data or not self.wrote_header:
            return False
        if self.chunked_response:  # framed as write() frames it
            data = b"%X\r\n%b\r\n" % (len(data), data)
        return self.channel.push(data)


class Channel(HTTPChannel):
    """One connection: its deadlines, its caps' bookkeeping, and bounded writes."""

    task_class = AppTask
    error_task_class = ProblemTask

    def __init__(self, server: "HttpServer", sock: socket.socket, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map=map)
        try:
            self.local_address = sock.getsockname()[0]
        except OSError:  # reset before we got here
            self.local_address = ""
        self.client = client_key(addr[0])
        self.last_io = time.monotonic()
        self.hanging_up = False
        self.lingering_since: float | None = None
        self._arriving = None  # the parser of a request not yet whole, and since when
        self._arriving_since = self.last_io

    # -- the loop thread ------------------------------------------------------------

    def readable(self) -> bool:
        return not self.server.stopping and super().readable()

    def handle_read(self) -> None:
        self.last_io = time.monotonic()
        super().handle_read()

    def received(self, data: bytes) -> bool:
        if self.lingering_since is not None:
            return True  # the rest of a request already answered: dropped
        handled = super().received(data)
        if self.request is not self._arriving:  # a new request began in this data
            self._arriving = self.request
            self._arriving_since = time.monotonic()
        return handled

    def check_deadlines(self, now: float) -> None:
        if self.requests or self.hanging_up:
            return  # a request in service: its writes have a deadline of their own
        if self.lingering_since is not None:
            if now - self.lingering_since > LINGER_S:
                self.hang_up()
            return
        limits = self.server.limits
        if (self.request is not None and not self.close_when_flushed
                and now - self._arriving_since > limits.request_timeout_s):
            self._answer_timeout()
        elif self.request is None or self.close_when_flushed:
            if now - self.last_io > limits.idle_timeout_s:
                # Unsent output means the client stopped reading: no point in a FIN.
                self.hang_up(reset=bool(self.total_outbufs_len))

    def evictable(self) -> bool:
        return not self.requests and not self.hanging_up

    def waiting_since(self) -> float:
        return self._arriving_since if self.request is not None else self.last_io

    def handle_write(self) -> None:
        if not (self.close_when_flushed and not self.requests):
            return super().handle_write()
        # The response that ends this connection: send it, then linger (LINGER_S).
        self._flush_exception(self._flush_some)
        if self.will_close:  # the client is gone
            self.handle_close()
        elif self.connected and not self.total_outbufs_len:
            self.close_when_flushed = False
            self.lingering_since = time.monotonic()
            with suppress(OSError, AttributeError):  # AttributeError: closed meanwhile
                self.socket.shutdown(socket.SHUT_WR)  # our FIN, after the response

    def _answer_timeout(self) -> None:
        request, self.request = self.request, None
        request.error = RequestTimeout("the request took too long")
        task = self.error_task_class(self, request)
        try:
            task.service()  # a short write to an idle socket: it never blocks
        except (OSError, ClientDisconnected):
            pass
        request.close()
        self.close_when_flushed = True

    # -- any thread -----------------------------------------------------------------

    def hang_up(self, reset: bool = False) -> None:
        """Close the connection; the loop finishes closing it at its next turn."""
        self.hanging_up = True
        sock = self.socket
        if sock is not None:
            with suppress(OSError):
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                # Wakes the loop's poll (POLLHUP) even when the socket is not writable.
                sock.shutdown(socket.SHUT_RDWR)
        self.will_close = True
        self.connected = False
        self.server.pull_trigger()

    def _flush_some(self, do_close: bool = True) -> bool:
        sent = super()._flush_some(do_close=do_close)
        if sent:
            self.last_io = time.monotonic()
        return sent

    # -- a task thread --------------------------------------------------------------

    def hold_open(self, buffer_bytes: int) -> None:
        """See long_lived.py: about ``buffer_bytes`` in the kernel, one write in the server."""
        size = min(max(buffer_bytes, HOLD_OPEN_BUFFER[0]), HOLD_OPEN_BUFFER[1])
        sock = self.socket
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        self.sendbuf_len = size
        adj = copy.copy(self.adj)
        # A write waits until the server holds nothing unsent (waitress wakes a
        # waiting writer only below the mark, so 1, not 0).
        adj.outbuf_high_watermark = 1
        self.adj = adj

    def push(self, data: bytes) -> bool:
        """From any thread, without waiting: send ``data`` now, or leave what the kernel
        did not take for the loop. False, with nothing sent, if the client is gone or
        has not taken all of the previous writes (see long_lived.py)."""
        with self.outbuf_lock:
            if not self.connected or self.will_close or self.total_outbufs_len:
                return False
            try:
                sent = self.socket.send(data)
            except BlockingIOError:  # the kernel's buffer is full
                sent = 0
            except OSError:  # the client is gone: say so now, not at a later write
                self.hang_up()
                return False
            if sent:
                self.last_io = time.monotonic()
            if sent < len(data):
                rest = data[sent:]
                self.outbufs[-1].append(rest)
                self.current_outbuf_count += len(rest)
                self.total_outbufs_len += len(rest)
                self.server.pull_trigger()
        return True

    def _flush_outbufs_below_high_watermark(self) -> None:
        # waitress's own waits without end for a client that stopped reading.
        if self.total_outbufs_len <= self.adj.outbuf_high_watermark:
            return
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        with self.outbuf_lock:
            self._flush_exception(self._flush_some, do_close=False)
            while self.connected and self.total_outbufs_len > self.adj.outbuf_high_watermark:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._drop_stalled()
                    return
                self.server.pull_trigger()
                self.outbuf_lock.wait(left)

    def _drop_stalled(self) -> None:
        request = self.requests[0] if self.requests else None
        what = f"{request.command} {request.path}" if request is not None else "a response"
        # The path only: a query string may hold a stream ticket.
        log.warning("dropped %s (%s): it took no data for %g s", self.addr[0], what,
                    WRITE_TIMEOUT_S)
        self.hang_up(reset=True)


class HttpServer(TcpWSGIServer):
    """waitress's server on a bound socket, with the caps, deadlines and a graceful stop."""

    channel_class = Channel

    def __init__(self, app, sock: socket.socket, server_config: Mapping):
        self.limits = Limits.from_config(server_config)
        adj = Adjustments(
            threads=server_config["threads"],
            ident=IDENT,
            max_request_header_size=HEADER_LIMIT,
            # waitress refuses a body of exactly its maximum; the app allows one.
            max_request_body_size=self.limits.max_body_bytes + 1,
            # A client that hangs up is routine, not a traceback.
            log_socket_errors=False,
        )
        self.stopping = False
        self._next_check = 0.0
        self._capped: set[str] = set()
        self._full = False
        self._accept_failed_at = -60.0
        super().__init__(app, map={}, _sock=sock, bind_socket=False, adj=adj,
                         sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))

    @property
    def url(self) -> str:
        host = self.effective_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.effective_port}"

    # -- the loop -------------------------------------------------------------------

    def run_until_stopped(self, grace_s: float, on_stop=lambda: None) -> None:
        """Serve until ``stop()``; then call ``on_stop``, refuse new connections and
        answer what is in service for up to ``grace_s``."""
        while not self.stopping:
            wasyncore.poll2(LOOP_TIMEOUT_S, self._map)
        on_stop()
        wasyncore.dispatcher.close(self)  # the listening socket; the trigger stays
        deadline = time.monotonic() + grace_s
        while self.active_channels:
            busy = 0
            for channel in list(self.active_channels.values()):
                if channel.requests:
                    busy += 1
                elif channel.total_outbufs_len:
                    channel.close_when_flushed = True
                elif not channel.hanging_up:
                    channel.hang_up()
            if time.monotonic() >= deadline:
                if busy:
                    log.warning("%d request(s) still in service after %g s; stopping anyway",
                                busy, grace_s)
                break
            wasyncore.poll2(0.05, self._map)
        self.task_dispatcher.shutdown(cancel_pending=True, timeout=0.5)
        wasyncore.close_all(self._map)

    def stop(self) -> None:
        """Begin the graceful stop; safe in a signal handler (one write to a pipe)."""
        self.stopping = True
        self.pull_trigger()

    def readable(self) -> bool:
        # Replaces waitress's maintenance (wall-clock, every 30 s, idle only) and its
        # connection_limit (a full server stops accepting): see handle_accept.
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + CHECK_INTERVAL_S
            for channel in list(self.active_channels.values()):
                try:
                    channel.check_deadlines(now)
                except Exception:  # one connection's bug must not end the loop
                    log.exception("closing %s after an error in its deadline check",
                                  channel.addr[0])
                    channel.hang_up(reset=True)
        return self.accepting and not self.stopping

    def handle_error(self) -> None:
        # waitress's dispatcher would log one line and close the listening socket:
        # the server would run on, accepting nothing.
        log.exception("error while accepting a connection; accepting on")

    def handle_accept(self) -> None:
        try:
            pair = self.accept()
        except OSError as exc:  # out of file descriptors, say; once a minute in the log
            if time.monotonic() - self._accept_failed_at > 60:
                self._accept_failed_at = time.monotonic()
                log.warning("cannot accept connections: %s", exc.strerror or exc)
            return
        if pair is None:
            return
        conn, addr = pair
        accepted = False
        try:
            if self._admit(client_key(addr[0])):
                self.set_socket_options(conn)
                self.channel_class(self, conn, addr, self.adj, map=self._map)
                accepted = True
        except OSError:  # the client left already
            pass
        finally:
            if not accepted:
                conn.close()

    def _admit(self, client: str) -> bool:
        open_ = [c for c in self.active_channels.values() if not c.hanging_up]
        if sum(1 for c in open_ if c.client == client) >= self.limits.max_per_client:
            if client not in self._capped:
                self._capped.add(client)
                log.warning("refusing connections from %s: it has %d open "
                            "(server.max_connections_per_client)", client,
                            self.limits.max_per_client)
            return False
        self._capped.discard(client)
        if len(open_) < self.limits.max_connections:
            self._full = False
            return True
        waiting = [c for c in open_ if c.evictable()]
        if not self._full:
            self._full = True
            log.warning("%d connections open (server.max_connections): %s",
                        len(open_), "closing the ones that waited longest without a request"
                        if waiting else "every one is in service, refusing new ones")
        if not waiting:
            return False
        min(waiting, key=Channel.waiting_since).hang_up(reset=True)
        return True
