"""Security headers on every kind of response, and the page's files as served."""
from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import picam_api

FIXED = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
         "X-Frame-Options": "DENY"}
WEB = Path(picam_api.__file__).parent / "web"


@pytest.fixture
def photo(client, admin_headers) -> dict:
    response = client.post("/api/v1/photos", json={"width": 64, "height": 48}, headers=admin_headers)
    assert response.status_code == 201
    return response.json


def policy(response) -> dict[str, str]:
    directives = response.headers["Content-Security-Policy"].split(";")
    return dict(d.strip().split(" ", 1) for d in directives)


def assert_secured(response) -> dict[str, str]:
    for name, value in FIXED.items():
        assert response.headers[name] == value, name
    csp = policy(response)
    assert csp["frame-ancestors"] == "'none'"
    assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    return csp


def test_every_kind_of_response_has_the_headers(client, admin_headers, photo):
    cases = [
        ("/", 200, {}), ("/ui/app.js", 200, {}), ("/ui/style.css", 200, {}),
        ("/api/v1/info", 200, admin_headers), ("/api/v1/health", 200, {}),
        (photo["links"]["image"], 200, admin_headers),
        (photo["links"]["thumbnail"], 200, admin_headers),
        ("/api/v1/snapshot.jpg?width=64&height=48", 200, admin_headers),
        ("/openapi.json", 200, {}), ("/docs/assets/swagger-ui.css", 200, {}),
        ("/api/v1/info", 401, {}), ("/api/v1/photos/nope", 404, admin_headers),
        ("/api/v1/photos?limit=0", 422, admin_headers), ("/ui/nope.js", 404, {}),
    ]
    for path, status, headers in cases:
        response = client.get(path, headers=headers)
        assert response.status_code == status, path
        csp = assert_secured(response)
        assert csp["script-src"] == "'self'", path
    not_modified = client.get(photo["links"]["image"], headers={
        **admin_headers, "If-None-Match": client.get(photo["links"]["image"],
                                                     headers=admin_headers).headers["ETag"]})
    assert not_modified.status_code == 304
    assert_secured(not_modified)
    assert_secured(client.delete("/api/v1/info", headers=admin_headers))  # 405


def test_the_page_allows_only_its_own_origin(client):
    csp = assert_secured(client.get("/"))
    assert csp["default-src"] == csp["connect-src"] == csp["style-src"] == "'self'"
    assert csp["img-src"] == "'self' blob: data:"  # photos are shown as blob: URLs


def test_the_docs_page_may_run_only_its_own_inline_script(client):
    response = client.get("/docs")
    assert response.status_code == 200
    inline = re.findall(r"<script>(.*?)</script>", response.get_data(as_text=True), re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy(response)["script-src"] == f"'self' 'sha256-{digest}'"
    assert_secured(response)


class _Inline(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, styles and handlers."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._tag = None

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        self._tag = tag
        if tag == "script" and "src" not in names or tag == "style":
            self.found.append(tag)
        self.found += [name for name in names if name.startswith("on") or name == "style"]

    def handle_endtag(self, tag):
        self._tag = None

    def handle_data(self, data):
        if self._tag == "script" and data.strip():
            self.found.append("script text")


def test_the_page_has_no_inline_script_or_style(client):
    parser = _Inline()
    parser.feed(client.get("/").get_data(as_text=True))
    assert parser.found == []
    for script in WEB.glob("*.js"):
        assert "innerHTML" not in script.read_text(), script.name  # text is never parsed as HTML


def test_the_page_files_are_served_with_their_types(client):
    types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
             ".svg": "image/svg+xml"}
    for file in WEB.iterdir():
        response = client.get(f"/ui/{file.name}")
        assert response.status_code == 200, file.name
        assert response.mimetype == types[file.suffix], file.name
        assert response.headers["Cache-Control"].startswith("no-cache")


@pytest.mark.parametrize("path", ["/ui/../app.py", "/ui/%2e%2e/app.py", "/ui/../../setup.cfg",
                                  "/ui/app.py", "/ui/", "/ui/nope.js"])
def test_nothing_else_is_served_under_ui(client, path):
    response = client.get(path)
    assert response.status_code == 404, path
    assert b"import" not in response.data


def test_the_mjpg_streamer_aliases_still_answer_beside_the_page(client, admin_headers):
    assert client.get("/").mimetype == "text/html"
    snapshot = client.get("/?action=snapshot", headers=admin_headers)
    assert snapshot.status_code == 200 and snapshot.mimetype == "image/jpeg"
    assert client.get("/?action=snapshot").status_code == 401
