"""The ``picam-api`` command: users (also while a server runs) and ``config check``."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from picam_api import __version__, cli
from picam_api.accounts import INITIAL_PASSWORD_FILE
from picam_api.config import ENV_KEYS, load_config

from conftest import ADMIN_PASSWORD, BIN, basic

ENV_NAMES = ("PICAM_CONFIG", "PICAM_DATA_DIR", "PICAM_HOST", "PICAM_PORT",
             "PICAM_CAMERA_BACKEND", "STATE_DIRECTORY")


@pytest.fixture
def data_dir(config, tmp_path, monkeypatch) -> Path:
    """The CLI's environment: PICAM_DATA_DIR names the test config's data dir."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PICAM_DATA_DIR", config["storage"]["data_dir"])
    return Path(config["storage"]["data_dir"])


@pytest.fixture
def run(capsys, monkeypatch):
    """``run(*argv, stdin=...)`` -> (exit code, stdout, stderr)."""
    def run_cli(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run_cli


def assert_one_error_line(code: int, err: str, *expected: str) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("picam-api:")
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0]
    return lines[0]


def status(client, headers, path="/api/v1/info") -> int:
    return client.get(path, headers=headers).status_code


# -- users ---------------------------------------------------------------------------


def test_user_added_while_the_server_runs_can_log_in(app, data_dir, run):
    client = app.test_client()
    carol = basic("carol", "carol-password")
    assert status(client, carol) == 401

    code, out, err = run("user", "add", "carol", "--role", "viewer", "--password-stdin",
                         stdin="carol-password\n")
    assert code == 0, err
    assert "carol" in out
    # The app that was already running sees the new user at once, with its role.
    assert status(client, carol) == 200
    assert client.post("/api/v1/photos", headers=carol, json={}).status_code == 403


def test_user_added_before_start_can_log_in(make_app, config, data_dir, run):
    code, _, err = run("user", "add", "dave", "--role", "operator", "--password-stdin",
                       stdin="dave-password\n")
    assert code == 0, err
    client = make_app(config).test_client()
    dave = basic("dave", "dave-password")
    assert status(client, dave) == 200
    assert client.patch("/api/v1/camera", headers=dave, json={"quality": 60}).status_code == 200


def test_user_add_defaults_to_viewer(app, data_dir, run):
    assert run("user", "add", "erin", "--password-stdin", stdin="erin-password\n")[0] == 0
    client = app.test_client()
    erin = basic("erin", "erin-password")
    assert status(client, erin) == 200
    assert client.post("/api/v1/photos", headers=erin, json={}).status_code == 403


def test_password_keeps_inner_spaces(app, data_dir, run):
    assert run("user", "add", "fay", "--password-stdin", stdin=" a pass phrase \r\n")[0] == 0
    assert status(app.test_client(), basic("fay", " a pass phrase ")) == 200


@pytest.fixture
def prompt(monkeypatch):
    """A terminal on stdin whose password prompts answer ``prompt(*answers)``."""
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def answer(*answers: str) -> None:
        replies = iter(answers)
        monkeypatch.setattr(sys, "stdin", Terminal())
        monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(replies))
    return answer


def test_password_from_the_prompt(app, data_dir, run, prompt):
    prompt("prompt-password", "prompt-password")
    assert run("user", "add", "gil")[0] == 0
    assert status(app.test_client(), basic("gil", "prompt-password")) == 200


def test_prompted_passwords_that_differ_change_nothing(app, data_dir, run, prompt):
    prompt("prompt-password", "other-password")
    code, _, err = run("user", "add", "gil")
    assert_one_error_line(code, err, "differ")
    assert status(app.test_client(), basic("gil", "prompt-password")) == 401


def test_user_list_shows_names_and_roles(app, data_dir, run):
    run("user", "add", "carol", "--role", "viewer", "--password-stdin", stdin="carol-password\n")
    run("user", "add", "dave", "--role", "operator", "--password-stdin", stdin="dave-password\n")
    code, out, err = run("user", "list")
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1] for line in out.strip().splitlines()}
    assert rows == {"admin": "operator", "carol": "viewer", "dave": "operator"}
    assert "password" not in out.lower() and ADMIN_PASSWORD not in out


