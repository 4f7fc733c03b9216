"""scripts/install.sh and the hardened unit under a real systemd, in a VM.

A Debian bookworm (Raspberry Pi OS is bookworm underneath) boots to systemd
under QEMU; a Pi user "pi" runs `sudo scripts/install.sh` from a checkout in its
home, and each scenario is checked from inside (systemctl, journalctl, the
files) and from outside, over HTTP through the port forward to 127.0.0.1. The
scenarios share one boot and run in this file's order: each leaves the service
installed, healthy and with its original config, except the last two, which
reboot and uninstall. The time-lapse "vm-lapse" that the kill scenario starts
runs on through the later ones. See docs/install-vm.md.
"""
from __future__ import annotations

import io
import json
import math
import re
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from conftest import wait_for

pytestmark = pytest.mark.timeout(900)  # the first one builds the image and boots the VM

REPO = Path(__file__).resolve().parent.parent.parent
SERVICE = "picam-api"
CHECKOUT = "/home/pi/picam-api"
CONFIG = "/etc/picam-api/config.toml"
UNIT = "/etc/systemd/system/picam-api.service"
MEMORY_DROPIN = "/etc/systemd/system/picam-api.service.d/memory.conf"
CGROUP = "/sys/fs/cgroup/system.slice/picam-api.service"
DATABASE = "/var/lib/picam-api/picam.db"
ADMIN_PASSWORD = "vm-admin-password"
ADMIN = ("admin", ADMIN_PASSWORD)
VIEWER = ("alice", "vm-viewer-password")
JOB = "vm-lapse"
# A directory the service's user owns but that its sandbox must keep it out of.
BAIT = "/srv/picam-bait"


def _unit_seconds(key: str) -> int:
    [value] = re.findall(rf"^{key}=(\d+)s$", (REPO / "systemd/picam-api.service").read_text(),
                         re.M)
    return int(value)


RESTART_SEC = _unit_seconds("RestartSec")
WATCHDOG_SEC = _unit_seconds("WatchdogSec")


