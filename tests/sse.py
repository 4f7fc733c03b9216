"""A Server-Sent Events client for the tests: a raw socket, so it sees exactly what the server sends."""
from __future__ import annotations

import json
import socket
import time


class SseClient:
    """GET an event stream and read it event by event (comments counted apart)."""

    def __init__(self, port: int, path: str = "/api/v1/events", headers: dict | None = None,
                 timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        self.headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        self._buffer = b""
        self.comments: list[str] = []
        self.retry: int | None = None

    def body(self) -> bytes:
        """The rest of a short (error) response."""
        if self.chunked:
            data = b""
            while (size := int(self.file.readline(), 16)):
                data += self.file.read(size)
                self.file.readline()
            return data
        return self.file.read(int(self.headers.get("content-length", 0)))

    def next(self, timeout: float = 10.0) -> dict:
        """The next event: {"id", "event", "data"} with data parsed as JSON."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n\n" not in self._buffer:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                self._buffer += self._read()
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            fields: dict = {}
            for line in block.decode().split("\n"):
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "":
                    self.comments.append(value)
                elif name == "retry":
                    self.retry = int(value)
                else:
                    fields[name] = value
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                return fields

    def events(self, count: int, timeout: float = 10.0) -> list[dict]:
        return [self.next(timeout) for _ in range(count)]

    def _read(self) -> bytes:
        if not self.chunked:
            data = self.file.read1(65536)
        else:
            size = int(self.file.readline(), 16)
            data = self.file.read(size)
            self.file.readline()
        if not data:
            raise EOFError("the server ended the stream")
        return data

    def close(self) -> None:
        self.file.close()
        self.sock.close()