def test_user_passwd_changes_password_and_revokes_tokens(app, data_dir, run):
    client = app.test_client()
    run("user", "add", "carol", "--password-stdin", stdin="carol-password\n")
    old = basic("carol", "carol-password")
    assert status(client, old) == 200  # now in the credential cache
    token = client.post("/api/v1/tokens", headers=old, content_type="application/json").json["token"]
    admin_token = client.post("/api/v1/tokens", headers=basic("admin", ADMIN_PASSWORD),
                              content_type="application/json").json["token"]

    code, out, err = run("user", "passwd", "carol", "--password-stdin", stdin="carol-new-pass\n")
    assert code == 0, err
    assert "carol" in out
    assert status(client, old) == 401
    assert status(client, basic("carol", "carol-new-pass")) == 200
    assert status(client, {"Authorization": f"Bearer {token}"}) == 401
    # Other users' tokens stay.
    assert status(client, {"Authorization": f"Bearer {admin_token}"}) == 200


def test_user_remove(app, data_dir, run):
    client = app.test_client()
    run("user", "add", "carol", "--password-stdin", stdin="carol-password\n")
    carol = basic("carol", "carol-password")
    assert status(client, carol) == 200
    token = client.post("/api/v1/tokens", headers=carol, content_type="application/json").json["token"]
    code, out, err = run("user", "remove", "carol")
    assert code == 0, err
    assert status(client, carol) == 401
    assert status(client, {"Authorization": f"Bearer {token}"}) == 401
    assert "carol" not in run("user", "list")[1]


@pytest.mark.parametrize("argv, stdin, expected", [
    (["user", "add", "admin", "--password-stdin"], "long-enough-pw\n", "admin"),
    (["user", "remove", "nobody"], None, "nobody"),
    (["user", "passwd", "nobody", "--password-stdin"], "long-enough-pw\n", "nobody"),
    (["user", "add", "shorty", "--password-stdin"], "short\n", "password"),
    (["user", "add", "empty", "--password-stdin"], "", "password"),
    (["user", "add", "bad name", "--password-stdin"], "long-enough-pw\n", "name"),
    (["user", "add", "../etc", "--password-stdin"], "long-enough-pw\n", "name"),
    (["user", "add", "x" * 65, "--password-stdin"], "long-enough-pw\n", "name"),
])
def test_user_errors_are_one_line_exit_2(app, data_dir, run, argv, stdin, expected):
    before = run("user", "list")[1]
    code, out, err = run(*argv, stdin=stdin)
    assert_one_error_line(code, err, expected)
    assert out == ""
    assert run("user", "list")[1] == before


def test_user_passwd_short_password_keeps_the_old_one(app, data_dir, run):
    code, _, err = run("user", "passwd", "admin", "--password-stdin", stdin="short\n")
    assert_one_error_line(code, err, "password")
    assert status(app.test_client(), basic("admin", ADMIN_PASSWORD)) == 200


def test_unknown_role_is_refused(data_dir, run):
    with pytest.raises(SystemExit) as caught:
        run("user", "add", "carol", "--role", "god", "--password-stdin", stdin="carol-password\n")
    assert caught.value.code == 2


def test_cli_and_server_agree_on_the_data_dir_from_a_config_file(make_app, tmp_path,
                                                                 data_dir, run, monkeypatch):
    monkeypatch.delenv("PICAM_DATA_DIR")
    elsewhere = tmp_path / "from-config"
    config_file = tmp_path / "picam.toml"
    config_file.write_text(f'[storage]\ndata_dir = "{elsewhere}"\nreserve_mb = 0\n'
                           f'[camera]\nbackend = "mock"\n')
    code, _, err = run("user", "add", "--config", str(config_file), "carol", "--password-stdin",
                       stdin="carol-password\n")
    assert code == 0, err
    assert (elsewhere / "picam.db").exists()
    assert not data_dir.exists()
    # PICAM_CONFIG names the same file for the CLI as for the server.
    monkeypatch.setenv("PICAM_CONFIG", str(config_file))
    assert "carol" in run("user", "list")[1]
    client = make_app(load_config()).test_client()
    assert status(client, basic("carol", "carol-password")) == 200


def test_cli_uses_picam_data_dir(make_app, config, data_dir, run):
    assert run("user", "add", "carol", "--password-stdin", stdin="carol-password\n")[0] == 0
    assert (data_dir / "picam.db").exists()
    client = make_app(config).test_client()
    assert status(client, basic("carol", "carol-password")) == 200