def test_fresh_install_runs_a_healthy_hardened_service(vm):
    vm.sh(f"printf '%s\\n' {ADMIN_PASSWORD} >/home/pi/admin-password")
    started = time.monotonic()
    install = _sudo(vm, f"{CHECKOUT}/scripts/install.sh", "--mock", "--admin-password-file",
                    "/home/pi/admin-password", timeout=900)
    print(f"install.sh took {time.monotonic() - started:.0f} s\n{install.stdout}")
    assert "healthy: the camera works" in install.stdout
    assert "Log in as: admin, with the password from /home/pi/admin-password" in install.stdout

    assert _show(vm, "ActiveState", "SubState", "UnitFileState", "NRestarts") == {
        "ActiveState": "active", "SubState": "running", "UnitFileState": "enabled",
        "NRestarts": "0"}
    health = requests.get(vm.url + "/api/v1/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    info = requests.get(vm.url + "/api/v1/info", auth=ADMIN, timeout=30)
    assert info.status_code == 200 and info.json()["backend"] == "mock"
    assert requests.get(vm.url + "/api/v1/info", timeout=30).status_code == 401

    # The score the README states, now from systemd itself rather than --offline.
    security = vm.run("systemd-analyze", "security", "--no-pager", SERVICE).stdout
    score = re.search(r"Overall exposure level for picam-api.service: (\d+\.\d) (\w+)", security)
    print(score.group(0))
    assert f"`systemd-analyze security` scores it {score.group(1)} {score.group(2)}" in \
        (REPO / "README.md").read_text()

    # journald stamps each line; ours carry no timestamp of their own.
    # A line with a stamp of its own would start "2026-12-01 10:07:33,512 INFO ...".
    ours = [entry["MESSAGE"] for entry in _journal(vm) if entry["_PID"] != "1"]
    assert any("camera open: mock" in line for line in ours), ours
    for line in ours:
        assert re.match(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ", line), line


def test_sandbox_keeps_writes_in_its_own_dirs_and_opens_only_camera_devices(vm):
    # The unit's own settings on a probe, as root would start it: systemd-run -p
    # for each line of [Service] except those about the process's life. The
    # service stops meanwhile: the probe shares its RuntimeDirectory=.
    sandbox = [f"--property={line}" for line in _service_settings(vm)]
    # Bait that the picam user may write as far as file modes go.
    vm.sh(f"install -d -o picam -g picam {BAIT} /home/pi/picam-bait /var/log/picam-bait")
    vm.run("systemctl", "stop", SERVICE)
    try:
        confined = _probe(vm, sandbox)
        # The same probe without the sandbox: the user and groups alone.
        control = _probe(vm, ["--property=User=picam", "--property=Group=picam",
                              "--property=SupplementaryGroups=video gpio"])
    finally:
        vm.run("systemctl", "start", SERVICE)
        vm.run("rm", "-rf", "/home/pi/picam-bait", "/var/log/picam-bait")

    baits = {BAIT, "/home/pi/picam-bait", "/var/log/picam-bait"}
    assert baits <= set(control["writable"]), control["writable"]
    assert control["open"]["/dev/vda"] == "ok"  # group disk (below) may read the disk
    # With the sandbox, only these: its state and runtime dirs, its private
    # /tmp and /var/tmp, and the shared-memory mounts of /dev, whose files
    # RemoveIPC= deletes when the service stops.
    allowed = ("/var/lib/picam-api", "/run/picam-api", "/tmp", "/var/tmp", "/dev/shm",
               "/dev/mqueue")
    outside = [d for d in confined["writable"]
               if not any(d == a or d.startswith(a + "/") for a in allowed)]
    assert outside == [], outside
    assert {"/var/lib/picam-api", "/run/picam-api"} <= set(confined["writable"])
    for bait in baits:
        assert confined["write"][bait] != "ok", confined["write"]
    # DevicePolicy=closed with the camera's and GPIO's device classes: vivid's
    # /dev/video* and /dev/media* open, the disk does not, whatever the groups.
    assert confined["open"]["/dev/video0"] == "ok"
    assert confined["open"]["/dev/media0"] == "ok"
    assert confined["open"]["/dev/vda"] == "EPERM"
    assert confined["open"]["/dev/null"] == "ok"
    _wait_healthy(vm)


def test_kill_9_restarts_it_and_a_running_time_lapse_resumes(vm):
    created = requests.post(vm.url + "/api/v1/timelapses", auth=ADMIN, timeout=30, json={
        "name": JOB, "interval_s": 2, "width": 320, "height": 240})
    assert created.status_code == 201, created.text
    _eventually(lambda: _job(vm)["frames_captured"] >= 2, 60, "two frames")
    before = _show(vm, "MainPID", "NRestarts")

    vm.run("systemctl", "kill", "--signal=KILL", SERVICE)
    _eventually(lambda: _show(vm, "NRestarts")["NRestarts"] == "1", 60, "a restart")
    _wait_healthy(vm)
    assert _show(vm, "MainPID")["MainPID"] != before["MainPID"]
    killed = _job(vm)
    assert killed["state"] == "running"
    _eventually(lambda: _job(vm)["frames_captured"] > killed["frames_captured"], 60,
             "a frame after the restart")
    # The frames due while it was down count as missed; none is taken twice.
    assert _job(vm)["frames_missed"] >= 1
    assert any("status=9/KILL" in line for line in _systemd_lines(vm)), _systemd_lines(vm)


def test_a_hung_camera_stops_the_watchdog_pings_and_systemd_restarts_it(vm):
    _set_job_state(vm, "paused")  # its frames would all fail meanwhile
    original = _config(vm)
    _write_config(vm, original.replace("# capture_timeout_s = 10.0", "capture_timeout_s = 2.0")
                  + "\n[camera.mock]\nhang = true\n")
    vm.run("systemctl", "restart", SERVICE)
    _wait_healthy(vm)
    since = _now(vm)
    for _ in range(3):  # watchdog.TIMEOUTS_IN_A_ROW captures that time out
        response = requests.get(vm.url + "/api/v1/snapshot.jpg", auth=ADMIN, timeout=60)
        assert response.status_code == 503, response.text
    # The camera is mended meanwhile, as it were: the restart brings the old config back.
    _write_config(vm, original)
    _eventually(lambda: _show(vm, "NRestarts")["NRestarts"] == "1", WATCHDOG_SEC + 60,
                "the watchdog's restart")
    _wait_healthy(vm)

    entries = _journal(vm, since)
    dead = _first(entries, "camera path is dead")
    timeout = _first(entries, "Watchdog timeout")
    started = _first(entries, "Started picam-api")
    print(f"watchdog timeout {timeout - dead:.1f} s after 'camera path is dead', "
          f"running again {started - timeout:.1f} s later")
    # The pings stop at "dead"; the last one came at most one interval (WatchdogSec/2)
    # before, so systemd gives up at most WatchdogSec after it.
    assert 0 <= timeout - dead <= WATCHDOG_SEC + 2, (dead, timeout)
    _set_job_state(vm, "running")


def test_a_bad_config_stops_it_with_one_line_and_no_restart_loop(vm):
    original = _config(vm)
    mistakes = {
        ("port = 8000", 'port = "eighty"'): "server.port: must be int (got 'eighty')",
        # ProtectSystem=strict: a data dir outside StateDirectory= is read-only even
        # when the user owns it; start-up refuses it rather than failing later.
        ('# data_dir = ""', f'data_dir = "{BAIT}"'):
            f"storage.data_dir: {BAIT} is not writable by this user",
    }
    vm.run("systemctl", "stop", SERVICE)
    for n, ((good, bad), error) in enumerate(mistakes.items(), 1):
        assert good in original
        _write_config(vm, original.replace(good, bad))
        since = _now(vm)
        assert vm.run("systemctl", "start", SERVICE, check=False).rc != 0
        # systemd decides at the exit: a restart to come is SubState "auto-restart";
        # "failed" is final. Then, once, long enough for a restart to have come.
        assert _show(vm, "SubState")["SubState"] == "failed"
        if n == len(mistakes):
            time.sleep(RESTART_SEC * 2)
        assert _show(vm, "ActiveState", "SubState", "Result", "ExecMainStatus",
                     "NRestarts") == {
            "ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
            "ExecMainStatus": "2", "NRestarts": "0"}
        ours = [entry["MESSAGE"] for entry in _journal(vm, since) if entry["_PID"] != "1"]
        assert len(ours) == 1 and ours[0].startswith("picam-api: ") and error in ours[0], ours
    _write_config(vm, original)
    vm.run("systemctl", "start", SERVICE)
    _wait_healthy(vm)


def test_a_memory_burst_within_the_cap_is_survived_and_one_past_it_restarts_it(vm):
    # The cap in force is the one install.sh's drop-in computes from this VM's RAM:
    # half of MemTotal, in MiB (the unit itself sets none).
    [total_kb] = re.findall(r"^MemTotal:\s+(\d+) kB$", vm.run("cat", "/proc/meminfo").stdout,
                            re.M)
    cap = int(total_kb) // 2048 * 2**20
    shown = _show(vm, "MemoryMax", "DropInPaths")
    assert shown["DropInPaths"].split() == [MEMORY_DROPIN], shown
    assert int(shown["MemoryMax"]) == cap, (shown, total_kb)
    assert int(vm.run("cat", f"{CGROUP}/memory.max").stdout) == cap
    assert cap >= 512 * 2**20, f"MemoryMax={cap}: too small for the burst below"
    # A mock sensor large enough to take the cap down with one photo: at its peak
    # a photo takes about 9 bytes a pixel (Pillow's RGB is 4, then the JPEG, on
    # top of the idle service), so twice the cap's bytes over 9 pixels.
    side = min(20000, -(-math.isqrt(2 * cap // 9) // 100) * 100)
    original = _config(vm)
    _write_config(vm, original + f"\n[camera.mock]\nsensor = [{side}, {side}]\n")
    vm.run("systemctl", "restart", SERVICE)
    _wait_healthy(vm)
    _write_config(vm, original)  # for the restart to come
    pid = _show(vm, "MainPID")["MainPID"]
    # About 300 MB at its peak: well above idle, well below the cap.
    photo = requests.post(vm.url + "/api/v1/photos", auth=ADMIN, timeout=300,
                          json={"width": 6000, "height": 6000})
    assert photo.status_code == 201, photo.text
    peak = int(vm.run("cat", f"{CGROUP}/memory.peak").stdout)
    print(f"MemoryMax={cap / 2**20:.0f} MiB; memory.peak after a 6000x6000 photo: "
          f"{peak / 2**20:.0f} MiB")
    assert 200 * 2**20 < peak < cap
    assert _show(vm, "MainPID", "NRestarts") == {"MainPID": pid, "NRestarts": "0"}

    # side x side needs about twice the cap: the kernel's OOM killer ends the worker.
    since = _now(vm)
    with pytest.raises(requests.ConnectionError):
        requests.post(vm.url + "/api/v1/photos", auth=ADMIN, timeout=300,
                      json={"width": side, "height": side})
    _eventually(lambda: _show(vm, "NRestarts")["NRestarts"] == "1", 60, "a restart")
    _wait_healthy(vm)
    entries = _journal(vm, since)
    print("\n".join(e["MESSAGE"] for e in entries if e["_PID"] == "1"
                    or "memory" in e["MESSAGE"]))
    assert _first(entries, "killed by the OOM killer")
    assert _first(entries, "Failed with result 'oom-kill'")


def test_upgrade_keeps_data_users_and_config_migrates_and_restarts(vm):
    _sudo(vm, "picam-api", "user", "add", VIEWER[0], "--role", "viewer", "--password-stdin",
          input=VIEWER[1] + "\n")
    photo = requests.post(vm.url + "/api/v1/photos", auth=ADMIN, timeout=60,
                          json={"width": 640, "height": 480}).json()
    image = requests.get(vm.url + photo["links"]["image"], auth=ADMIN, timeout=30).content
    # A change of the admin's, for the upgrade's restart to apply.
    _write_config(vm, _config(vm).replace("[storage]", "[storage]\nthumbnail_px = 200", 1))
    schema = _schema_version(vm)
    job = _job(vm)
    pid = _show(vm, "MainPID")["MainPID"]

    # The next release, as `git pull` brings it: one more migration, same version.
    vm.sh(f"runuser -u pi -- cp -a {CHECKOUT} {CHECKOUT}-next\n"
          f"printf '\\nMIGRATIONS.append(\"CREATE TABLE vm_upgrade (note TEXT)\")\\n' "
          f">>{CHECKOUT}-next/picam_api/db.py")
    # --mock again only because Debian, unlike Raspberry Pi OS, has no
    # python3-picamera2: without it install.sh refuses (it keeps the config anyway).
    started = time.monotonic()
    upgrade = _sudo(vm, f"{CHECKOUT}-next/scripts/install.sh", "--mock", timeout=900)
    print(f"install.sh (the upgrade) took {time.monotonic() - started:.0f} s\n{upgrade.stdout}")
    # Same requirements: picam-api alone is installed, into the venv it has.
    assert "(its requirements are installed)" in upgrade.stdout
    assert f"Keeping {CONFIG}" in upgrade.stdout
    assert "Keeping the existing users: admin alice" in upgrade.stdout
    assert "healthy: the camera works" in upgrade.stdout

    assert _show(vm, "MainPID")["MainPID"] != pid
    assert _schema_version(vm) == schema + 1
    assert ["vm_upgrade"] in _sql(vm, "SELECT name FROM sqlite_master WHERE type = 'table'")
    assert requests.get(vm.url + photo["links"]["image"], auth=VIEWER,
                        timeout=30).content == image
    new = requests.post(vm.url + "/api/v1/photos", auth=ADMIN, timeout=60,
                        json={"width": 640, "height": 480}).json()
    thumbnail = requests.get(vm.url + new["links"]["thumbnail"], auth=VIEWER, timeout=30)
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) == 200
    _eventually(lambda: _job(vm)["frames_captured"] > job["frames_captured"], 60,
                "a frame after the upgrade")
    vm.run("rm", "-rf", f"{CHECKOUT}-next")


def test_after_a_reboot_the_service_and_the_time_lapse_are_back(vm):
    job = _job(vm)
    boot = vm.boot_id()
    vm.reboot()
    assert vm.boot_id() != boot
    _wait_healthy(vm)
    assert _show(vm, "ActiveState", "NRestarts") == {"ActiveState": "active", "NRestarts": "0"}
    assert _job(vm)["state"] == "running"
    _eventually(lambda: _job(vm)["frames_captured"] > job["frames_captured"], 60,
             "a frame after the reboot")


def test_uninstall_keeps_data_and_config_unless_purged(vm):
    _sudo(vm, f"{CHECKOUT}/scripts/uninstall.sh")
    assert vm.run("systemctl", "status", SERVICE, check=False).rc == 4  # no such unit
    with pytest.raises(requests.ConnectionError):
        requests.get(vm.url + "/api/v1/health", timeout=10)
    for gone in (UNIT, MEMORY_DROPIN, "/opt/picam-api", "/usr/local/bin/picam-api"):
        assert vm.run("test", "-e", gone, check=False).rc == 1, gone
    for kept in (DATABASE, CONFIG, "/var/lib/picam-api/photos"):
        vm.run("test", "-e", kept)
    vm.run("id", "picam")  # a system user stays, as Debian keeps them

    _sudo(vm, f"{CHECKOUT}/scripts/uninstall.sh", "--purge")
    for gone in ("/var/lib/picam-api", "/etc/picam-api"):
        assert vm.run("test", "-e", gone, check=False).rc == 1, gone
    assert "picam-api" not in vm.run("systemctl", "list-units", "--all", "--no-legend").stdout


# -- helpers ----------------------------------------------------------------------

# Lines of [Service] about the life of the process, not about what it may touch.
LIFECYCLE = {"Type", "NotifyAccess", "ExecStart", "Restart", "RestartSec",
             "RestartPreventExitStatus", "WatchdogSec", "KillMode", "TimeoutStopSec"}

# Run by _probe as the sandboxed user: every directory it may write (access(2)
# answers EROFS on a read-only mount), a write into each bait, and device opens.
PROBE = r"""
import errno, json, os, sys
baits, devices = sys.argv[1].split(","), sys.argv[2].split(",")
writable = []
for top, dirs, _ in os.walk("/"):
    if top in ("/proc", "/sys"):
        dirs.clear()
    elif os.access(top, os.W_OK):
        writable.append(top)
def attempt(action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
write = {b: attempt(lambda: open(os.path.join(b, "probe"), "w").close()) for b in baits}
flags = {"/dev/vda": os.O_RDONLY}
opened = {d: attempt(lambda: os.close(os.open(d, flags.get(d, os.O_RDWR)))) for d in devices}
print(json.dumps({"writable": writable, "write": write, "open": opened}))
"""


def _probe(vm, properties: list[str]) -> dict:
    # Group disk may read /dev/vda by its file mode: only DevicePolicy= can refuse it.
    result = vm.run("systemd-run", "--wait", "--pipe", "--quiet", "--collect",
                    *properties, "--property=SupplementaryGroups=disk",
                    "/usr/bin/python3", "-c", PROBE,
                    f"{BAIT},/home/pi/picam-bait,/var/log/picam-bait",
                    "/dev/video0,/dev/media0,/dev/vda,/dev/null", timeout=300)
    return json.loads(result.stdout)


def _service_settings(vm) -> list[str]:
    settings, section = [], None
    for line in vm.run("cat", UNIT).stdout.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith(("#", ";")):
            if line.partition("=")[0] not in LIFECYCLE:
                settings.append(line)
    return settings


def _sudo(vm, *argv: str, **kwargs):
    """``sudo argv`` as the Pi's user pi types it."""
    return vm.run("runuser", "-u", "pi", "--", "sudo", *argv, **kwargs)


def _show(vm, *properties: str) -> dict[str, str]:
    out = vm.run("systemctl", "show", SERVICE, *(f"--property={p}" for p in properties)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _now(vm) -> str:
    return vm.run("date", "+%s.%N").stdout.strip()


def _journal(vm, since: str | None = None) -> list[dict]:
    """The unit's journal entries (systemd's, _PID 1, and the service's own)."""
    out = vm.run("journalctl", "--unit", SERVICE, "--output=json", "--no-pager",
                 *([f"--since=@{since}"] if since else [])).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _systemd_lines(vm) -> list[str]:
    return [entry["MESSAGE"] for entry in _journal(vm) if entry["_PID"] == "1"]


def _first(entries: list[dict], text: str) -> float:
    """The time (s) of the first entry containing ``text``."""
    for entry in entries:
        if text in entry["MESSAGE"]:
            return int(entry["__REALTIME_TIMESTAMP"]) / 1e6
    raise AssertionError(f"no {text!r} in the journal:\n" +
                         "\n".join(entry["MESSAGE"] for entry in entries))


def _config(vm) -> str:
    return vm.run("cat", CONFIG).stdout


def _write_config(vm, text: str) -> None:
    vm.run("sh", "-c", f"cat >{CONFIG}", input=text)


def _sql(vm, query: str) -> list[list]:
    """The rows of ``query`` on the service's database, as its user: a connection
    as root could leave root's WAL index files behind for the service to trip over."""
    return json.loads(vm.run("runuser", "-u", "picam", "--", "python3", "-c",
                             "import json, sqlite3, sys; print(json.dumps(sqlite3.connect("
                             "sys.argv[1]).execute(sys.argv[2]).fetchall()))",
                             DATABASE, query).stdout)


def _schema_version(vm) -> int:
    [[version]] = _sql(vm, "PRAGMA user_version")
    return version


def _wait_healthy(vm, timeout: float = 120) -> None:
    def healthy() -> bool:
        try:
            return requests.get(vm.url + "/api/v1/health", timeout=10).status_code == 200
        except requests.RequestException:
            return False
    _eventually(healthy, timeout, "health 200 from outside the VM")


def _eventually(predicate, timeout: float, what: str):
    """wait_for, with a pause between tries: each one is a command in the VM."""
    return wait_for(lambda: predicate() or time.sleep(0.5), timeout, what)


def _job(vm) -> dict:
    jobs = requests.get(vm.url + "/api/v1/timelapses", auth=ADMIN, timeout=30).json()["items"]
    [job] = [job for job in jobs if job["name"] == JOB]
    return job


def _set_job_state(vm, state: str) -> None:
    response = requests.patch(vm.url + _job(vm)["links"]["self"], auth=ADMIN, timeout=30,
                              json={"state": state})
    assert response.status_code == 200, response.text
