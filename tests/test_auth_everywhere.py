"""No route skips auth by accident: every route in the url_map is checked, so a
route added later without auth fails here (motionEye's CVE-2026-55863 was one
handler without ``@auth``)."""
from __future__ import annotations

import re

import pytest

from conftest import PROBLEM, basic

# Routes anyone may GET. Keep this short; every other route needs credentials.
PUBLIC = {
    "/api/v1/health",  # liveness, for monitors and the installer
    "/openapi.json", "/docs", "/docs/oauth2-redirect", "/docs/assets/<path:name>",  # API docs
    "/ui/<path:name>",  # the web page's files; the page signs in through the API
}
# "/" is the web page, public too; mjpg-streamer's aliases on it are not.
URLS_OF = {"/": ["/?action=stream", "/?action=snapshot"]}
# Mutating methods a viewer may use: trading credentials for a token, revoking
# it, and asking for a signed live-view URL (a viewer's read).
VIEWER_ACTIONS = {("POST", "/api/v1/tokens"), ("DELETE", "/api/v1/tokens/current"),
                  ("POST", "/api/v1/stream/urls")}
WRONG_CREDENTIALS = [basic("admin", "not-the-password"), basic("nobody", "x"),
                     {"Authorization": "Bearer not-a-token"}]
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def app(make_app, config):
    # Every request here is a failed login: the rate limit is tested in test_auth.py.
    config["auth"] = {"max_failures": 100_000}
    return make_app(config)


def routes(app) -> list[tuple[str, str, list[str]]]:
    """(method, rule, URLs to probe) for every non-public route and method."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC:
            continue
        urls = URLS_OF.get(rule.rule, [re.sub(r"<[^<>]+>", "probe-id", rule.rule)])
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule, urls))
    return found


def assert_401(response, what):
    assert response.status_code == 401, what
    assert response.mimetype == PROBLEM, what


def test_the_walk_sees_every_route(app):
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert PUBLIC <= rules, f"stale public entries: {PUBLIC - rules}"
    walked = {rule for _, rule, _ in routes(app)}
    assert walked == rules - PUBLIC
    assert {"/api/v1", "/api/v1/photos", "/api/v1/timelapses/<job_id>", "/api/v1/gpio/<name>",
            "/", "/api/v1/events", "/api/v1/webhooks/<webhook_id>/deliveries"} <= walked


def test_every_other_route_needs_credentials(app, client):
    for method, rule, urls in routes(app):
        for url in urls:
            assert_401(client.open(url, method=method), (method, url, "no credentials"))
            for headers in WRONG_CREDENTIALS:
                assert_401(client.open(url, method=method, headers=headers),
                           (method, url, headers["Authorization"].split()[0]))
            # A stream ticket is a credential of the stream only, and a forged one is none.
            assert_401(client.open(url + ("&" if "?" in url else "?") + "ticket=1.x.y.admin",
                                   method=method), (method, url, "ticket"))


def test_viewers_are_refused_every_operator_action(app, client, viewer_headers):
    checked = []
    for method, rule, urls in routes(app):
        if method in MUTATING and (method, rule) not in VIEWER_ACTIONS:
            response = client.open(urls[0], method=method, headers=viewer_headers, json={})
            assert response.status_code == 403, (method, rule, response.status_code)
            assert response.mimetype == PROBLEM
            checked.append((method, rule))
    assert {("POST", "/api/v1/photos"), ("DELETE", "/api/v1/photos/<photo_id>"),
            ("PATCH", "/api/v1/camera"), ("PATCH", "/api/v1/gpio/<name>"),
            ("POST", "/api/v1/timelapses"), ("PATCH", "/api/v1/timelapses/<job_id>"),
            ("DELETE", "/api/v1/timelapses/<job_id>"), ("POST", "/api/v1/webhooks"),
            ("PATCH", "/api/v1/webhooks/<webhook_id>"),
            ("DELETE", "/api/v1/webhooks/<webhook_id>")} <= set(checked)


def test_public_routes_answer_without_credentials(client):
    for url in ("/api/v1/health", "/openapi.json", "/docs", "/docs/assets/swagger-ui.css", "/"):
        assert client.get(url).status_code == 200, url
