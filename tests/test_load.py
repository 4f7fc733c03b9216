"""scripts/load in its short form: 6 clients for 8 s against a server it starts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "scripts" / "load.py"


def test_a_short_load_run_has_no_server_or_connection_errors(tmp_path, long_run):
    report = tmp_path / "load.json"
    duration = "60" if long_run else "8"
    result = subprocess.run([sys.executable, str(SCRIPT), "--clients", "6", "--duration", duration,
                             "--json", str(report)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    load = json.loads(report.read_text())
    assert load["server_errors"] == 0 and load["connection_errors"] == 0
    operations = load["operations"]
    assert {"post_photo", "list_photos", "get_image", "patch_gpio", "stream_10_parts"} <= set(operations)
    assert all(op["requests"] > 0 and op["errors"] == 0 for op in operations.values()), operations
    # Images are fetched again with their ETag, and come back 304.
    assert operations["get_image"]["statuses"].get("304", 0) > 0
    assert load["timelapse"]["frames_captured"] > 0
    assert "p99 ms" in result.stdout


def test_it_refuses_a_server_that_is_not_on_this_machine():
    result = subprocess.run([sys.executable, str(SCRIPT), "--url", "http://192.0.2.1:8000",
                             "--password", "x", "--duration", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "loopback" in result.stderr