def test_unusable_data_dir_is_one_line(tmp_path, data_dir, run, monkeypatch):
    # A file where the data dir should be.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("PICAM_DATA_DIR", str(blocker / "data"))
    code, _, err = run("user", "list")
    assert_one_error_line(code, err, "storage.data_dir")


def test_broken_database_is_one_line(data_dir, run):
    # Something that is not an SQLite database where the database should be.
    data_dir.mkdir(parents=True)
    (data_dir / "picam.db").write_bytes(b"not a database" * 100)
    code, _, err = run("user", "add", "carol", "--password-stdin", stdin="carol-password\n")
    assert_one_error_line(code, err, "picam.db")


# -- config check ----------------------------------------------------------------------


def test_config_check_accepts_a_good_file(tmp_path, data_dir, run):
    path = tmp_path / "good.toml"
    path.write_text('[server]\nport = 8123\n[camera]\nbackend = "mock"\n')
    code, out, err = run("config", "check", str(path))
    assert code == 0, err
    assert out.startswith("config ok")
    assert "8123" in out and "mock" in out
    assert err == ""


def test_config_check_starts_nothing(tmp_path, data_dir, run):
    path = tmp_path / "good.toml"
    path.write_text(f'[storage]\ndata_dir = "{tmp_path / "never-made"}"\n')
    assert run("config", "check", str(path))[0] == 0
    assert not (tmp_path / "never-made").exists()


@pytest.mark.parametrize("toml, key", [
    ("[server]\nbogus = 1\n", "server.bogus"),
    ("[bogus]\nx = 1\n", "bogus"),
    ('[server]\nport = "x"\n', "server.port"),
    ("[server]\nport = 70000\n", "server.port"),
    ("[server]\nport = 0\n", "server.port"),
    ("[server]\nport = 80.5\n", "server.port"),
    ('[camera]\nbackend = "webcam"\n', "camera.backend"),
    ("[camera.mock]\nhang = 3\n", "camera.mock.hang"),
    ("server = 5\n", "server"),
    ("[server\nport = 1\n", "invalid TOML"),
    ('[server]\nport = 1\nport = 2\n', "invalid TOML"),
])
def test_config_check_rejects_bad_files_with_one_line(tmp_path, data_dir, run, toml, key):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    code, out, err = run("config", "check", str(path))
    line = assert_one_error_line(code, err, key, str(path))
    assert out == ""
    assert len(line) < 300


def test_config_check_missing_file(tmp_path, data_dir, run):
    missing = tmp_path / "missing.toml"
    code, _, err = run("config", "check", str(missing))
    assert_one_error_line(code, err, str(missing))


def test_config_check_bad_environment_override(tmp_path, data_dir, run, monkeypatch):
    path = tmp_path / "good.toml"
    path.write_text("[server]\nport = 8123\n")
    monkeypatch.setenv("PICAM_PORT", "eighty")
    code, _, err = run("config", "check", str(path))
    assert_one_error_line(code, err, "PICAM_PORT", "server.port")


