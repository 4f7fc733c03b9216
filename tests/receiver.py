"""A webhook receiver for the tests: a real HTTP server that records what it is sent.

``status`` is what it answers; ``delay_s`` how long it takes; ``stop()`` and
``start()`` take it down and bring it back on the same port.
"""
from __future__ import annotations

import http.server
import json
import threading
import time

from conftest import free_port


class Receiver:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[dict] = []
        self.status = 204
        self.delay_s = 0.0
        self.lock = threading.Lock()
        self.server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> "Receiver":
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay_s)
                with receiver.lock:
                    receiver.received.append({"path": self.path, "headers": dict(self.headers),
                                              "body": body, "json": json.loads(body),
                                              "at": time.monotonic()})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self) -> list[dict]:
        with self.lock:
            return [r["json"] for r in self.received]
