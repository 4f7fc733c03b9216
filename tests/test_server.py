"""``picam-api serve`` as a real process: auth and photos over HTTP, clean shutdown."""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests
from PIL import Image

from conftest import ADMIN_PASSWORD, BIN, ServerProcess, free_port

AUTH = ("admin", ADMIN_PASSWORD)


def test_health_needs_no_auth(server):
    response = requests.get(server.url + "/api/v1/health", timeout=10)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_info_needs_auth(server):
    response = requests.get(server.url + "/api/v1/info", timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="picam-api"'
    assert requests.get(server.url + "/api/v1/info", auth=("admin", "wrong-password"),
                        timeout=10).status_code == 401
    response = requests.get(server.url + "/api/v1/info", auth=AUTH, timeout=10)
    assert response.status_code == 200
    assert response.json()["backend"] == "mock"


def test_bearer_token_over_http(server):
    response = requests.post(server.url + "/api/v1/tokens", auth=AUTH, json={}, timeout=10)
    assert response.status_code == 201
    bearer = {"Authorization": f"Bearer {response.json()['token']}"}
    assert requests.get(server.url + "/api/v1/info", headers=bearer, timeout=10).status_code == 200
    assert requests.delete(server.url + "/api/v1/tokens/current", headers=bearer,
                           timeout=10).status_code == 204
    assert requests.get(server.url + "/api/v1/info", headers=bearer, timeout=10).status_code == 401


def _files(root) -> set:
    return {p for p in root.rglob("*") if p.is_file() and not p.name.startswith("picam.db")}


def test_photo_round_trip(server):
    files_before = _files(server.data_dir)
    with requests.Session() as http:
        http.auth = AUTH
        response = http.post(server.url + "/api/v1/photos", json={"width": 320, "height": 240},
                             timeout=30)
        assert response.status_code == 201, response.text
        photo = response.json()
        assert response.headers["Location"] == photo["links"]["self"]

        meta = http.get(server.url + response.headers["Location"], timeout=10)
        assert meta.status_code == 200 and meta.json()["id"] == photo["id"]

        image = http.get(server.url + photo["links"]["image"], timeout=10)
        assert image.status_code == 200
        assert image.headers["Content-Type"] == "image/jpeg"
        assert len(image.content) == photo["bytes"]
        with Image.open(io.BytesIO(image.content)) as picture:
            assert picture.format == "JPEG"
            assert picture.size == (320, 240)
            picture.load()

        again = http.get(server.url + photo["links"]["image"],
                         headers={"If-None-Match": image.headers["ETag"]}, timeout=10)
        assert again.status_code == 304

        # The image is a file in the server's data dir...
        assert any(p.read_bytes() == image.content for p in _files(server.data_dir) - files_before)
        listing = http.get(server.url + "/api/v1/photos", timeout=10).json()
        assert [p["id"] for p in listing["items"]] == [photo["id"]]
        assert http.delete(server.url + photo["links"]["self"], timeout=10,
                           headers={"Content-Type": "application/json"}).status_code == 204
        assert http.get(server.url + photo["links"]["image"], timeout=10).status_code == 404
    # ...and is gone with the photo.
    assert _files(server.data_dir) == files_before


def test_errors_over_http_are_problems(server):
    response = requests.get(server.url + "/no/such/page", timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    response = requests.post(server.url + "/api/v1/photos", auth=AUTH, data="{oops",
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")


def _stops_cleanly(process: ServerProcess, sig: int) -> None:
    worker_log_before = process.log.read_text()
    started = time.monotonic()
    code = process.stop(sig, timeout=10)
    elapsed = time.monotonic() - started
    assert code == 0, process.log.read_text()
    assert elapsed < 8, f"took {elapsed:.1f} s"
    log = process.log.read_text()
    assert "Traceback" not in log
    # The worker shut the app down (camera closed, database closed).
    assert "picam-api stopped" in log[len(worker_log_before):]
    with pytest.raises(requests.ConnectionError):
        requests.get(process.url + "/api/v1/health", timeout=2)


def test_sigterm_stops_cleanly(server):
    # A request first, so the worker has the camera open.
    assert requests.post(server.url + "/api/v1/photos", auth=AUTH, json={"width": 64,
                         "height": 48}, timeout=30).status_code == 201
    _stops_cleanly(server, signal.SIGTERM)


def test_sigint_stops_cleanly(tmp_path):
    process = ServerProcess(tmp_path).start()
    try:
        assert requests.get(process.url + "/api/v1/snapshot.jpg", auth=AUTH,
                            timeout=30).status_code == 200
        _stops_cleanly(process, signal.SIGINT)
    finally:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def test_sigterm_during_a_slow_capture_stops_within_the_grace(tmp_path):
    process = ServerProcess(tmp_path, extra_toml="[camera.mock]\ndelay_s = 1.5\n").start()
    try:
        results = []
        thread = threading.Thread(target=lambda: results.append(requests.post(
            process.url + "/api/v1/photos", auth=AUTH, json={"width": 64, "height": 48},
            timeout=30).status_code))
        thread.start()
        time.sleep(0.6)  # the capture is under way (it takes 1.5 s)
        _stops_cleanly(process, signal.SIGTERM)
        thread.join(10)
        # Graceful: the request in flight was answered, not cut off.
        assert results == [201]
    finally:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def _serve(tmp_path, toml: str, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICAM_")}
    env["PICAM_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    return subprocess.run([str(BIN / "picam-api"), "serve", "--config", str(path), *extra],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("toml, key", [
    ('[server]\nport = "x"\n', "server.port"),
    ("[server]\nport = 70000\n", "server.port"),
    ('[camera]\nbackend = "webcam"\n', "camera.backend"),
    ("[server]\nthreads = 1\n", "server.threads"),
    ("[storage]\nnope = 1\n", "storage.nope"),
])
def test_bad_config_stops_serve_with_one_line(tmp_path, toml, key):
    result = _serve(tmp_path, toml)
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert key in lines[0] and lines[0].startswith("picam-api:")
    # Nothing started: the server never listened.
    assert "listening" not in output.lower()


def test_bad_command_line_port_stops_serve_with_one_line(tmp_path):
    result = _serve(tmp_path, '[camera]\nbackend = "mock"\n', "--port", "70000")
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and "server.port" in lines[0]


def test_unusable_data_dir_stops_serve_with_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _serve(tmp_path, f'[server]\nport = {free_port()}\n[storage]\n'
                              f'data_dir = "{blocker / "data"}"\n[camera]\nbackend = "mock"\n')
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1 and "storage.data_dir" in lines[0], output


def test_a_port_in_use_is_one_line_and_exit_1_so_systemd_tries_again(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(tmp_path, f'[server]\nport = {port}\n[storage]\ndata_dir = '
                                  f'"{tmp_path / "data"}"\n[camera]\nbackend = "mock"\n')
    assert result.returncode == 1  # not 2, which the unit does not restart
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    # The database was checked first (its log lines); then one line says what failed.
    assert [line for line in output.splitlines() if "picam_api.db" not in line] == [
        f"picam-api: cannot listen on 127.0.0.1:{port}: Address already in use; stop what "
        f"listens there, or choose another port (--port, PICAM_PORT or server.port)"]


def test_no_control_socket(tmp_path, monkeypatch):
    # gunicorn >= 25.1 opened one, through which the worker count could be changed,
    # at a path shared by every instance of the user: nothing of the kind may appear.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home))
    process = ServerProcess(tmp_path).start()
    try:
        assert list(home.iterdir()) == []
    finally:
        assert process.stop(signal.SIGTERM, timeout=10) == 0
