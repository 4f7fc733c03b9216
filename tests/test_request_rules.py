"""What every request must be (picam_api.request_rules): from a page of this origin,
JSON whatever its framing, and JSON within bounds; the browser test with a second
origin is in test_web.py."""
from __future__ import annotations

import http.client
import io
import logging

import pytest

from picam_api.config import from_mapping
from picam_api.errors import ConfigError

from conftest import assert_problem, basic

JSON = "application/json"
CHUNKED = {"Transfer-Encoding": "chunked"}
# What a server that reads chunked bodies tells the app (gunicorn and waitress do).
TERMINATED = {"wsgi.input_terminated": True}
CROSS_SITE = [{"Origin": "http://evil.example"}, {"Origin": "null"},
              {"Origin": "http://localhost:9999"},  # another port of this host
              {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}]


@pytest.fixture
def photo(client, admin_headers) -> dict:
    return client.post("/api/v1/photos", headers=admin_headers, json={"width": 64, "height": 48}).json


def _bearer(client, headers) -> dict:
    token = client.post("/api/v1/tokens", headers=headers, content_type=JSON).json["token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("sender", CROSS_SITE, ids=lambda h: "=".join(*h.items()))
def test_a_page_of_another_site_cannot_change_anything(client, admin_headers, services, photo,
                                                       sender):
    for method, url in (("POST", "/api/v1/photos"), ("PATCH", "/api/v1/camera"),
                        ("DELETE", photo["links"]["self"]), ("POST", "/api/v1/tokens"),
                        ("POST", "/api/v1/timelapses")):
        response = client.open(url, method=method, headers={**admin_headers, **sender},
                               json={"interval_s": 1} if "timelapses" in url else {})
        body = assert_problem(response, 403)
        assert "server.allowed_origins" in body["detail"] or "page" in body["detail"]
    assert services.photos.stats()["count"] == 1
    assert services.db.conn.execute("SELECT count(*) FROM tokens").fetchone()[0] == 0
    # Reading is not refused: a page of another site cannot read the answer anyway.
    assert client.get("/api/v1/photos", headers={**admin_headers, **sender}).status_code == 200


def test_this_origin_and_configured_origins_may_change_things(make_app, config, admin_headers):
    config["server"] = {"allowed_origins": ["https://HA.example:8123/"]}
    client = make_app(config).test_client()
    for sender in ({"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
                   {"Origin": "https://ha.example:8123", "Sec-Fetch-Site": "cross-site"},
                   {"Sec-Fetch-Site": "none"}, {}):
        response = client.post("/api/v1/photos", headers={**admin_headers, **sender}, json={})
        assert response.status_code == 201, (sender, response.text)


def test_allowed_origins_must_be_origins():
    with pytest.raises(ConfigError) as caught:
        from_mapping({"server": {"allowed_origins": ["ha.local/path"]}})
    assert "server.allowed_origins" in caught.value.detail


def test_basic_credentials_need_json_whatever_the_body(client, admin_headers, services, photo):
    attempts = [("POST", "/api/v1/photos", {}),  # an empty form of another site
                ("POST", "/api/v1/photos", {"data": "width=64", "content_type":
                                            "application/x-www-form-urlencoded"}),
                ("POST", "/api/v1/photos", {"data": '{"width": 64}', "content_type": "text/plain"}),
                ("POST", "/api/v1/tokens", {}), ("POST", "/api/v1/stream/urls", {}),
                ("DELETE", photo["links"]["self"], {}), ("PATCH", "/api/v1/camera", {})]
    for method, url, body in attempts:
        assert_problem(client.open(url, method=method, headers=admin_headers, **body), 415)
    assert services.photos.stats()["count"] == 1
    assert services.db.conn.execute("SELECT count(*) FROM tokens").fetchone()[0] == 0
    # The same requests saying application/json, even with no body, go through.
    assert client.post("/api/v1/tokens", headers=admin_headers, content_type=JSON).status_code == 201
    assert client.post("/api/v1/stream/urls", headers=admin_headers,
                       content_type=JSON).status_code == 201
    assert client.delete(photo["links"]["self"], headers=admin_headers,
                         content_type=JSON).status_code == 204


def test_a_bearer_token_may_leave_out_the_body_where_the_route_takes_none(client, admin_headers):
    bearer = _bearer(client, admin_headers)
    # A browser never adds a bearer header by itself, so no body needs no content type...
    assert client.post("/api/v1/stream/urls", headers=bearer).status_code == 201
    # ...except where the route takes a body: leaving it out is still not JSON.
    assert_problem(client.post("/api/v1/photos", headers=bearer), 415)
    assert_problem(client.post("/api/v1/photos", headers=bearer, data="width=64",
                               content_type="application/x-www-form-urlencoded"), 415)
    assert client.delete("/api/v1/tokens/current", headers=bearer).status_code == 204


def test_chunked_bodies_are_checked_like_any_other(client, admin_headers, services):
    def post(data: bytes, content_type: str):
        return client.post("/api/v1/photos", headers={**admin_headers, **CHUNKED},
                           input_stream=io.BytesIO(data), content_type=content_type,
                           environ_overrides=TERMINATED)

    assert_problem(post(b"width=64", "text/plain"), 415)
    assert_problem(post(b'{"width": 64, "pad": "' + b"x" * 70_000 + b'"}', JSON), 413)
    assert services.photos.stats()["count"] == 0
    taken = post(b'{"width": 64, "height": 48}', JSON)
    assert taken.status_code == 201 and taken.json["width"] == 64  # read, not taken as empty


def _chunked_post(url: str, body: bytes, content_type: str) -> tuple[http.client.HTTPResponse, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/api/v1/photos", body=iter([body[:10], body[10:]]), encode_chunked=True,
                 headers={**basic("admin", "admin-password-1"), "Content-Type": content_type,
                          "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_chunked_bodies_over_http(server):
    for body, content_type, status in ((b"width=64&height=48", "text/plain", 415),
                                       (b'{"pad": "' + b"x" * 100_000 + b'"}', JSON, 413)):
        response, data = _chunked_post(server.url, body, content_type)
        assert response.status == status, data[:300]
        assert response.getheader("Content-Type") == "application/problem+json"
        assert b"Traceback" not in data and b"<html" not in data.lower()
    response, data = _chunked_post(server.url, b'{"width": 64, "height": 48}', JSON)
    assert response.status == 201, data[:300]
    assert b'"width":64' in data.replace(b" ", b"")


@pytest.mark.parametrize("body, status", [
    ("[" * 1000 + "]" * 1000, 400),  # Python's parser: RecursionError
    ('{"controls": ' * 1000 + "{}" + "}" * 1000, 400),
    ('{"width": 1' + "0" * 4400 + "}", 400),  # int(): more than 4300 digits
    ('{"width": 1' + "0" * 400 + "}", 400),  # too big for a float
    ('{"quality": 1' + "0" * 99 + "}", 422),  # within the digit bound: the field's range
    ('{"controls": {"Brightness": 1' + "0" * 99 + "}}", 422),
], ids=["deep-array", "deep-object", "4400-digits", "400-digit-int", "100-digit-int",
        "100-digit-control"])
def test_json_out_of_bounds_is_a_problem(client, admin_headers, body, status):
    assert_problem(client.post("/api/v1/photos", headers=admin_headers, data=body,
                               content_type=JSON), status)


def test_brackets_and_digits_inside_strings_do_not_count(client, admin_headers):
    name = "[{" * 40 + "1" * 200
    response = client.post("/api/v1/photos", headers=admin_headers,
                           json={"controls": {name[:64]: 1, "x" * 10: name}})
    assert_problem(response, 422, "controls")  # the camera's rule decides, not the bounds


def test_integers_too_big_for_a_float_fail_validation_not_the_server():
    # Behind the digit bound, the schema itself never asks float() of a huge int.
    from marshmallow import ValidationError
    from picam_api.api.schemas import CaptureRequest, TimelapseCreate
    for schema, field in ((CaptureRequest(), "width"), (TimelapseCreate(), "frames"),
                          (TimelapseCreate(), "interval_s")):
        with pytest.raises(ValidationError) as caught:
            schema.load({field: 10**400, **({"interval_s": 1} if field == "frames" else {})})
        assert field in caught.value.messages


def test_a_huge_ticket_expiry_is_a_plain_401(client, caplog):
    with caplog.at_level(logging.WARNING):
        response = client.get("/api/v1/stream.mjpg", query_string={
            "ticket": "9" * 4400 + ".nonce.mac.admin"})
    assert_problem(response, 401)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


def test_every_state_changing_route_documents_what_it_inherits(client):
    spec = client.get("/openapi.json").json
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            if method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
                assert {"400", "403", "415", "507"} <= codes, (method, path)
            if operation.get("security"):
                assert {"429", "503"} <= codes, (method, path)
