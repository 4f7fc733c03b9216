"""Signed stream URLs: POST /api/v1/stream/urls, and the ``ticket`` the stream route takes.

A ticket opens GET /api/v1/stream.mjpg once, for ``stream.url_ttl_s`` seconds, and
nothing else; the URL holds no password and no bearer token.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from conftest import ADMIN_PASSWORD, VIEWER_PASSWORD, assert_problem, basic
from picam_api.clock import Clock

STREAM = "/api/v1/stream.mjpg"
URLS = "/api/v1/stream/urls"


class LaterClock(Clock):
    """The wall clock, ``ahead_s`` seconds on."""

    def __init__(self, ahead_s: float):
        self.ahead_s = ahead_s

    def time(self) -> float:
        return super().time() + self.ahead_s


@pytest.fixture
def issue(client, viewer_headers):
    """POST /api/v1/stream/urls as the viewer: the answer's body."""
    def issue(headers=viewer_headers) -> dict:
        response = client.post(URLS, headers=headers, content_type="application/json")
        assert response.status_code == 201, response.text
        return response.json
    return issue


def ticket_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["ticket"][0]


def get(client, url: str, method: str = "GET"):
    """The answer to ``url``; a stream that opened is closed at once, so a test never hangs."""
    response = client.open(url, method=method)
    response.close()
    return response


def assert_refused(response, status: int = 401) -> None:
    assert_problem(response, status)
    # Never a Basic challenge here: a browser would pop up its login box over the page.
    assert not response.headers.get("WWW-Authenticate", "").startswith("Basic")


def test_a_ticket_opens_the_stream_once(client, issue):
    body = issue()
    assert body["url"].startswith(STREAM + "?ticket=")
    assert body["expires_at"].endswith("Z")
    first = get(client, body["url"])
    assert first.status_code == 200
    assert first.mimetype == "multipart/x-mixed-replace"
    spent = get(client, body["url"])
    assert_refused(spent)
    assert spent.json["detail"] == ("the stream ticket is spent (a ticket opens the stream once); "
                                    "ask POST /api/v1/stream/urls for a new one")


def test_size_and_fps_may_be_added(client, issue):
    response = get(client, issue()["url"] + "&size=640x480&fps=2")
    assert response.status_code == 200


def test_the_url_holds_neither_token_nor_password(client, issue, admin_headers):
    token = client.post("/api/v1/tokens", headers=admin_headers, content_type="application/json").json["token"]
    url = issue({"Authorization": f"Bearer {token}"})["url"]
    assert token[:12] not in url and ADMIN_PASSWORD not in url


def test_an_expired_ticket_is_refused(client, services, issue):
    url = issue()["url"]
    services.stream_urls.clock = LaterClock(services.config["stream"]["url_ttl_s"] + 1)
    expired = get(client, url)
    assert_refused(expired)
    assert expired.json["detail"].startswith("the stream ticket has expired")


def changed(text: str) -> str:
    """``text`` with its first character replaced by another."""
    return ("B" if text[0] == "A" else "A") + text[1:]


def part(index: int):
    """Change field ``index`` of expires.nonce.mac.user."""
    def tamper(ticket: str) -> str:
        fields = ticket.split(".", 3)
        fields[index] = str(int(fields[0]) + 3600) if index == 0 else changed(fields[index])
        return ".".join(fields)
    return tamper


@pytest.mark.parametrize("tamper", [
    part(0), part(1), part(2),
    lambda t: t.rsplit(".", 1)[0] + ".admin",  # another user
    lambda t: t[:-1],
    lambda t: t.split(".", 1)[1],
    lambda t: "",
    lambda t: "1.2.3.viewer",
    lambda t: "¹²³.x.y.viewer",
    lambda t: t.replace(t.split(".")[2], "é" * 43),
], ids=["expiry", "nonce", "mac", "user", "truncated", "no-expiry", "empty", "forged",
        "unicode-digits", "non-ascii-mac"])
