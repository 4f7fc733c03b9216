"""The camera checks through a running picam-api server, which holds the camera.

libcamera lets one process hold a camera, so while the service runs the
self-test asks it over its HTTP API instead of opening the camera. It signs in
with a short-lived token that it issues itself from the service's database (it
acts on the same data dir as ``picam-api user``) and revokes at the end.
"""
from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from .report import FAIL, PASS, WARN, Report

HTTP_TIMEOUT_S = 30.0  # a full-resolution still on a Pi Zero takes a few seconds
PROBE_TIMEOUT_S = 3.0
TOKEN_TTL_S = 300


def find_server(config: dict) -> str | None:
    """The base URL of a picam-api server answering on the configured address, or None."""
    host, port = config["server"]["host"], config["server"]["port"]
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    try:
        body = _json(base + "/api/v1/health", None, PROBE_TIMEOUT_S)
    except (OSError, ValueError):
        return None
    return base if isinstance(body, dict) and "camera" in body else None


def check_service(report: Report, config: dict, base: str, stream_s: float) -> None:
    health = _json(base + "/api/v1/health", None, HTTP_TIMEOUT_S)
    camera = health.get("camera", {})
    if not camera.get("ok"):
        report.add("camera", FAIL, f"the service's camera is unusable: {camera.get('error')}",
                   "the line above says what to do; `journalctl -u picam-api` has the rest")
        return
    with _token(config) as token:
        if token is None:
            report.add("camera", WARN, "the service's camera is open; stills and stream not "
                       "checked: no user in the service's database to sign in as, or no "
                       "access to it", "run it as the service user (`sudo picam-api "
                       "selftest`) after creating a user (`sudo picam-api user add NAME`)")
            return
        info = _json(base + "/api/v1/info", token, HTTP_TIMEOUT_S)
        cam = info["camera"]
        width, height = cam["sensor_size"]
        status = WARN if info["backend"] == "mock" else PASS
        report.add("camera", status, f"{cam['model']}, sensor {width}x{height}, in the "
                   f"service's {info['backend']} backend", "set camera.backend = \"picamera2\" "
                   "in /etc/picam-api/config.toml", backend=info["backend"], model=cam["model"],
                   sensor_size=[width, height])
        for name, query in (("still", ""), ("full still", f"?width={width}&height={height}")):
            if not _still(report, name, base + "/api/v1/snapshot.jpg" + query, token):
                return
        _stream(report, base + "/api/v1/stream.mjpg", token, stream_s)


def _still(report: Report, name: str, url: str, token: str) -> bool:
    from PIL import Image

    started = time.monotonic()
    try:
        data = _get(url, token, HTTP_TIMEOUT_S).read()
    except urllib.error.HTTPError as exc:
        report.add(name, FAIL, f"the service answered {exc.code}: {_problem(exc)}",
                   "the line above says what to do; `journalctl -u picam-api` has the rest")
        return False
    took = time.monotonic() - started
    size = Image.open(io.BytesIO(data)).size
    report.add(name, PASS, f"{size[0]}x{size[1]} JPEG, {len(data) // 1024} KiB in {took:.2f} s "
               f"(through the service)", seconds=round(took, 3), bytes=len(data),
               width=size[0], height=size[1])
    return True


def _stream(report: Report, url: str, token: str, stream_s: float) -> None:
    frames, started = 0, time.monotonic()
    try:
        with _get(url, token, HTTP_TIMEOUT_S) as response:
            while time.monotonic() - started < stream_s:
                line = response.readline()
                if not line:
                    break
                frames += line.lower().startswith(b"content-type: image/jpeg")
    except urllib.error.HTTPError as exc:
        report.add("stream", FAIL, f"the service answered {exc.code}: {_problem(exc)}",
                   "stream.max_clients may all be taken; `journalctl -u picam-api` has the rest")
        return
    fps = frames / (time.monotonic() - started)
    status = PASS if frames else FAIL
    report.add("stream", status, f"{fps:.1f} fps for {stream_s:g} s (through the service)",
               "`journalctl -u picam-api` says why the stream sent nothing", fps=round(fps, 2))


@contextlib.contextmanager
def _token(config: dict) -> Iterator[str | None]:
    """A viewer's bearer token for the service, issued from its database and revoked after."""
    from ..accounts import Accounts
    from ..db import Database

    path = Path(config["storage"]["data_dir"]) / "picam.db"
    token, accounts = None, None
    try:
        if path.exists():
            accounts = Accounts(Database(path), TOKEN_TTL_S)
            users = accounts.list_users()
            user = accounts.get_user(users[0]["name"]) if users else None
            token = accounts.issue_token(user)[0] if user else None
    except (OSError, sqlite3.Error):
        token = None
    try:
        yield token
    finally:
        if accounts is not None:
            with contextlib.suppress(OSError, sqlite3.Error):
                if token:
                    accounts.revoke_token(token)
                accounts.db.close()


def _get(url: str, token: str | None, timeout: float):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _json(url: str, token: str | None, timeout: float):
    try:
        with _get(url, token, timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:  # health answers 503 with its body
        return json.load(exc)


def _problem(exc: urllib.error.HTTPError) -> str:
    try:
        return json.load(exc).get("detail", exc.reason)
    except ValueError:
        return str(exc.reason)
