"""scripts/install.sh and uninstall.sh run for real, and the systemd unit checked.

The install goes into a throwaway root with --skip-apt --skip-systemctl (this
machine has no Pi and no systemd as PID 1), once per module: it builds a venv,
which takes a while. The system user picam it creates is real and is left in
place, as uninstall.sh leaves it; another test run may be using it meanwhile.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from conftest import free_port
from notify_socket import NotifySocket

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "picam-api.service"
INSTALLED_UNIT = "etc/systemd/system/picam-api.service"
CONFIG = "etc/picam-api/config.toml"
STATE = "var/lib/picam-api"
ADMIN_PASSWORD = "installer-admin-password"


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        # .ci/run installs it; say how rather than fail on a bare machine.
        print(f"{name} is missing: apt-get install {package}")
        pytest.skip(f"{name} is not installed")
    return path


def _run(*argv, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                            timeout=600, **kwargs)
    if check:
        assert result.returncode == 0, f"{argv} exited {result.returncode}:\n" \
                                       f"{result.stdout}\n{result.stderr}"
    return result


MEMORY_DROPIN = "etc/systemd/system/picam-api.service.d/memory.conf"
# MemTotal as /proc/meminfo shows it on a 4 GB Pi 4 and on a 512 MB Pi Zero 2 W.
PI_4_4GB_KB, ZERO_2_W_KB = 3884944, 436824


def _install(root: Path, *options, mem_total_kb: int = PI_4_4GB_KB) -> subprocess.CompletedProcess:
    meminfo = root / "meminfo"
    meminfo.write_text(f"MemTotal:       {mem_total_kb} kB\nMemFree:         123456 kB\n")
    return _run(REPO / "scripts" / "install.sh", "--root", root, "--skip-apt",
                "--skip-systemctl", "--meminfo", meminfo, *options, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def root():
    """A root with picam-api installed by install.sh (mock camera, a free port).

    The last test of this module uninstalls it.
    """
    if os.geteuid() != 0:
        pytest.skip("install.sh must run as root (it creates the system user picam)")
    # Not under pytest's tmp dirs, which are private to root: the picam user
    # must reach the venv, the config and the data dir.
    root = Path(tempfile.mkdtemp(prefix="picam-api-root-"))
    root.chmod(0o755)
    password_file = root / "admin-password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    started = time.monotonic()
    result = _install(root, "--mock", "--port", free_port(), "--admin-password-file", password_file)
    print(f"install.sh took {time.monotonic() - started:.1f} s\n{result.stdout}")
    yield root
    shutil.rmtree(root, ignore_errors=True)


# -- the unit ---------------------------------------------------------------------


def test_installed_unit_passes_systemd_analyze_verify(root):
    # verify --root resolves ExecStart= in the throwaway root, and it needs the
    # targets the unit is ordered against there too.
    systemd_analyze = _tool("systemd-analyze", "systemd")
    units = root / "usr/lib/systemd/system"
    if not units.exists():
        shutil.copytree("/usr/lib/systemd/system", units, symlinks=True)
    result = _run(systemd_analyze, "verify", f"--root={root}", "picam-api.service")
    assert result.stdout + result.stderr == ""
    assert (root / INSTALLED_UNIT).read_bytes() == UNIT.read_bytes()


def test_unit_security_score_is_good_and_in_the_readme():
    result = _run(_tool("systemd-analyze", "systemd"), "security", "--offline=true", UNIT)
    score = re.search(r"Overall exposure level for picam-api.service: (\d+\.\d) (\w+)",
                      result.stdout)
    print(score.group(0))
    assert float(score.group(1)) <= 2.0, result.stdout
    assert f"`systemd-analyze security` scores it {score.group(1)} {score.group(2)}" in \
        (REPO / "README.md").read_text()


def test_scripts_pass_shellcheck():
    scripts = [p for p in (REPO / "scripts").iterdir() if p.suffix != ".py" and p.is_file()]
    assert {"install.sh", "uninstall.sh", "_system.sh", "serve", "test"} <= {p.name for p in scripts}
    _run(_tool("shellcheck", "shellcheck"), "-x", *scripts, REPO / ".ci" / "run", cwd=REPO)


# -- install.sh -------------------------------------------------------------------


def test_install_makes_the_user_venv_config_unit_and_admin(root):
    picam = pwd.getpwnam("picam")
    assert picam.pw_shell == "/usr/sbin/nologin"
    groups = _run("id", "-nG", "picam").stdout.split()
    assert {"picam", "video", "gpio"} <= set(groups)

    assert "serve" in _run(root / "opt/picam-api/venv/bin/picam-api", "--help").stdout
    config = (root / CONFIG).read_text()
    assert 'host = "0.0.0.0"' in config and 'backend = "mock"' in config
    assert (root / STATE).stat().st_uid == picam.pw_uid
    wrapper = (root / "usr/local/bin/picam-api").read_text()
    assert "runuser -u picam" in wrapper and "/opt/picam-api/venv/bin/picam-api" in wrapper

    users = _picam_cli(root, "user", "list").stdout
    assert re.match(r"admin\toperator\t", users), users

    # Half the RAM of this (fake) 4 GB Pi as MemoryMax=, in a drop-in that says why.
    dropin = (root / MEMORY_DROPIN).read_text()
    assert _unit_settings(root / MEMORY_DROPIN) == {"MemoryMax": [f"{PI_4_4GB_KB // 2048}M"]}
    assert "half the RAM" in dropin and "MemoryMax" not in _unit_settings(root / INSTALLED_UNIT)


def test_installed_command_line_serves_as_the_unit_says(root):
    with _started_as_unit(root) as (url, notifications):
        assert any(m.startswith("READY=1") for m in notifications.receive(2.0))
        with requests.Session() as http:
            http.auth = ("admin", ADMIN_PASSWORD)
            assert http.get(url + "/api/v1/info", timeout=10).json()["backend"] == "mock"
            assert http.post(url + "/api/v1/photos", json={"width": 64, "height": 48},
                             timeout=30).status_code == 201


def test_rerun_upgrades_in_place_and_keeps_config_data_and_users(root):
    with _started_as_unit(root) as (url, _):
        photo = requests.post(url + "/api/v1/photos", auth=("admin", ADMIN_PASSWORD),
                              json={"width": 64, "height": 48}, timeout=30).json()
    config = root / CONFIG
    config.write_text(config.read_text().replace('level = "INFO"', 'level = "DEBUG"'))
    other_password = root / "other-password"
    other_password.write_text("a-different-password\n")
    (root / "opt/picam-api/venv/bin/picam-api").unlink()  # an old install, to be replaced

    result = _install(root, "--port", free_port(), "--admin-password-file", other_password,
                      mem_total_kb=ZERO_2_W_KB)
    assert "Keeping" in result.stdout and "Keeping the existing users: admin" in result.stdout
    # Under 1 GB the limit is left out: the kernel's OOM killer would act first.
    assert not (root / MEMORY_DROPIN).exists() and "No MemoryMax= for 426 MiB" in result.stdout
    assert 'level = "DEBUG"' in config.read_text()
    assert 'backend = "mock"' in config.read_text()  # not the default picamera2

    with _started_as_unit(root) as (url, _):
        with requests.Session() as http:
            http.auth = ("admin", ADMIN_PASSWORD)
            kept = http.get(url + photo["links"]["image"], timeout=10)
            assert kept.status_code == 200 and len(kept.content) == photo["bytes"]


def test_rerun_with_no_user_left_makes_an_admin_and_prints_its_password(root):
    _picam_cli(root, "user", "remove", "admin")
    result = _install(root)  # no terminal, no password file
    password = re.search(r"Log in as: admin / (\S+)   \(shown only now\)", result.stdout).group(1)
    with _started_as_unit(root) as (url, _):
        assert requests.get(url + "/api/v1/info", auth=("admin", password),
                            timeout=10).status_code == 200


def test_rerun_installs_picam_api_alone_unless_its_requirements_changed(root, tmp_path):
    # The next release as `git pull` brings it: new code, the same requirements.
    source = tmp_path / "picam-api"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", ".pytest_cache", "build", "*.egg-info"))
    (source / "picam_api" / "release_marker.py").write_text("RELEASE = 'next'\n")
    python = root / "opt/picam-api/venv/bin/python"
    same = _install(root, "--source", source)
    assert "(its requirements are installed)" in same.stdout, same.stdout
    assert _run(python, "-c", "from picam_api.release_marker import RELEASE; print(RELEASE)",
                cwd="/").stdout == "next\n"

    # One that needs a new dependency: the whole set is resolved and installed again.
    setup = source / "setup.cfg"
    setup.write_text(setup.read_text().replace("install_requires =\n",
                                               "install_requires =\n    iniconfig\n", 1))
    assert _run(python, "-c", "import iniconfig", check=False, cwd="/").returncode == 1
    changed = _install(root, "--source", source)
    assert f"from {source} and its requirements into" in changed.stdout, changed.stdout
    _run(python, "-c", "import iniconfig", cwd="/")
    # And the next run with those requirements installs picam-api alone again.
    assert "(its requirements are installed)" in _install(root, "--source", source).stdout


def test_install_refuses_politely(root):
    nobody = _run("runuser", "-u", "nobody", "--", REPO / "scripts" / "install.sh",
                  check=False)
    assert nobody.returncode == 1
    assert "run it as root: sudo" in nobody.stderr and "Traceback" not in nobody.stderr
    bad_port = _run(REPO / "scripts" / "install.sh", "--port", "http", check=False)
    assert bad_port.returncode == 1 and "--port needs a number" in bad_port.stderr
    unknown = _run(REPO / "scripts" / "install.sh", "--colour", check=False)
    assert unknown.returncode == 1 and "unknown option: --colour" in unknown.stderr
    if not Path("/run/systemd/system").exists():
        no_systemd = _run(REPO / "scripts" / "install.sh", "--root", root, "--skip-apt",
                          check=False)
        assert no_systemd.returncode == 1 and "systemd is not running" in no_systemd.stderr


def test_a_database_of_another_user_is_one_line_and_exit_2(root):
    # A data dir the service user may write, holding a picam.db that root made
    # (a "sudo picam-api ..." run by hand): SQLite could only fail deep inside.
    data_dir = root / "var/lib/made-by-root"
    data_dir.mkdir()
    data_dir.chmod(0o777)
    subprocess.run([root / "opt/picam-api/venv/bin/picam-api", "user", "add", "carol",
                    "--password-stdin"], input="carol-password\n", text=True, check=True,
                   env={**os.environ, "PICAM_DATA_DIR": str(data_dir)}, capture_output=True)
    assert (data_dir / "picam.db").stat().st_uid == 0
    for argv in (["user", "list"], ["serve", "--port", str(free_port())]):
        result = _run("runuser", "-u", "picam", "--", "env", f"PICAM_DATA_DIR={data_dir}",
                      root / "opt/picam-api/venv/bin/picam-api", *argv, "--config", root / CONFIG,
                      cwd="/", check=False)
        assert result.returncode == 2, result.stderr
        assert result.stdout == "" and "Traceback" not in result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line == (f"picam-api: storage.data_dir: {data_dir / 'picam.db'} belongs to root "
                        f"and this user (picam) cannot write it; run picam-api as root, or give "
                        f"the data dir to this user (nothing was changed)")


def test_uninstall_keeps_data_unless_purged(root):
    # Runs last: it takes the install away.
    uninstall = REPO / "scripts" / "uninstall.sh"
    assert (root / MEMORY_DROPIN).exists()
    _run(uninstall, "--root", root, "--skip-systemctl")
    assert not (root / "opt/picam-api").exists()
    assert not (root / INSTALLED_UNIT).exists()
    assert not (root / MEMORY_DROPIN).parent.exists()
    assert not (root / "usr/local/bin/picam-api").exists()
    assert (root / STATE / "picam.db").exists() and (root / CONFIG).exists()
    _run(uninstall, "--root", root, "--skip-systemctl", "--purge")
    assert not (root / STATE).exists() and not (root / CONFIG).exists()


# -- helpers ----------------------------------------------------------------------


def _picam_cli(root: Path, *argv) -> subprocess.CompletedProcess:
    """picam-api's command line as the wrapper runs it, on the root's paths."""
    return _run("runuser", "-u", "picam", "--", "env", f"STATE_DIRECTORY={root / STATE}",
                root / "opt/picam-api/venv/bin/picam-api", *argv, "--config", root / CONFIG,
                cwd="/")


def _unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _in_root(root: Path, value: str) -> str:
    return f"{root}{value}" if value.startswith("/") else value


@contextlib.contextmanager
def _started_as_unit(root: Path):
    """Start ExecStart= as systemd would from the installed unit: its user and
    groups, its Environment=, the directories it asks for, a notify socket; all
    paths inside ``root``. Yields the base URL and the notify socket; stops the
    server with SIGTERM, as KillMode=mixed does, and expects a clean exit."""
    unit = _unit_settings(root / INSTALLED_UNIT)
    [user], [group] = unit["User"], unit["Group"]
    picam = pwd.getpwnam(user)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "USER": user, "LOGNAME": user, "HOME": _in_root(root, picam.pw_dir),
           "SHELL": picam.pw_shell, "LANG": "C.UTF-8"}
    for assignments in unit.get("Environment", []):
        for assignment in shlex.split(assignments):
            name, _, value = assignment.partition("=")
            env[name] = _in_root(root, value)
    for kind, base in (("State", "/var/lib"), ("Runtime", "/run"), ("Configuration", "/etc")):
        [name] = unit[f"{kind}Directory"]
        directory = root / base.lstrip("/") / name
        if kind == "Runtime":  # systemd makes it at each start, for the service's user
            directory.mkdir(parents=True, exist_ok=True)
            shutil.chown(directory, user, group)
        env[f"{kind.upper()}_DIRECTORY"] = str(directory)
    [watchdog_sec] = unit["WatchdogSec"]
    env["WATCHDOG_USEC"] = str(int(watchdog_sec.rstrip("s")) * 1_000_000)
    notifications = NotifySocket.abstract()
    env["NOTIFY_SOCKET"] = notifications.address
    [exec_start] = unit["ExecStart"]
    argv = [_in_root(root, arg) for arg in shlex.split(exec_start)]
    [working_directory] = unit["WorkingDirectory"]
    log = (root / "server.log").open("ab")
    server = subprocess.Popen(
        argv, env=env, user=user, group=group, extra_groups=unit["SupplementaryGroups"][0].split(),
        umask=int(unit["UMask"][0], 8), cwd=_in_root(root, working_directory),
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{_configured_port(root)}"
        _wait_for_health(url, server, root)
        yield url, notifications
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, (root / "server.log").read_text()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        notifications.close()


def _configured_port(root: Path) -> int:
    return int(re.search(r"^port = (\d+)", (root / CONFIG).read_text(), re.M).group(1))


def _wait_for_health(url: str, server: subprocess.Popen, root: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, (root / "server.log").read_text()
        try:
            if requests.get(url + "/api/v1/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError((root / "server.log").read_text())
