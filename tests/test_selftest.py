"""``picam-api selftest`` over the simulated Pi (tests/simcam) and through a running server."""
from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from conftest import BIN, ServerProcess, free_port
from picam_api import cli
from picam_api.camera import pi_faults as faults


def _config(tmp_path, port: int, data_dir=None) -> str:
    path = tmp_path / "selftest.toml"
    path.write_text(f'[server]\nport = {port}\n'
                    f'[storage]\ndata_dir = "{data_dir or tmp_path / "data"}"\nreserve_mb = 0\n'
                    f'[camera]\nbackend = "picamera2"\ncapture_timeout_s = 1.0\n')
    return str(path)


def _meminfo(tmp_path, world) -> str:
    import simcam

    path = tmp_path / "meminfo"
    path.write_text(simcam.meminfo(world))
    return str(path)


def _checks(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


@pytest.mark.parametrize("sim", [{"sensors": ["imx708"], "cma_mib": 256}], indirect=True)
def test_selftest_passes_on_a_camera_module_3(sim, tmp_path):
    import simcam

    done = subprocess.run([str(BIN / "picam-api"), "selftest", "--json", "--config",
                           _config(tmp_path, free_port()), "--meminfo", _meminfo(tmp_path, sim)],
                          env=simcam.environ(sensors=["imx708"], cma_mib=256),
                          capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"], done.stdout + done.stderr
    assert report["mode"] == "local" and "opened here" in report["note"]
    checks = _checks(report)
    assert checks["picamera2"]["status"] == "PASS"
    assert checks["picamera2"]["data"]["picamera2"] == "0.3.38"
    camera = checks["camera"]
    assert camera["status"] == "PASS" and camera["data"]["model"] == "imx708"
    assert camera["data"]["modes"] == [[1536, 864, 10], [2304, 1296, 10], [4608, 2592, 10]]
    assert checks["still"]["status"] == "PASS" and checks["still"]["data"]["af_state"] == 2
    assert (checks["still"]["data"]["width"], checks["still"]["data"]["height"]) == (1920, 1080)
    assert (checks["full still"]["data"]["width"], checks["full still"]["data"]["height"]) == \
        (4608, 2592)
    assert checks["stream"]["data"]["fps"] > 0
    memory = checks["memory"]
    assert memory["status"] == "PASS" and memory["data"]["cma_total"] == 256 * 2**20
    needed = memory["data"]["needed"]
    assert {key.split("-")[0] for key in needed} == {"still", "video"}
    assert needed["still-4608x2592"] == 14929920 + 35831808  # main and raw, one buffer each
    assert not [c for c in report["checks"] if c["status"] == "FAIL"]


@pytest.mark.parametrize("sim, failing, fix", [
    ({"busy": True}, "camera", faults.BUSY_FIX),
    ({"unplugged": True}, "camera", faults.CABLE_FIX),
    ({"dma_heap": False}, "camera", faults.DEVICES_FIX),
    ({"cma_mib": 32}, "camera", faults.CMA_FIX),
    ({"frontend_timeout": 0}, "still", faults.FRAMES_FIX),
], indirect=["sim"])
def test_selftest_fails_with_the_fix_for_each_fault(sim, failing, fix, tmp_path, capsys):
    code = cli.main(["selftest", "--config", _config(tmp_path, free_port()),
                     "--meminfo", _meminfo(tmp_path, sim)])
    text = capsys.readouterr().out
    assert code == 1
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["FAIL", failing.split()[0]])
    assert lines[at + 1].split("fix: ", 1)[1] == fix, text
    if fix == faults.CMA_FIX:  # the memory line says so too
        assert any(line.startswith("FAIL  memory") for line in lines), text


def test_selftest_asks_the_running_service_instead_of_opening_the_camera(tmp_path):
    server = ServerProcess(tmp_path).start()
    try:
        done = subprocess.run([str(BIN / "picam-api"), "selftest", "--json", "--config",
                               str(server.config_file), "--meminfo", "/nonexistent"],
                              capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    report = json.loads(done.stdout)
    assert report["mode"] == "service" and "ask it over HTTP" in report["note"], done.stdout
    checks = _checks(report)
    assert checks["camera"]["status"] == "WARN"  # the server runs the mock camera
    assert checks["camera"]["data"]["backend"] == "mock"
    assert checks["still"]["status"] == "PASS" and "through the service" in checks["still"]["detail"]
    assert (checks["full still"]["data"]["width"], checks["full still"]["data"]["height"]) == \
        (4608, 2592)
    assert checks["stream"]["status"] == "PASS" and checks["stream"]["data"]["fps"] > 0
    assert "picamera2" not in checks  # nothing here touched a camera
    assert done.returncode == 0, done.stdout
    with sqlite3.connect(server.data_dir / "picam.db") as db:  # its token is revoked
        assert db.execute("SELECT COUNT(*) FROM tokens").fetchone() == (0,)
