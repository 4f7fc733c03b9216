"""/openapi.json documents every operation and its errors; /docs works offline."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from apiflask import Schema, fields

from conftest import ADMIN_PASSWORD, PROBLEM, basic

PROBE_ID = "probe-id"
IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def spec(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.json


def api_operations(app) -> list[tuple[str, str, str]]:
    """(METHOD, OpenAPI path, concrete URL) for every API route in the url_map."""
    operations = []
    for rule in app.url_map.iter_rules():
        if rule.rule != "/api/v1" and not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        url = re.sub(r"<[^<>]+>", PROBE_ID, rule.rule)
        for method in sorted(rule.methods - IGNORED_METHODS):
            operations.append((method, path, url))
    return operations


def operation(spec: dict, method: str, path: str) -> dict:
    return spec["paths"][path][method.lower()]


def test_document_is_openapi_3(spec):
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "picam-api"
    assert spec["info"]["version"]
    schemes = spec["components"]["securitySchemes"]
    assert {(s["type"], s.get("scheme") or s["in"]) for s in schemes.values()} == {
        ("http", "basic"), ("http", "bearer"), ("apiKey", "query")}  # the stream's ticket


def test_every_route_is_documented_and_nothing_else(app, spec):
    operations = api_operations(app)
    assert len(operations) >= 13
    routed = {(method, path) for method, path, _ in operations}
    documented = {(method.upper(), path) for path, ops in spec["paths"].items()
                  for method in ops if method not in ("parameters", "summary", "description")}
    missing = routed - documented
    assert not missing, f"undocumented: {sorted(missing)}"
    assert not documented - routed, f"documented but not routed: {sorted(documented - routed)}"


def test_every_operation_has_a_summary_and_a_success_response(app, spec):
    for method, path, _ in api_operations(app):
        op = operation(spec, method, path)
        assert op.get("summary"), (method, path)
        assert any(code.startswith("2") for code in op["responses"]), (method, path)


def test_path_parameters_are_documented(app, spec):
    for method, path, _ in api_operations(app):
        names = set(re.findall(r"{([^}]+)}", path))
        documented = {p["name"] for p in operation(spec, method, path).get("parameters", [])
                      if p["in"] == "path"}
        documented |= {p["name"] for p in spec["paths"][path].get("parameters", [])
                       if p["in"] == "path"}
        assert names == documented, (method, path)
        if names:
            assert "404" in operation(spec, method, path)["responses"], (method, path)


def test_operations_needing_auth_document_401_and_429(app, client, spec):
    public = []
    for method, path, url in api_operations(app):
        op = operation(spec, method, path)
        response = client.open(url, method=method)
        if response.status_code == 401:
            assert op.get("security"), (method, path)
            # Any credentials can fail, and failures can be rate-limited.
            assert {"401", "429"} <= set(op["responses"]), (method, path)
        else:
            public.append((method, path))
            assert not op.get("security"), (method, path)
    assert public == [("GET", "/api/v1/health")]


def test_operator_operations_document_403(app, client, spec, viewer_headers):
    operator_ops = []
    for method, path, url in api_operations(app):
        if method == "GET":
            continue  # a viewer may read everything
        op = operation(spec, method, path)
        response = client.open(url, method=method, headers=viewer_headers)
        if response.status_code == 403:
            operator_ops.append((method, path))
            assert "403" in op["responses"], (method, path)
            assert all("operator" in scopes for requirement in op["security"]
                       for scopes in requirement.values()), (method, path)
    assert {("POST", "/api/v1/photos"), ("PATCH", "/api/v1/camera"),
            ("DELETE", "/api/v1/photos/{photo_id}")} <= set(operator_ops)


def test_json_body_operations_document_body_errors(app, spec):
    for method, path, _ in api_operations(app):
        op = operation(spec, method, path)
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            # Malformed JSON, too large, not JSON, fails validation.
            assert {"400", "413", "415", "422"} <= set(op["responses"]), (method, path)


def test_error_responses_are_problem_json(app, spec):
    problem_ref = None
    for method, path, _ in api_operations(app):
        for code, response in operation(spec, method, path)["responses"].items():
            if int(code) < 400 or (method, path, code) == ("GET", "/api/v1/health", "503"):
                continue
            assert list(response.get("content", {})) == [PROBLEM], (method, path, code)
            ref = response["content"][PROBLEM]["schema"]["$ref"]
            problem_ref = problem_ref or ref
            assert ref == problem_ref, (method, path, code)
    name = problem_ref.rsplit("/", 1)[-1]
    problem = spec["components"]["schemas"][name]
    assert {"type", "title", "status", "detail", "errors"} <= set(problem["properties"])


def test_health_503_is_documented_as_what_it_sends(make_app, config):
    config["camera"]["mock"]["missing"] = True
    client = make_app(config).test_client()
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    documented = client.get("/openapi.json").json["paths"]["/api/v1/health"]["get"]
    assert list(documented["responses"]["503"]["content"]) == [response.mimetype]


def test_views_may_document_their_own_json_for_an_error_status(make_app, config):
    # The problem+json rewrite must touch only problem bodies.
    app = make_app(config)

    class Report(Schema):
        state = fields.String()

    @app.get("/report")
    @app.doc(responses={503: {"description": "Down", "content": {
        "application/json": {"schema": Report}}}, 404: "Missing"})
    def report():
        return {"state": "ok"}

    responses = app.test_client().get("/openapi.json").json["paths"]["/report"]["get"]["responses"]
    assert list(responses["503"]["content"]) == ["application/json"]
    assert list(responses["404"]["content"]) == [PROBLEM]


# -- /docs ----------------------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.urls.append(attrs["src"])


def test_docs_page_works_offline(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    parser = _Assets()
    parser.feed(response.get_data(as_text=True))
    assert len(parser.urls) >= 3  # the CSS, the bundle, the preset at least
    for url in parser.urls:
        assert not url.startswith(("http://", "https://", "//")), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.data) > 100, url
    assert '"/openapi.json"' in response.get_data(as_text=True)


def test_docs_assets_are_not_a_path_traversal(client):
    for url in ("/docs/assets/../../../../etc/passwd", "/docs/assets/%2e%2e/%2e%2e/etc/passwd",
                "/docs/assets/no-such-file.js"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"root:" not in response.data


def test_docs_and_spec_need_no_credentials_but_accept_them(client):
    for path in ("/docs", "/openapi.json"):
        assert client.get(path).status_code == 200
        assert client.get(path, headers=basic("admin", ADMIN_PASSWORD)).status_code == 200


# -- the document states the real constraints (schemathesis generates from it) ----------


@pytest.fixture
def small_spec(make_app, config) -> dict:
    config["camera"]["mock"]["sensor"] = [320, 240]
    config["timelapse"] = {"min_interval_s": 0.25, "max_frames": 5000}
    config["stream"] = {"sizes": [[160, 120], [320, 240]]}
    return make_app(config).test_client().get("/openapi.json").json


def test_sizes_and_controls_are_this_cameras(small_spec):
    schemas = small_spec["components"]["schemas"]
    for name in ("CaptureRequest", "CameraPatch", "TimelapseCreate"):
        properties = schemas[name]["properties"]
        assert (properties["width"]["maximum"], properties["height"]["maximum"]) == (320, 240)
        controls = properties["controls"]
        assert {"Brightness", "ExposureTime", "ScalerCrop", "AwbEnable"} <= set(controls["properties"])
        assert "maxLength" not in controls and controls["maxProperties"] == 32
    photo = schemas["CaptureRequest"]["properties"]["controls"]
    assert photo["additionalProperties"] is False
    assert photo["properties"]["Brightness"] == {"type": "number", "minimum": -1.0, "maximum": 1.0}
    assert photo["properties"]["ExposureTime"]["type"] == "integer"
    assert photo["properties"]["AwbEnable"] == {"type": "boolean"}
    crop = photo["properties"]["ScalerCrop"]
    assert [(item["minimum"], item["maximum"]) for item in crop["prefixItems"]] == [
        (0, 304), (0, 224), (16, 320), (16, 240)]
    # A patch may remove a control from the defaults with null, any name included.
    patch = schemas["CameraPatch"]["properties"]["controls"]
    assert {"type": "null"} in patch["properties"]["Brightness"]["anyOf"]
    assert patch["additionalProperties"] == {"type": "null"}
    assert (patch["propertyNames"]["minLength"], patch["propertyNames"]["maxLength"]) == (1, 64)
    query = {p["name"]: p["schema"] for p in
             small_spec["paths"]["/api/v1/snapshot.jpg"]["get"]["parameters"]}
    assert (query["width"]["maximum"], query["height"]["maximum"]) == (320, 240)
    assert "x-runtime-bound" not in str(small_spec)


def test_time_lapse_and_stream_limits_are_the_configs(small_spec):
    create = small_spec["components"]["schemas"]["TimelapseCreate"]
    interval = create["properties"]["interval_s"]
    assert interval["minimum"] == 0.25 and "exclusiveMinimum" not in interval
    assert (create["properties"]["frames"]["minimum"], create["properties"]["frames"]["maximum"]) \
        == (1, 5000)
    duration = create["properties"]["duration_s"]
    assert (duration["minimum"], duration["maximum"]) == (0.01, 10 * 366 * 86400)
    # At most one bound.
    assert {"required": ["frames", "duration_s"]} in create["not"]["anyOf"]
    query = {p["name"]: p["schema"] for p in
             small_spec["paths"]["/api/v1/stream.mjpg"]["get"]["parameters"]}
    assert query["size"]["enum"] == ["160x120", "320x240"]
    assert query["fps"]["minimum"] == 0.1  # 1e-300 fps would stall the producer forever


def test_schema_wide_rules_and_required_bodies(small_spec):
    schemas = small_spec["components"]["schemas"]
    assert (schemas["GpioChange"]["minProperties"], schemas["GpioChange"]["maxProperties"]) == (1, 1)
    assert schemas["GpioBlink"]["properties"]["on_time"]["minimum"] == 0.01  # no busy loop
    paths = small_spec["paths"]
    assert paths["/api/v1/timelapses"]["post"]["requestBody"]["required"] is True
    assert paths["/api/v1/timelapses/{job_id}"]["patch"]["requestBody"]["required"] is True
    assert "required" not in paths["/api/v1/photos"]["post"]["requestBody"]  # all optional


def test_without_a_camera_the_document_keeps_the_generic_bounds(make_app, config):
    config["camera"]["mock"]["missing"] = True
    spec = make_app(config).test_client().get("/openapi.json").json
    properties = spec["components"]["schemas"]["CaptureRequest"]["properties"]
    assert properties["width"]["maximum"] == 20000
    assert "properties" not in properties["controls"]
