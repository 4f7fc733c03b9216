"""Fuzzing from the OpenAPI document: schemathesis with every check and every
phase against a real ``picam-api serve``, signed in as an operator, with the
login limiter on and hostile seeds mixed into the bodies (tests/fuzz_hooks.py).

The settings, and each status widened for one operation with the reason, are
in tests/schemathesis.toml; credentials come from tests/fuzz_hooks.py. A
failure prints schemathesis' report, with a curl line for each case and the
seed (``PICAM_FUZZ_SEED=<seed>`` runs the same cases again).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ADMIN_PASSWORD, BIN, ServerProcess

HERE = Path(__file__).parent
SERVER_TOML = """
[camera.mock]
sensor = [640, 480]
[auth]
# The login limiter is on, as users run it: it keys failures by address and user
# name, so ignored_auth's wrong credentials never lock out the fuzzer's operator.
# The token hook makes a token for each DELETE /api/v1/tokens/current.
tokens_per_minute = 10000
[timelapse]
# Low, so that the jobs the fuzzer creates run frames while it works.
min_interval_s = 0.2
[video]
# Clips the fuzzer records stay short and small.
max_duration_s = 2
width = 320
height = 240
fps = 10
max_clip_size = [640, 480]
[webhooks]
# The webhooks the fuzzer creates may deliver only to this host, by address: no
# name it makes up is looked up, no other host is sent anything.
allowed_hosts = ["127.0.0.1"]
allowed_networks = ["127.0.0.0/8"]
denied_networks = []
allow_hostnames = false
timeout_s = 1.0
[[gpio.devices]]
name = "status"
pin = 17
kind = "led"
[[gpio.devices]]
name = "lamp"
pin = 18
kind = "pwm"
[[gpio.devices]]
name = "door"
pin = 23
kind = "button"
"""


@pytest.mark.timeout(1900)  # --long runs 300 examples per operation and phase
def test_schemathesis_finds_nothing(tmp_path, long_run):
    server = ServerProcess(tmp_path, SERVER_TOML).start()
    env = {**os.environ, "PICAM_FUZZ_URL": server.url, "PICAM_FUZZ_USER": "admin",
           "PICAM_FUZZ_PASSWORD": ADMIN_PASSWORD,
           "SCHEMATHESIS_HOOKS": str(HERE / "fuzz_hooks.py")}
    command = [str(BIN / "st"), "--config-file", str(HERE / "schemathesis.toml"), "run",
               server.url + "/openapi.json", "--checks", "all",
               "--phases", "examples,coverage,fuzzing,stateful", "--no-color",
               "--max-examples", "300" if long_run else "40"]
    if os.environ.get("PICAM_FUZZ_SEED"):
        command += ["--seed", os.environ["PICAM_FUZZ_SEED"]]
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path,
                                timeout=1800 if long_run else 300)
    finally:
        server.stop()
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    # Every operation but the two endless streams (live view, events) was fuzzed.
    selected, total = map(int, re.search(r"Selected: (\d+)/(\d+)", report).groups())
    assert selected == total - 2 >= 26, report
    assert re.search(r"Tested: (\d+)", report).group(1) == str(selected), report
    # Nothing failed where no response shows it, such as a time-lapse frame.
    log = server.log.read_text()
    assert "Traceback" not in log, log
