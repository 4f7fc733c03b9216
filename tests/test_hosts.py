"""server.allowed_hosts: requests naming another host get 421 (DNS rebinding)."""
from __future__ import annotations

import socket

import pytest
import requests

from conftest import assert_problem
from picam_api.config import from_mapping
from picam_api.errors import ConfigError

HOSTNAME = socket.gethostname().lower()
SHORT_NAME = HOSTNAME.split(".")[0]


def get(client, path: str, host: str, local: str | None = None, **kwargs):
    overrides = {"SERVER_ADDR": local} if local else {}
    return client.get(path, headers={"Host": host, **kwargs.pop("headers", {})},
                      environ_overrides=overrides, **kwargs)


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "127.9.9.9",
                                  "[::1]:8000", HOSTNAME, f"{SHORT_NAME}.local:8000",
                                  SHORT_NAME.upper()])
def test_by_default_this_machine_s_names_and_loopback_are_served(client, host):
    assert get(client, "/api/v1/health", host).status_code == 200


@pytest.mark.parametrize("host", ["rebind.attacker.example", "rebind.attacker.example:8000",
                                  f"{SHORT_NAME}.attacker.example", "192.0.2.11", "[2001:db8::1]",
                                  "a b", "localhost:http", "[::1"])
def test_any_other_host_gets_421_before_auth(client, host):
    response = get(client, "/api/v1/info", host)
    body = assert_problem(response, 421)
    assert "server.allowed_hosts" in body["detail"]
    assert "WWW-Authenticate" not in response.headers  # no login prompt for a foreign page
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_address_the_connection_came_in_on_is_served(client):
    # A browser that typed the camera's LAN address: that address is no rebinding name.
    assert get(client, "/api/v1/health", "192.0.2.10:8000", local="192.0.2.10").status_code == 200
    assert get(client, "/api/v1/health", "192.0.2.10", local="::ffff:192.0.2.10").status_code == 200
    assert_problem(get(client, "/api/v1/health", "192.0.2.11", local="192.0.2.10"), 421)


def test_a_configured_list_adds_names_and_addresses(make_app, config):
    config["server"] = {"allowed_hosts": ["Cam.Example.org.", "*.home.arpa", "192.0.2.7"]}
    client = make_app(config).test_client()
    for host in ("cam.example.org", "CAM.example.org:8000", "picam.home.arpa", "192.0.2.7:80",
                 "localhost", "127.0.0.1", HOSTNAME, f"{SHORT_NAME}.local"):
        assert get(client, "/api/v1/health", host).status_code == 200, host
    for host in ("home.arpa", "example.org", "www.example.org", "192.0.2.8"):
        assert_problem(get(client, "/api/v1/health", host), 421)


def test_a_star_serves_any_host(make_app, config):
    config["server"] = {"allowed_hosts": ["*"]}
    client = make_app(config).test_client()
    assert get(client, "/api/v1/health", "anything.example").status_code == 200


@pytest.mark.parametrize("value", [["cam.example:8000"], ["http://cam.example"], ["a b"],
                                   "cam.example", [1]])
def test_a_bad_allowed_hosts_is_a_config_error_naming_the_key(value):
    with pytest.raises(ConfigError, match="server.allowed_hosts"):
        from_mapping({"server": {"allowed_hosts": value}})


def test_open_aliases_need_allowed_hosts_set(make_app, config, caplog):
    config["stream"] = {"aliases_require_auth": False}
    client = make_app(config).test_client()
    # Without the list, a rebinding page could read the snapshot with any name the
    # default lets through: the aliases keep their auth, and the log says why.
    assert_problem(client.get("/?action=snapshot"), 401)
    assert "stream.aliases_require_auth = false is ignored" in caplog.text


def test_open_aliases_answer_only_the_named_hosts(make_app, config):
    config["stream"] = {"aliases_require_auth": False}
    config["server"] = {"allowed_hosts": ["cam.example.org"]}
    client = make_app(config).test_client()
    snapshot = get(client, "/?action=snapshot", "cam.example.org")
    assert snapshot.status_code == 200 and snapshot.content_type == "image/jpeg"
    assert_problem(get(client, "/?action=snapshot", "rebind.attacker.example"), 421)


def test_a_foreign_host_gets_421_over_http(server):
    response = requests.get(server.url + "/api/v1/health",
                            headers={"Host": "rebind.attacker.example"}, timeout=10)
    assert_problem(response, 421)
    assert requests.get(server.url + "/api/v1/health", timeout=10).status_code == 200
