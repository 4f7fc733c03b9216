"""Every error is RFC 9457 problem+json: type, title, status, detail (and errors)."""
from __future__ import annotations

import pytest

from conftest import ADMIN_PASSWORD, assert_problem, basic




@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/api/v2/photos",
                                  "/api/v1/photos/x/y/z"])
def test_unknown_route_is_404(client, admin_headers, path):
    assert_problem(client.get(path, headers=admin_headers), 404)


def test_unknown_route_is_404_without_credentials_too(client):
    assert_problem(client.get("/api/v1/nope"), 404)


def test_wrong_method_is_405_with_allow(client, admin_headers):
    response = client.put("/api/v1/photos", headers=admin_headers, json={})
    assert_problem(response, 405)
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_oversized_body_is_413(make_app, config):
    config["server"] = {"max_body_bytes": 1024}
    client = make_app(config).test_client()
    response = client.post("/api/v1/photos", headers=basic("admin", ADMIN_PASSWORD),
                           data=b'{"width": 64, "pad": "' + b"x" * 2048 + b'"}',
                           content_type="application/json")
    assert_problem(response, 413)
    assert client.application.extensions["picam"].photos.stats()["count"] == 0


def test_non_json_body_is_415(client, admin_headers, services):
    response = client.post("/api/v1/photos", headers=admin_headers, data="width=64",
                           content_type="text/plain")
    body = assert_problem(response, 415)
    assert "json" in body["detail"].lower()
    response = client.patch("/api/v1/camera", headers=admin_headers, data="quality=5",
                            content_type="application/x-www-form-urlencoded")
    assert_problem(response, 415)
    assert services.photos.stats()["count"] == 0


def test_malformed_json_is_400(client, admin_headers, services):
    response = client.post("/api/v1/photos", headers=admin_headers, data='{"width": 64,',
                           content_type="application/json")
    body = assert_problem(response, 400)
    # The detail says what is wrong, rather than repeating the title.
    assert "json" in body["detail"].lower()
    assert services.photos.stats()["count"] == 0


def test_json_array_body_is_422(client, admin_headers):
    response = client.post("/api/v1/photos", headers=admin_headers, json=[{"width": 64}])
    body = assert_problem(response, 422)
    assert isinstance(body["errors"], dict) and body["errors"]


def test_unknown_and_mistyped_fields_are_422_naming_each(client, admin_headers):
    response = client.post("/api/v1/photos", headers=admin_headers,
                           json={"bogus": 1, "width": "wide"})
    body = assert_problem(response, 422)
    assert set(body["errors"]) == {"bogus", "width"}
    assert all(isinstance(msgs, list) and msgs for msgs in body["errors"].values())
    assert "bogus" in body["detail"] and "width" in body["detail"]


def test_bad_query_is_422_naming_the_field(client, admin_headers):
    body = assert_problem(client.get("/api/v1/photos?limit=0", headers=admin_headers), 422)
    assert "limit" in body["errors"]


def test_unexpected_exception_is_500_without_traceback(app, client, services, admin_headers,
                                                       monkeypatch, caplog):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def broken(requested):
        raise RuntimeError("secret internals /etc/shadow")

    monkeypatch.setattr(services.capture, "take_photo", broken)
    response = client.post("/api/v1/photos", headers=admin_headers, json={})
    body = assert_problem(response, 500)
    assert body["title"] and "secret" not in body["detail"]
    text = response.get_data(as_text=True)
    assert "secret internals" not in text and "RuntimeError" not in text
    assert "File \"" not in text
    # The details go to the log instead.
    assert "secret internals" in caplog.text


def test_unexpected_exception_in_a_registered_route_is_500(make_app, config):
    app = make_app(config)
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom():
        raise KeyError("boom-detail")

    response = app.test_client().get("/boom")
    assert_problem(response, 500)
    assert "boom-detail" not in response.get_data(as_text=True)


def test_camera_failure_is_503_with_retry_after(client, admin_headers, services):
    services.backend.fail_rate = 1.0
    response = client.post("/api/v1/photos", headers=admin_headers, json={})
    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "3"  # camera.retry_after_s in the test config
    response = client.get("/api/v1/snapshot.jpg", headers=admin_headers)
    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) >= 1


def test_missing_camera_is_503_with_retry_after(make_app, config):
    config["camera"]["mock"]["missing"] = True
    client = make_app(config).test_client()
    response = client.get("/api/v1/snapshot.jpg", headers=basic("admin", ADMIN_PASSWORD))
    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "3"
    health = client.get("/api/v1/health")
    assert health.status_code == 503


def test_auth_errors_are_problems(client, viewer_headers):
    assert_problem(client.get("/api/v1/info"), 401)
    assert_problem(client.post("/api/v1/photos", headers=viewer_headers, json={}), 403)


def test_unknown_photo_is_404_problem(client, admin_headers):
    assert_problem(client.get("/api/v1/photos/no-such-photo", headers=admin_headers), 404)
