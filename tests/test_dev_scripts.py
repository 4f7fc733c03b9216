"""scripts/serve and scripts/picam-api, from a checkout: one data dir for both.

The scripts run from a checkout of their own (a copy of scripts/ and setup.cfg,
on this test run's .venv), so its ./var is that checkout's, and nothing here
touches the developer's own ./var.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import basic, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def checkout(tmp_path) -> Path:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "picam-api").exists():
        pytest.fail(f"run the suite with scripts/test: {venv} has no picam-api")
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "scripts", root / "scripts")
    shutil.copy2(REPO / "setup.cfg", root / "setup.cfg")
    (root / ".venv").symlink_to(venv)
    # scripts/test installed the test extra, which holds everything scripts/serve
    # installs; its stamp tells _venv.sh that this venv is up to date.
    base_stamp = venv / ".installed-base"
    if not base_stamp.exists() or (REPO / "setup.cfg").stat().st_mtime > base_stamp.stat().st_mtime:
        base_stamp.touch()
    return root


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items()
            if not key.startswith("PICAM_") and key not in ("STATE_DIRECTORY", "XDG_DATA_HOME")}


def test_serve_prints_its_port_and_the_command_line_shares_its_data_dir(checkout):
    port = free_port()
    server = subprocess.Popen([str(checkout / "scripts" / "serve"), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=_env(), start_new_session=True)
    try:
        banner = [server.stdout.readline() for _ in range(3)]
        urls = re.findall(r"http://[^\s/]+", "".join(banner))
        assert urls and set(urls) == {f"http://127.0.0.1:{port}"}, banner
        assert f"data in {checkout / 'var'}" in banner[0]
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(url + "/api/v1/health", timeout=1).ok
            except requests.ConnectionError:
                return False
        wait_for(up, 60, "scripts/serve answering")

        added = subprocess.run([str(checkout / "scripts" / "picam-api"), "user", "add", "alice",
                                "--password-stdin"], input="alice-password\n", text=True,
                               capture_output=True, env=_env(), timeout=60)
        assert added.returncode == 0, added.stderr
        assert added.stdout.strip() == f"added alice (viewer) in data dir {checkout / 'var'}"
        info = requests.get(url + "/api/v1/info", headers=basic("alice", "alice-password"),
                            timeout=10)
        assert info.status_code == 200, info.text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
