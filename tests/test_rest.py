"""REST as the seed teaches it: the API root, conditional requests, navigable pages,
absolute URLs on request, bare 204s and visible rate limits."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
import requests

from conftest import ADMIN_PASSWORD, assert_problem, basic
from picam_api.config import from_mapping
from picam_api.errors import ConfigError

SMALL = {"width": 64, "height": 48}
JSON = {"Content-Type": "application/json"}
# A job that has not started changes only when told to.
LATER = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()


def post_photo(client, headers) -> dict:
    response = client.post("/api/v1/photos", headers=headers, json=SMALL)
    assert response.status_code == 201
    return response.json


# -- the API root ----------------------------------------------------------------


def test_the_api_root_links_every_collection_this_server_has(app, client, viewer_headers):
    response = client.get("/api/v1", headers=viewer_headers)
    assert response.status_code == 200
    links = response.json["links"]
    assert {"self", "photos", "timelapses", "gpio", "camera", "stream", "info", "health",
            "openapi", "docs"} <= set(links)
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    assert set(links.values()) <= routes
    # A feature that is not in this build has no link (and none that would 404).
    assert "videos" in links or "/api/v1/videos" not in routes
    for name in ("photos", "timelapses", "gpio", "camera", "info", "health", "openapi"):
        assert client.get(links[name], headers=viewer_headers).status_code == 200, name
    assert client.get("/api/v1").status_code == 401


# -- conditional requests --------------------------------------------------------


def test_every_json_resource_has_an_etag_and_answers_304(client, admin_headers):
    photo = post_photo(client, admin_headers)
    job = client.post("/api/v1/timelapses", headers=admin_headers, json={
        **SMALL, "interval_s": 3600, "frames": 2, "start_at": LATER}).json
    for url in ("/api/v1/camera", photo["links"]["self"], job["links"]["self"],
                "/api/v1/photos", "/api/v1/timelapses", "/api/v1/gpio", "/api/v1"):
        first = client.get(url, headers=admin_headers)
        etag = first.headers.get("ETag")
        assert etag and first.headers["Cache-Control"] == "private, no-cache", url
        again = client.get(url, headers={**admin_headers, "If-None-Match": etag})
        assert again.status_code == 304 and again.data == b"", url
        assert again.headers["ETag"] == etag


def test_a_photo_says_when_it_was_taken(client, admin_headers):
    photo = client.get(post_photo(client, admin_headers)["links"]["self"], headers=admin_headers)
    modified = photo.headers["Last-Modified"]
    assert client.get(photo.json["links"]["self"], headers={
        **admin_headers, "If-Modified-Since": modified}).status_code == 304


def test_a_changed_resource_has_a_new_etag(client, admin_headers):
    before = client.get("/api/v1/camera", headers=admin_headers).headers["ETag"]
    client.patch("/api/v1/camera", headers=admin_headers, json={"quality": 42})
    after = client.get("/api/v1/camera", headers={**admin_headers, "If-None-Match": before})
    assert after.status_code == 200 and after.headers["ETag"] != before


def test_a_stale_if_match_is_412_and_changes_nothing(client, admin_headers):
    read = client.get("/api/v1/camera", headers=admin_headers)
    # The other browser changes the defaults meanwhile.
    assert client.patch("/api/v1/camera", headers=admin_headers, json={"quality": 61}).status_code == 200
    stale = client.patch("/api/v1/camera", headers={**admin_headers, "If-Match": read.headers["ETag"]},
                         json={"hflip": True})
    assert_problem(stale, 412)
    now = client.get("/api/v1/camera", headers=admin_headers)
    assert now.json["defaults"]["hflip"] is False and now.json["defaults"]["quality"] == 61
    fresh = client.patch("/api/v1/camera", headers={**admin_headers, "If-Match": now.headers["ETag"]},
                         json={"hflip": True})
    assert fresh.status_code == 200 and fresh.json["defaults"]["hflip"] is True
    # The PATCH's answer is the new representation, with the tag to send next time.
    assert fresh.headers["ETag"] == client.get("/api/v1/camera", headers=admin_headers).headers["ETag"]
    assert client.patch("/api/v1/camera", headers={**admin_headers, "If-Match": "*"},
                        json={"quality": 62}).status_code == 200


def test_if_match_guards_deletes_and_state_changes(client, admin_headers):
    photo = post_photo(client, admin_headers)
    tag = client.get(photo["links"]["self"], headers=admin_headers).headers["ETag"]
    assert_problem(client.delete(photo["links"]["self"], headers={**admin_headers, **JSON,
                                                                  "If-Match": '"other"'}), 412)
    assert client.delete(photo["links"]["self"], headers={**admin_headers, **JSON,
                                                          "If-Match": tag}).status_code == 204
    assert_problem(client.delete(photo["links"]["self"], headers={**admin_headers, **JSON,
                                                                  "If-Match": tag}), 404)
    job = client.post("/api/v1/timelapses", headers=admin_headers, json={
        **SMALL, "interval_s": 3600, "frames": 2, "start_at": LATER}).json
    tag = client.get(job["links"]["self"], headers=admin_headers).headers["ETag"]
    client.patch(job["links"]["self"], headers=admin_headers, json={"state": "paused"})
    assert_problem(client.patch(job["links"]["self"], headers={**admin_headers, "If-Match": tag},
                                json={"state": "cancelled"}), 412)
    assert client.get(job["links"]["self"], headers=admin_headers).json["state"] == "paused"


def test_two_writers_with_one_tag_cannot_both_win(app, admin_headers):
    tag = app.test_client().get("/api/v1/camera", headers=admin_headers).headers["ETag"]
    statuses = []

    def write(quality: int) -> None:
        response = app.test_client().patch("/api/v1/camera", json={"quality": quality},
                                           headers={**admin_headers, "If-Match": tag})
        statuses.append(response.status_code)
    threads = [threading.Thread(target=write, args=(q,)) for q in (20, 30, 40, 50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 412, 412, 412]


# -- pages -----------------------------------------------------------------------


def test_pages_link_first_next_and_prev_in_the_body_and_the_link_header(client, admin_headers):
    ids = [post_photo(client, admin_headers)["id"] for _ in range(7)][::-1]
    first = client.get("/api/v1/photos?limit=3", headers=admin_headers)
    body = first.json
    assert [p["id"] for p in body["items"]] == ids[:3]
    assert body["links"]["prev"] is None and body["links"]["next"] == body["next"]
    assert first.headers["Link"] == (f'<{body["links"]["first"]}>; rel="first", '
                                     f'<{body["next"]}>; rel="next"')
    second = client.get(body["next"], headers=admin_headers).json
    assert [p["id"] for p in second["items"]] == ids[3:6]
    third = client.get(second["next"], headers=admin_headers).json
    assert [p["id"] for p in third["items"]] == ids[6:] and third["next"] is None
    back = client.get(third["links"]["prev"], headers=admin_headers).json
    assert [p["id"] for p in back["items"]] == ids[3:6]
    assert [p["id"] for p in client.get(back["links"]["prev"], headers=admin_headers)
            .json["items"]] == ids[:3]
    assert client.get(third["links"]["first"], headers=admin_headers).json["items"] == body["items"]


def test_prev_goes_back_and_a_short_way_back_is_a_full_first_page(client, admin_headers):
    ids = [post_photo(client, admin_headers)["id"] for _ in range(4)][::-1]
    second = client.get(client.get("/api/v1/photos?limit=2", headers=admin_headers).json["next"],
                        headers=admin_headers).json
    newest = post_photo(client, admin_headers)["id"]
    back = client.get(second["links"]["prev"], headers=admin_headers).json
    assert [p["id"] for p in back["items"]] == ids[:2]
    assert back["links"]["prev"] is not None  # the new photo is before it
    assert client.get(back["links"]["prev"], headers=admin_headers).json["items"][0]["id"] == newest
    # Fewer than a page before it (deleted meanwhile): back is the first page, full.
    for photo_id in (newest, ids[0]):
        client.delete(f"/api/v1/photos/{photo_id}", headers={**admin_headers, **JSON})
    short = client.get(second["links"]["prev"], headers=admin_headers).json
    assert [p["id"] for p in short["items"]] == [ids[1], ids[2]]
    assert short["links"]["prev"] is None


def test_count_on_request(client, admin_headers, services):
    for _ in range(3):
        post_photo(client, admin_headers)
    page = client.get("/api/v1/photos?limit=1&count=true", headers=admin_headers).json
    assert page["count"] == 3 and len(page["items"]) == 1
    assert "count=" not in page["next"]  # the next page need not count again
    assert "count" not in client.get("/api/v1/photos", headers=admin_headers).json
    assert client.get("/api/v1/photos?timelapse=none&count=true",
                      headers=admin_headers).json["count"] == 0
    assert client.get("/api/v1/timelapses?count=true", headers=admin_headers).json["count"] == 0


def test_timelapse_pages_go_both_ways(client, admin_headers):
    ids = [client.post("/api/v1/timelapses", headers=admin_headers,
                       json={**SMALL, "interval_s": 3600, "frames": 1}).json["id"]
           for _ in range(3)][::-1]
    first = client.get("/api/v1/timelapses?limit=2", headers=admin_headers).json
    second = client.get(first["next"], headers=admin_headers).json
    assert [j["id"] for j in second["items"]] == ids[2:]
    assert [j["id"] for j in client.get(second["links"]["prev"], headers=admin_headers)
            .json["items"]] == ids[:2]


def test_video_pages_go_both_ways_filter_and_count(client, admin_headers, services):
    from picam_api.ids import new_id
    from picam_api.video.store import Video
    ids = []
    for n, source in enumerate(("clip", "timelapse", "clip", "clip")):
        created = dt.datetime(2026, 1, 1, n, tzinfo=dt.timezone.utc)
        video = Video(id=new_id(created), state="failed", source=source, options={},
                      created_at=created.isoformat())
        services.videos.store.insert(video)
        ids.append(video.id)
    clips = [i for i, s in zip(ids, ("clip", "timelapse", "clip", "clip")) if s == "clip"][::-1]
    first = client.get("/api/v1/videos?source=clip&limit=2&count=true", headers=admin_headers)
    assert [v["id"] for v in first.json["items"]] == clips[:2] and first.json["count"] == 3
    assert 'rel="next"' in first.headers["Link"]
    second = client.get(first.json["next"], headers=admin_headers).json
    assert [v["id"] for v in second["items"]] == clips[2:]
    back = client.get(second["links"]["prev"], headers=admin_headers).json
    assert [v["id"] for v in back["items"]] == clips[:2]


# -- absolute URLs -----------------------------------------------------------------


def test_urls_are_absolute_when_public_url_is_set(make_app, config, admin_headers):
    config["server"] = {"public_url": "https://cam.example.com/camera/"}
    client = make_app(config).test_client()
    base = "https://cam.example.com/camera"
    created = client.post("/api/v1/photos", headers=admin_headers, json=SMALL)
    assert created.headers["Location"] == f"{base}/api/v1/photos/{created.json['id']}"
    assert created.json["links"]["image"] == f"{base}/api/v1/photos/{created.json['id']}/image"
    post_photo(client, admin_headers)
    page = client.get("/api/v1/photos?limit=1", headers=admin_headers)
    assert page.json["next"].startswith(f"{base}/api/v1/photos?")
    assert page.json["items"][0]["links"]["self"].startswith(base + "/")
    assert page.headers["Link"].startswith(f"<{base}/api/v1/photos?")
    root = client.get("/api/v1", headers=admin_headers).json["links"]
    assert root["photos"] == f"{base}/api/v1/photos" and root["docs"] == f"{base}/docs"
    url = client.post("/api/v1/stream/urls", headers=admin_headers, json={}).json["url"]
    assert url.startswith(f"{base}/api/v1/stream.mjpg?ticket=")


def test_urls_stay_relative_by_default(client, admin_headers):
    created = client.post("/api/v1/photos", headers=admin_headers, json=SMALL)
    assert created.headers["Location"].startswith("/api/v1/photos/")
    assert created.json["links"]["self"].startswith("/api/v1/")


@pytest.mark.parametrize("value", ["ftp://cam.example.com", "cam.example.com",
                                   "https://cam.example.com/?x=1", "https://user@cam.example.com",
                                   "https://", 5])
def test_a_bad_public_url_is_a_config_error(value):
    with pytest.raises(ConfigError, match="server.public_url"):
        from_mapping({"server": {"public_url": value}})


# -- 204 -----------------------------------------------------------------------------


def test_a_204_has_no_content_type_over_http(server):
    admin = basic("admin", ADMIN_PASSWORD)
    photo = requests.post(server.url + "/api/v1/photos", headers=admin, json=SMALL, timeout=10)
    deleted = requests.delete(server.url + photo.json()["links"]["self"], headers={**admin, **JSON},
                              timeout=10)
    assert deleted.status_code == 204 and deleted.content == b""
    assert "Content-Type" not in deleted.headers


# -- rate limits ---------------------------------------------------------------------


def test_token_creation_shows_its_rate_limit(make_app, config, admin_headers):
    config["auth"] = {"tokens_per_minute": 3}
    client = make_app(config).test_client()
    seen = []
    for _ in range(3):
        response = client.post("/api/v1/tokens", headers={**admin_headers, **JSON})
        assert response.status_code == 201
        assert response.headers["RateLimit-Limit"] == "3"
        assert 0 < int(response.headers["RateLimit-Reset"]) <= 60
        seen.append(response.headers["RateLimit-Remaining"])
    assert seen == ["2", "1", "0"]
    refused = client.post("/api/v1/tokens", headers={**admin_headers, **JSON})
    assert_problem(refused, 429)
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]


def test_too_many_failed_logins_show_the_limit(make_app, config):
    config["auth"] = {"max_failures": 2, "failure_window_s": 60}
    client = make_app(config).test_client()
    wrong = basic("admin", "not-the-password")
    for _ in range(2):
        assert client.get("/api/v1/info", headers=wrong).status_code == 401
    refused = client.get("/api/v1/info", headers=wrong)
    assert_problem(refused, 429)
    assert (refused.headers["RateLimit-Limit"], refused.headers["RateLimit-Remaining"]) == ("2", "0")
    assert int(refused.headers["Retry-After"]) > 0


def test_the_openapi_document_names_the_rate_limit_headers(client):
    paths = client.get("/openapi.json").json["paths"]
    created = paths["/api/v1/tokens"]["post"]["responses"]
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(created["201"]["headers"])
    assert {"Retry-After", "RateLimit-Remaining"} <= set(created["429"]["headers"])
    assert "Retry-After" in paths["/api/v1/stream.mjpg"]["get"]["responses"]["503"]["headers"]
    for path, method in (("/api/v1/camera", "patch"), ("/api/v1/photos/{photo_id}", "delete")):
        assert "412" in paths[path][method]["responses"]
