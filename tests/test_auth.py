"""Auth: Basic and Bearer, roles, hashed secrets, the first admin, rate limit, cache."""
from __future__ import annotations

import datetime as dt
import os
import stat
import time
from pathlib import Path

import pytest

from picam_api.accounts import INITIAL_PASSWORD_FILE
from picam_api.auth import LoginGuard
from picam_api.errors import PicamError, TooManyFailures

from conftest import ADMIN_PASSWORD, PROBLEM, VIEWER_PASSWORD, basic


def _token(client, headers) -> str:
    response = client.post("/api/v1/tokens", headers=headers, content_type="application/json")
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.json["token"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_401(response) -> None:
    assert response.status_code == 401
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["status"] == 401 and body["title"] and body["type"] and body["detail"]


# -- Basic, public routes ------------------------------------------------------------


def test_no_credentials_is_401_problem_with_basic_challenge(client):
    response = client.get("/api/v1/info")
    _assert_401(response)
    assert response.headers["WWW-Authenticate"] == 'Basic realm="picam-api"'


def test_wrong_password_is_401(client):
    _assert_401(client.get("/api/v1/info", headers=basic("admin", "not-the-password")))


def test_unknown_user_is_401(client):
    _assert_401(client.get("/api/v1/info", headers=basic("nobody", ADMIN_PASSWORD)))


def test_right_password_is_200(client, admin_headers):
    response = client.get("/api/v1/info", headers=admin_headers)
    assert response.status_code == 200
    assert response.json["backend"] == "mock"


def test_malformed_authorization_header_is_401(client):
    for value in ("Basic !!!not-base64", "Basic", "Bearer", "Digest abc", "garbage"):
        _assert_401(client.get("/api/v1/info", headers={"Authorization": value}))


@pytest.mark.parametrize("path", ["/api/v1/health", "/openapi.json", "/docs"])
def test_public_routes_need_no_credentials(client, path):
    assert client.get(path).status_code == 200


# -- Bearer tokens ---------------------------------------------------------------------


def test_basic_credentials_buy_a_token_that_works(client, admin_headers):
    response = client.post("/api/v1/tokens", headers=admin_headers, content_type="application/json")
    assert response.status_code == 201
    token, expires_at = response.json["token"], response.json["expires_at"]
    assert len(token) >= 32
    assert expires_at.endswith("Z")
    info = client.get("/api/v1/info", headers=_bearer(token))
    assert info.status_code == 200
    # Each call makes a fresh token.
    assert _token(client, admin_headers) != token


def test_token_expiry_follows_config(make_app, config):
    config["auth"] = {"token_ttl_s": 3600}
    client = make_app(config).test_client()
    before = time.time()
    response = client.post("/api/v1/tokens", headers=basic("admin", ADMIN_PASSWORD),
                           content_type="application/json")

    expires = dt.datetime.fromisoformat(response.json["expires_at"].replace("Z", "+00:00"))
    assert before + 3600 - 5 <= expires.timestamp() <= time.time() + 3600 + 5


def test_auth_schemes_are_case_insensitive(client, admin_headers):
    token = _token(client, admin_headers)
    encoded = admin_headers["Authorization"].split()[1]
    for scheme in ("basic", "BASIC"):
        assert client.get("/api/v1/info",
                          headers={"Authorization": f"{scheme} {encoded}"}).status_code == 200
    for scheme in ("bearer", "BEARER"):
        assert client.get("/api/v1/info",
                          headers={"Authorization": f"{scheme} {token}"}).status_code == 200
    assert client.delete("/api/v1/tokens/current",
                         headers={"Authorization": f"bearer {token}"}).status_code == 204


def test_tokens_route_refuses_a_bearer(client, admin_headers):
    token = _token(client, admin_headers)
    response = client.post("/api/v1/tokens", headers=_bearer(token))
    _assert_401(response)


def test_unknown_bearer_is_401(client):
    _assert_401(client.get("/api/v1/info", headers=_bearer("not-a-real-token")))


def test_revoking_the_current_token(client, admin_headers):
    token = _token(client, admin_headers)
    other = _token(client, admin_headers)
    response = client.delete("/api/v1/tokens/current", headers=_bearer(token))
    assert response.status_code == 204
    _assert_401(client.get("/api/v1/info", headers=_bearer(token)))
    # Only the token used is revoked.
    assert client.get("/api/v1/info", headers=_bearer(other)).status_code == 200


def test_revoking_needs_a_bearer_not_basic(client, admin_headers):
    response = client.delete("/api/v1/tokens/current", headers=admin_headers, content_type="application/json")
    _assert_401(response)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert 'realm="picam-api"' in response.headers["WWW-Authenticate"]


def test_expired_token_is_401(client, services, admin_headers):
    token = _token(client, admin_headers)
    assert client.get("/api/v1/info", headers=_bearer(token)).status_code == 200
    with services.db.transaction() as conn:
        conn.execute("UPDATE tokens SET expires_at = ?", (time.time() - 1,))
    _assert_401(client.get("/api/v1/info", headers=_bearer(token)))


def test_token_of_removed_user_is_401(client, services, viewer_headers):
    token = _token(client, viewer_headers)
    services.accounts.remove_user("viewer")
    _assert_401(client.get("/api/v1/info", headers=_bearer(token)))
    assert services.db.conn.execute("SELECT COUNT(*) FROM tokens WHERE user = 'viewer'"
                                    ).fetchone()[0] == 0


# -- secrets at rest ---------------------------------------------------------------


def test_secrets_are_stored_hashed(client, services, admin_headers, viewer_headers):
    token = _token(client, viewer_headers)
    users = [dict(row) for row in services.db.conn.execute("SELECT * FROM users")]
    tokens = [dict(row) for row in services.db.conn.execute("SELECT * FROM tokens")]
    assert {u["name"] for u in users} == {"admin", "viewer"}
    assert len(tokens) == 1
    for row in users:
        for value in row.values():
            assert ADMIN_PASSWORD not in str(value) and VIEWER_PASSWORD not in str(value)
    for value in tokens[0].values():
        assert token not in str(value)
    # Salted: two users with the same password get different hashes.
    services.accounts.add_user("twin", VIEWER_PASSWORD)
    hashes = dict(services.db.conn.execute("SELECT name, password_hash FROM users"))
    assert hashes["twin"] != hashes["viewer"]
    # Nor anywhere in the files on disk (database and its WAL).
    for path in Path(services.data_dir).glob("picam.db*"):
        data = path.read_bytes()
        for secret in (ADMIN_PASSWORD, VIEWER_PASSWORD, token):
            assert secret.encode() not in data, path


# -- roles -------------------------------------------------------------------------


@pytest.fixture
def photo_id(client, admin_headers) -> str:
    response = client.post("/api/v1/photos", headers=admin_headers,
                           json={"width": 64, "height": 48})
    assert response.status_code == 201
    return response.json["id"]


def test_viewer_is_refused_operator_actions(client, viewer_headers, photo_id, services):
    token_headers = _bearer(_token(client, viewer_headers))
    for headers in (viewer_headers, token_headers):
        attempts = [
            client.post("/api/v1/photos", headers=headers, json={}),
            client.patch("/api/v1/camera", headers=headers, json={"quality": 50}),
            client.delete(f"/api/v1/photos/{photo_id}", headers=headers, content_type="application/json"),
        ]
        for response in attempts:
            assert response.status_code == 403, response.request.path
            assert response.mimetype == PROBLEM
            assert response.json["status"] == 403
    # Nothing happened.
    assert services.photos.stats()["count"] == 1
    assert client.get(f"/api/v1/photos/{photo_id}", headers=viewer_headers).status_code == 200


def test_viewer_may_read(client, viewer_headers, photo_id):
    token_headers = _bearer(_token(client, viewer_headers))
    for headers in (viewer_headers, token_headers):
        for path in ("/api/v1/info", "/api/v1/camera", "/api/v1/photos",
                     f"/api/v1/photos/{photo_id}", f"/api/v1/photos/{photo_id}/image",
                     f"/api/v1/photos/{photo_id}/thumbnail",
                     "/api/v1/snapshot.jpg?width=64&height=48"):
            assert client.get(path, headers=headers).status_code == 200, path


def test_operator_may_act(client, admin_headers, photo_id):
    assert client.patch("/api/v1/camera", headers=admin_headers,
                        json={"quality": 50}).status_code == 200
    assert client.delete(f"/api/v1/photos/{photo_id}", headers=admin_headers,
                         content_type="application/json").status_code == 204


# -- the first admin ------------------------------------------------------------------


def test_first_start_without_env_writes_a_random_admin_password(make_app, config, monkeypatch):
    monkeypatch.delenv("PICAM_ADMIN_PASSWORD")
    app = make_app(config)
    path = Path(config["storage"]["data_dir"]) / INITIAL_PASSWORD_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 12
    client = app.test_client()
    assert client.get("/api/v1/info", headers=basic("admin", password)).status_code == 200
    # admin is an operator.
    assert client.patch("/api/v1/camera", headers=basic("admin", password),
                        json={"quality": 70}).status_code == 200
    app.extensions["picam"].shutdown()

    # A second start keeps the user and the file as they are.
    again = make_app(config)
    assert path.read_text().strip() == password
    assert again.test_client().get("/api/v1/info",
                                   headers=basic("admin", password)).status_code == 200


def test_two_first_starts_make_different_passwords(make_app, tmp_path, config, monkeypatch):
    monkeypatch.delenv("PICAM_ADMIN_PASSWORD")
    passwords = []
    for name in ("one", "two"):
        data_dir = tmp_path / name
        make_app({**config, "storage": {**config["storage"], "data_dir": str(data_dir)}})
        passwords.append((data_dir / INITIAL_PASSWORD_FILE).read_text().strip())
    assert passwords[0] != passwords[1]


def test_initial_password_file_is_private_even_if_it_existed(make_app, config, monkeypatch):
    # Left behind from an earlier install (say, copied with a loose mode).
    monkeypatch.delenv("PICAM_ADMIN_PASSWORD")
    data_dir = Path(config["storage"]["data_dir"])
    data_dir.mkdir(parents=True)
    path = data_dir / INITIAL_PASSWORD_FILE
    path.write_text("stale\n")
    os.chmod(path, 0o644)
    app = make_app(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert password != "stale"
    assert app.test_client().get("/api/v1/info",
                                 headers=basic("admin", password)).status_code == 200


def test_first_start_with_env_password_writes_no_file(make_app, config, monkeypatch):
    monkeypatch.setenv("PICAM_ADMIN_PASSWORD", "from-the-environment")
    app = make_app(config)
    client = app.test_client()
    assert client.get("/api/v1/info",
                      headers=basic("admin", "from-the-environment")).status_code == 200
    assert not (Path(config["storage"]["data_dir"]) / INITIAL_PASSWORD_FILE).exists()
    # Later starts do not reset the password to the variable's value.
    app.extensions["picam"].accounts.set_password("admin", "changed-by-the-owner")
    app.extensions["picam"].shutdown()
    again = make_app(config).test_client()
    _assert_401(again.get("/api/v1/info", headers=basic("admin", "from-the-environment")))
    assert again.get("/api/v1/info",
                     headers=basic("admin", "changed-by-the-owner")).status_code == 200


def test_too_short_env_admin_password_names_the_variable(make_app, config, monkeypatch):
    monkeypatch.setenv("PICAM_ADMIN_PASSWORD", "short")
    with pytest.raises(PicamError) as caught:
        make_app(config)
    assert "PICAM_ADMIN_PASSWORD" in caught.value.detail
    assert "\n" not in caught.value.detail


# -- failed-login rate limit -------------------------------------------------------------


@pytest.fixture
def limited_client(make_app, config):
    config["auth"] = {"max_failures": 3, "failure_window_s": 1.0}
    return make_app(config).test_client()


def test_failed_logins_are_rate_limited(limited_client):
    client = limited_client
    good = basic("admin", ADMIN_PASSWORD)
    for _ in range(3):
        _assert_401(client.get("/api/v1/info", headers=basic("admin", "wrong-password")))
    response = client.get("/api/v1/info", headers=basic("admin", "wrong-password"))
    assert response.status_code == 429
    assert response.mimetype == PROBLEM
    assert response.json["status"] == 429 and response.json["detail"]
    retry = int(response.headers["Retry-After"])
    assert 1 <= retry <= 2
    # Even the right password is refused while locked out, Basic or Bearer...
    assert client.get("/api/v1/info", headers=good).status_code == 429
    assert client.post("/api/v1/tokens", headers=good, content_type="application/json").status_code == 429
    # ...but only for that client.
    other = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/api/v1/info", headers=good, environ_base=other).status_code == 200
    time.sleep(1.2)
    assert client.get("/api/v1/info", headers=good).status_code == 200


def test_tokens_are_never_locked_out(limited_client):
    # 256 random bits cannot be guessed: the limiter neither counts bad tokens...
    token = _token(limited_client, basic("admin", ADMIN_PASSWORD))
    for _ in range(5):
        _assert_401(limited_client.get("/api/v1/info", headers=_bearer("forged-token")))
    assert limited_client.get("/api/v1/info",
                              headers=basic("admin", ADMIN_PASSWORD)).status_code == 200
    # ...nor refuses a good one from an address locked out for passwords.
    for _ in range(4):
        limited_client.get("/api/v1/info", headers=basic("admin", "wrong-password"))
    assert limited_client.get("/api/v1/info",
                              headers=basic("admin", ADMIN_PASSWORD)).status_code == 429
    assert limited_client.get("/api/v1/info", headers=_bearer(token)).status_code == 200


def test_login_guard_memory_is_bounded():
    guard = LoginGuard(max_failures=3, window_s=60, max_keys=10)
    for n in range(100):
        guard.failed(f"192.0.2.{n}", "admin")
    assert len(guard._failures) <= 10
    # The newest clients are still counted.
    guard.failed("192.0.2.99", "admin")
    guard.failed("192.0.2.99", "admin")
    with pytest.raises(TooManyFailures):
        guard.check("192.0.2.99", "admin")


def test_requests_without_credentials_are_not_failures(limited_client):
    # Browsers and curl often try without credentials first.
    for _ in range(10):
        _assert_401(limited_client.get("/api/v1/info"))
    assert limited_client.get("/api/v1/info",
                              headers=basic("admin", ADMIN_PASSWORD)).status_code == 200


def test_failures_outside_the_window_are_forgotten(limited_client):
    for _ in range(2):
        _assert_401(limited_client.get("/api/v1/info", headers=basic("admin", "wrong-one")))
    time.sleep(1.1)
    for _ in range(2):
        _assert_401(limited_client.get("/api/v1/info", headers=basic("admin", "wrong-two")))
    assert limited_client.get("/api/v1/info",
                              headers=basic("admin", ADMIN_PASSWORD)).status_code == 200


# -- the credential cache ----------------------------------------------------------------


def test_valid_basic_credentials_hash_once(client, admin_headers, hash_calls):
    for _ in range(5):
        assert client.get("/api/v1/info", headers=admin_headers).status_code == 200
    assert hash_calls == [ADMIN_PASSWORD]


def test_wrong_password_is_always_checked(client, hash_calls):
    for _ in range(3):
        _assert_401(client.get("/api/v1/info", headers=basic("admin", "wrong-password")))
    assert hash_calls == ["wrong-password"] * 3


def test_unknown_user_costs_a_hash_too(client, hash_calls):
    _assert_401(client.get("/api/v1/info", headers=basic("nobody", "some-password")))
    assert hash_calls == ["some-password"]


def test_cache_off_hashes_every_time(make_app, config, hash_calls):
    config["auth"] = {"credential_cache_s": 0}
    client = make_app(config).test_client()
    for _ in range(3):
        assert client.get("/api/v1/info",
                          headers=basic("admin", ADMIN_PASSWORD)).status_code == 200
    assert len(hash_calls) == 3


def test_cache_entries_expire(make_app, config, hash_calls):
    config["auth"] = {"credential_cache_s": 1.0}
    client = make_app(config).test_client()
    headers = basic("admin", ADMIN_PASSWORD)
    assert client.get("/api/v1/info", headers=headers).status_code == 200
    assert client.get("/api/v1/info", headers=headers).status_code == 200
    assert len(hash_calls) == 1
    time.sleep(1.2)
    assert client.get("/api/v1/info", headers=headers).status_code == 200
    assert len(hash_calls) == 2


def test_password_change_beats_the_cache(client, services, viewer_headers):
    assert client.get("/api/v1/info", headers=viewer_headers).status_code == 200
    services.accounts.set_password("viewer", "a-new-password")
    _assert_401(client.get("/api/v1/info", headers=viewer_headers))
    assert client.get("/api/v1/info",
                      headers=basic("viewer", "a-new-password")).status_code == 200


def test_password_change_revokes_tokens(client, services, viewer_headers):
    token = _token(client, viewer_headers)
    services.accounts.set_password("viewer", "a-new-password")
    _assert_401(client.get("/api/v1/info", headers=_bearer(token)))


def test_removing_a_user_beats_the_cache(client, services, viewer_headers):
    assert client.get("/api/v1/info", headers=viewer_headers).status_code == 200
    services.accounts.remove_user("viewer")
    _assert_401(client.get("/api/v1/info", headers=viewer_headers))
    # Re-adding the name with another password does not revive the old one.
    services.accounts.add_user("viewer", "another-password", "viewer")
    _assert_401(client.get("/api/v1/info", headers=viewer_headers))


def test_cache_keys_are_not_the_plaintext(client, services, admin_headers):
    assert client.get("/api/v1/info", headers=admin_headers).status_code == 200
    entries = services.credential_cache._entries
    assert len(entries) == 1
    for key, value in entries.items():
        assert isinstance(key, bytes)
        assert ADMIN_PASSWORD.encode() not in key and b"admin" not in key
        assert ADMIN_PASSWORD not in repr(value)
