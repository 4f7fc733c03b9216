import pytest

from picam_api.config import load_config, resolve_data_dir
from picam_api.errors import ConfigError


def test_defaults_without_file_or_env(tmp_path):
    config = load_config(path="/dev/null", env={"PICAM_DATA_DIR": str(tmp_path)})
    assert config["server"]["port"] == 8000
    assert config["camera"]["backend"] == "auto"
    assert config["storage"]["data_dir"] == str(tmp_path.resolve())


def test_file_then_environment_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[camera]\nbackend = "mock"\n')
    config = load_config(path, env={"PICAM_PORT": "9100"})
    assert config["server"]["port"] == 9100  # env beats file
    assert config["server"]["host"] == "0.0.0.0"  # file beats default
    assert config["camera"]["backend"] == "mock"


def test_picam_config_env_names_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[storage]\nreserve_mb = 7\n")
    assert load_config(env={"PICAM_CONFIG": str(path)})["storage"]["reserve_mb"] == 7


@pytest.mark.parametrize("toml, key", [
    ('[server]\nport = "x"\n', "server.port"),
    ("[server]\nport = 70000\n", "server.port"),
    ('[camera]\nbackend = "webcam"\n', "camera.backend"),
    ("[camera]\nmock.fail_rate = 2.0\n", "camera.mock.fail_rate"),
    ("[storage]\nnope = 1\n", "storage.nope"),
    ("[nope]\nx = 1\n", "nope"),
    ("[camera.mock]\nsensor = [1, 2, 3]\n", "camera.mock.sensor"),
])
def test_bad_value_is_one_line_naming_the_key(tmp_path, toml, key):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert key in message and "\n" not in message


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="PICAM_PORT: server.port"):
        load_config(env={"PICAM_PORT": "eighty", "PICAM_CONFIG": "/dev/null"})


def test_invalid_toml_and_missing_file_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    for path in (bad, tmp_path / "missing.toml"):
        with pytest.raises(ConfigError) as caught:
            load_config(path, env={})
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_data_dir_resolution_order(tmp_path):
    config = {"storage": {"data_dir": ""}}
    assert resolve_data_dir(config, {"STATE_DIRECTORY": f"{tmp_path}/a:{tmp_path}/b"}) == tmp_path / "a"
    assert resolve_data_dir(config, {"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "picam-api"
    assert resolve_data_dir({"storage": {"data_dir": str(tmp_path / "x")}},
                            {"STATE_DIRECTORY": "/elsewhere"}) == tmp_path / "x"
    assert resolve_data_dir(config, {"PICAM_DATA_DIR": ""}).name == "picam-api"