def test_a_tampered_ticket_is_refused(client, issue, tamper):
    ticket = ticket_of(issue()["url"])
    assert_refused(get(client, f"{STREAM}?{urlencode({'ticket': tamper(ticket)})}"))


def test_a_ticket_for_another_path_is_refused(client, services, viewer_headers):
    ticket, _ = services.stream_urls.issue("viewer", "/api/v1/snapshot.jpg")
    assert_refused(get(client, f"{STREAM}?ticket={ticket}"))


def test_a_ticket_works_under_a_mount_point(client, viewer_headers):
    mounted = {"SCRIPT_NAME": "/camera"}  # behind a proxy that serves the app at /camera
    url = client.post(URLS, headers=viewer_headers, environ_overrides=mounted,
                      content_type="application/json").json["url"]
    assert url.startswith("/camera" + STREAM)
    response = client.get(url.removeprefix("/camera"), environ_overrides=mounted)
    response.close()
    assert response.status_code == 200


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/snapshot.jpg"),
    ("GET", "/api/v1/info"),
    ("GET", "/?action=stream"),
    ("POST", "/api/v1/photos"),
    ("POST", URLS),  # a ticket cannot make tickets
])
def test_a_ticket_opens_no_other_route(client, issue, method, path):
    url = issue()["url"]
    joiner = "&" if "?" in path else "?"
    response = client.open(f"{path}{joiner}ticket={ticket_of(url)}", method=method)
    assert_problem(response, 401)
    assert get(client, url).status_code == 200  # and it was not spent there


def test_a_ticket_is_only_for_get(client, issue):
    url = issue()["url"]
    assert_problem(client.post(url), 405)
    assert get(client, url, "HEAD").status_code == 401  # (a HEAD answer has no body)
    assert get(client, url).status_code == 200  # neither spent it


def test_a_ticket_dies_with_its_user(client, services, issue):
    url = issue()["url"]
    services.accounts.remove_user("viewer")
    assert_refused(get(client, url))


def test_issuing_needs_credentials(client):
    assert_problem(client.post(URLS), 401)
    assert_problem(client.post(URLS, headers=basic("viewer", VIEWER_PASSWORD)), 401)  # no such user


def test_refusals_are_logged_without_the_ticket(client, issue, caplog):
    ticket = ticket_of(issue()["url"])
    forged = ticket[:-3] + "abc"
    with caplog.at_level("WARNING"):
        assert_refused(client.get(STREAM, query_string={"ticket": forged}))
    assert "rejected stream ticket" in caplog.text
    assert forged not in caplog.text and ticket.split(".")[2] not in caplog.text


def test_tickets_are_never_locked_out(make_app, config):
    # A ticket carries a MAC: unguessable, so the login limiter neither counts nor refuses one.
    config["auth"] = {"max_failures": 3}
    app = make_app(config)
    client = app.test_client()
    app.extensions["picam"].accounts.add_user("viewer", VIEWER_PASSWORD, "viewer")
    for _ in range(5):
        assert_refused(client.get(STREAM, query_string={"ticket": "1.2.3.viewer"}))
    for _ in range(3):
        client.get("/api/v1/info", headers=basic("viewer", "not-the-password"))
    assert_problem(client.get("/api/v1/info", headers=basic("viewer", VIEWER_PASSWORD)), 429)
    ticket, _ = app.extensions["picam"].stream_urls.issue("viewer", STREAM)
    response = client.get(STREAM, query_string={"ticket": ticket})
    response.close()
    assert response.status_code == 200


def test_the_openapi_document_describes_the_ticket(client):
    spec = client.get("/openapi.json").json
    scheme = spec["components"]["securitySchemes"]["StreamTicket"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "query", "ticket")
    assert {"StreamTicket": []} in spec["paths"][STREAM]["get"]["security"]
    other = [op.get("security", []) for path, ops in spec["paths"].items() if path != STREAM
             for op in ops.values()]
    assert not any("StreamTicket" in requirement for security in other for requirement in security)
    issued = spec["paths"][URLS]["post"]
    assert "201" in issued["responses"] and {"401", "429"} <= set(issued["responses"])