def test_config_check_as_a_real_command(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nport = 70000\n")
    result = subprocess.run([str(BIN / "picam-api"), "config", "check", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("picam-api:") and "server.port" in lines[0]
    assert result.stdout == ""


# -- the first hour: version, help, the data dir, no terminal -----------------------


def _cli(*argv: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``picam-api`` as a user runs it, in a session of its own: no controlling terminal."""
    return subprocess.run([str(BIN / "picam-api"), *argv], capture_output=True, text=True,
                          timeout=60, start_new_session=True, env=env, **kwargs)


def test_version():
    result = _cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"picam-api {__version__}"


def test_help_names_the_data_dir_the_config_search_and_every_variable(data_dir):
    result = _cli("serve", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"In this environment: {data_dir}" in text
    assert "--config FILE, else $PICAM_CONFIG, else /etc/picam-api/config.toml" in text
    for name in (*ENV_KEYS, "PICAM_ADMIN_PASSWORD", "GPIOZERO_PIN_FACTORY", "STATE_DIRECTORY",
                 "XDG_DATA_HOME"):
        assert name in text


@pytest.mark.parametrize("argv", [[], ["serve"], ["config"], ["config", "check"], ["user"],
                                  ["user", "add"], ["user", "list"], ["user", "remove"],
                                  ["user", "passwd"]])
def test_help_has_no_literal_backticks(argv):
    result = _cli(*argv, "--help")
    assert result.returncode == 0 and "usage: picam-api" in result.stdout
    assert "`" not in result.stdout


def test_user_add_with_no_terminal_and_no_password_stdin_is_one_line(data_dir):
    result = _cli("user", "add", "alice", stdin=subprocess.DEVNULL)
    assert_one_error_line(result.returncode, result.stderr, "--password-stdin")
    assert not data_dir.exists()  # nothing was made for a command that failed


def test_user_list_on_a_missing_data_dir_says_so_and_makes_nothing(data_dir, run):
    code, out, err = run("user", "list")
    assert code == 0 and out == ""
    assert err.strip() == f"data dir {data_dir}: no users yet (no database there; nothing " \
                          f"was made)"
    assert not data_dir.exists()
    code, _, err = run("user", "passwd", "admin", "--password-stdin", stdin="long-enough-pw\n")
    assert_one_error_line(code, err, str(data_dir), "no user named 'admin'")
    assert not data_dir.exists()


def test_user_commands_name_the_data_dir(app, data_dir, run):
    code, out, _ = run("user", "add", "carol", "--password-stdin", stdin="carol-password\n")
    assert out.strip() == f"added carol (viewer) in data dir {data_dir}"
    code, out, err = run("user", "list")
    assert err.strip() == f"data dir {data_dir}: 2 user(s)"
    assert [line.split("\t")[0] for line in out.splitlines()] == ["admin", "carol"]
    code, out, _ = run("user", "remove", "carol")
    assert out.strip() == f"removed carol from data dir {data_dir}"


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path, data_dir, run, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PICAM_DATA_DIR", str(blocker))
    for argv in (["user", "list"], ["user", "add", "carol", "--password-stdin"]):
        code, _, err = run(*argv, stdin="carol-password\n")
        assert_one_error_line(code, err, f"storage.data_dir: {blocker} is a file, not a folder")


def test_changing_the_admin_password_removes_the_initial_password_file(
        make_app, config, data_dir, run, monkeypatch):
    monkeypatch.delenv("PICAM_ADMIN_PASSWORD")
    make_app(config)
    initial = data_dir / INITIAL_PASSWORD_FILE
    assert initial.exists()
    code, out, err = run("user", "passwd", "admin", "--password-stdin", stdin="a-new-password\n")
    assert code == 0, err
    assert not initial.exists()
    assert f"removed {initial}" in err


def test_a_stale_initial_password_file_is_removed_at_start(make_app, config, data_dir,
                                                           monkeypatch, caplog):
    monkeypatch.delenv("PICAM_ADMIN_PASSWORD")
    make_app(config).extensions["picam"].shutdown()
    initial = data_dir / INITIAL_PASSWORD_FILE
    # Changed some other way than "user passwd" (an older release): the file is stale.
    first = make_app(config).extensions["picam"]
    first.accounts.set_password("admin", "changed-elsewhere")
    first.shutdown()
    assert initial.exists()
    make_app(config)
    assert not initial.exists()
    assert f"removed {initial}: the admin password has been changed" in caplog.text


def test_an_initial_password_file_that_still_works_is_kept(make_app, config, data_dir,
                                                           monkeypatch):
    monkeypatch.delenv("PICAM_ADMIN_PASSWORD")
    make_app(config).extensions["picam"].shutdown()
    make_app(config)
    assert (data_dir / INITIAL_PASSWORD_FILE).exists()


def test_admin_password_set_after_the_first_start_is_ignored_and_the_log_says_why(
        make_app, config, monkeypatch, caplog):
    make_app(config).extensions["picam"].shutdown()
    assert "PICAM_ADMIN_PASSWORD is set but ignored" not in caplog.text
    monkeypatch.setenv("PICAM_ADMIN_PASSWORD", "another-password")
    client = make_app(config).test_client()
    assert "PICAM_ADMIN_PASSWORD is set but ignored: it chooses the admin password on the " \
           "first start only, when there are no users" in caplog.text
    assert status(client, basic("admin", "another-password")) == 401
    assert status(client, basic("admin", ADMIN_PASSWORD)) == 200
