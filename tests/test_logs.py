"""The service's log: plain lines that journald stores well, and never a secret."""
from __future__ import annotations

import os
import re
from pathlib import Path

import requests

from conftest import ADMIN_PASSWORD, ServerProcess
from picam_api.accounts import INITIAL_PASSWORD_FILE

STAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def test_under_journald_lines_carry_no_timestamp(tmp_path, monkeypatch):
    process = ServerProcess(tmp_path)
    # systemd names the stream it connected to stderr as "device:inode".
    process.log.touch()
    stat = process.log.stat()
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    process.start()
    assert process.stop() == 0
    lines = process.log.read_text().splitlines()
    # The HTTP server's lines and the app's, in one shape: "LEVEL logger: message".
    assert f"INFO picam_api.server: listening on {process.url}" in lines, lines
    assert "INFO picam_api.server: stopping on SIGTERM" in lines
    assert "INFO picam_api.app: picam-api stopped" in lines
    assert all(re.match(r"^[A-Z]+ [\w.]+: ", line) for line in lines), lines


def test_elsewhere_every_line_is_stamped_once(server):
    server.stop()
    lines = server.log.read_text().splitlines()
    assert any(line.endswith(f"INFO picam_api.server: listening on {server.url}") for line in lines)
    assert all(STAMPED.match(line) for line in lines), lines


def test_passwords_and_tokens_never_reach_the_log(server):
    wrong = "not-the-password-" + os.urandom(4).hex()
    for _ in range(3):
        assert requests.get(server.url + "/api/v1/info", auth=("admin", wrong),
                            timeout=10).status_code == 401
    response = requests.post(server.url + "/api/v1/tokens", auth=("admin", ADMIN_PASSWORD),
                             json={}, timeout=10)
    assert response.status_code == 201
    token = response.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(server.url + "/api/v1/info", headers=bearer, timeout=10).status_code == 200
    assert requests.delete(server.url + "/api/v1/tokens/current", headers=bearer,
                           timeout=10).status_code == 204
    # A revoked token is a rejected one, which is logged (without the token).
    assert requests.get(server.url + "/api/v1/info", headers=bearer, timeout=10).status_code == 401
    server.stop()

    log = server.log.read_text()
    assert "failed Basic login for user 'admin'" in log
    assert "rejected bearer token" in log
    for secret in (wrong, ADMIN_PASSWORD, token):
        assert secret not in log


def test_a_generated_admin_password_goes_to_its_file_only(make_app, config, monkeypatch, caplog):
    monkeypatch.delenv("PICAM_ADMIN_PASSWORD")
    make_app(config)
    password = (Path(config["storage"]["data_dir"]) / INITIAL_PASSWORD_FILE).read_text().strip()
    assert INITIAL_PASSWORD_FILE in caplog.text
    assert password not in caplog.text


def test_a_failed_capture_is_logged_with_the_request(client, admin_headers, mock_camera, caplog):
    mock_camera.fail_rate = 1.0
    response = client.get("/api/v1/snapshot.jpg?width=64&height=48", headers=admin_headers)
    assert response.status_code == 503
    assert "GET /api/v1/snapshot.jpg: the camera returned a failed frame" in caplog.text
