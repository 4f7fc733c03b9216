"""POST/GET/DELETE /api/v1/photos: round trips, pagination, caching, bad input, concurrency."""
from __future__ import annotations

import datetime as dt
import io
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from conftest import ADMIN_PASSWORD, PROBLEM, assert_problem, basic

SMALL = {"width": 64, "height": 48}


def post_photo(client, headers, **body):
    response = client.post("/api/v1/photos", headers=headers, json={**SMALL, **body})
    assert response.status_code == 201, response.json
    return response.json


def files_under(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*") if p.is_file()} if directory.exists() else set()



# -- round trip ---------------------------------------------------------------

def test_post_photo_stores_it_and_answers_201_with_location(client, admin_headers, services):
    before = dt.datetime.now(dt.timezone.utc)
    response = client.post("/api/v1/photos", headers=admin_headers,
                           json={"width": 320, "height": 240, "quality": 80})
    assert response.status_code == 201
    body = response.json
    assert response.headers["Location"] == f"/api/v1/photos/{body['id']}"
    assert body["links"] == {"self": f"/api/v1/photos/{body['id']}",
                             "image": f"/api/v1/photos/{body['id']}/image",
                             "thumbnail": f"/api/v1/photos/{body['id']}/thumbnail"}
    assert (body["width"], body["height"], body["format"]) == (320, 240, "jpeg")
    assert body["source"] == "api"
    assert body["timelapse_id"] is None and body["sequence"] is None and body["trigger"] is None
    assert body["settings"]["width"] == 320 and body["settings"]["quality"] == 80
    assert body["settings"]["hflip"] is False and body["settings"]["controls"] == {}

    # ISO 8601, UTC, with microseconds
    assert body["taken_at"].endswith(("Z", "+00:00"))
    assert len(body["taken_at"].split(".")[1].rstrip("Z").split("+")[0]) == 6
    taken_at = dt.datetime.fromisoformat(body["taken_at"])
    assert taken_at.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= taken_at <= dt.datetime.now(dt.timezone.utc)

    image = client.get(body["links"]["image"], headers=admin_headers)
    assert image.status_code == 200
    assert image.content_type == "image/jpeg"
    assert len(image.data) == body["bytes"]
    with Image.open(io.BytesIO(image.data)) as picture:
        assert picture.format == "JPEG"
        assert picture.size == (320, 240)

    # the file is in the data dir, indexed once
    assert services.photos.stats() == {"count": 1, "bytes": body["bytes"]}
    stored = files_under(services.data_dir / "photos")
    assert len(stored) == 1 and next(iter(stored)).read_bytes() == image.data


def test_post_photo_png(client, admin_headers):
    body = post_photo(client, admin_headers, format="png", width=100, height=60)
    assert body["format"] == "png"
    image = client.get(body["links"]["image"], headers=admin_headers)
    assert image.content_type == "image/png"
    with Image.open(io.BytesIO(image.data)) as picture:
        assert picture.format == "PNG"
        assert picture.size == (100, 60)


def test_post_photo_without_body_uses_defaults(client, admin_headers, services):
    # Still JSON (docs/security.md): a bare POST is what a form of another site sends.
    assert_problem(client.post("/api/v1/photos", headers=admin_headers), 415)
    response = client.post("/api/v1/photos", headers=admin_headers, content_type="application/json")
    assert response.status_code == 201
    defaults = services.capture.defaults()
    assert (response.json["width"], response.json["height"]) == (defaults["width"],
                                                                 defaults["height"])


def test_get_one_photo(client, admin_headers):
    created = post_photo(client, admin_headers)
    response = client.get(created["links"]["self"], headers=admin_headers)
    assert response.status_code == 200
    assert response.json == created


# -- listing ------------------------------------------------------------------

def test_list_walks_pages_newest_first(client, admin_headers):
    created = [post_photo(client, admin_headers)["id"] for _ in range(7)]
    seen, pages = [], 0
    url = "/api/v1/photos?limit=3"
    while url:
        response = client.get(url, headers=admin_headers)
        assert response.status_code == 200
        page = response.json
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        pages += 1
        url = page["next"]
        if url:
            assert url.startswith("/api/v1/photos?") and "limit=3" in url
    assert pages == 3
    assert seen == list(reversed(created))
    assert len(set(seen)) == 7
    taken = [dt.datetime.fromisoformat(
        client.get(f"/api/v1/photos/{i}", headers=admin_headers).json["taken_at"]) for i in seen]
    assert taken == sorted(taken, reverse=True)


def test_list_last_page_exactly_full_has_no_next(client, admin_headers):
    for _ in range(3):
        post_photo(client, admin_headers)
    page = client.get("/api/v1/photos?limit=3", headers=admin_headers).json
    assert len(page["items"]) == 3
    assert page["next"] is None


def test_list_empty(client, admin_headers):
    response = client.get("/api/v1/photos", headers=admin_headers)
    assert response.status_code == 200
    assert response.json["items"] == [] and response.json["next"] is None


def test_list_default_limit_is_50(client, admin_headers, services):
    capture, settings = _capture(services)
    for _ in range(51):
        services.photos.add(capture, settings)
    page = client.get("/api/v1/photos", headers=admin_headers).json
    assert len(page["items"]) == 50 and page["next"]


def _capture(services, **settings):
    resolved = services.capture.resolve({**SMALL, **settings})
    return services.owner.capture(resolved), resolved


def test_list_timelapse_filter(client, admin_headers, services):
    capture, settings = _capture(services)
    frames = [services.photos.add(capture, settings, source="timelapse", timelapse_id="tl-a",
                                  sequence=i).id for i in range(5)]
    others = [services.photos.add(capture, settings, source="timelapse", timelapse_id="tl-b",
                                  sequence=0).id, post_photo(client, admin_headers)["id"]]
    seen = []
    url = "/api/v1/photos?limit=2&timelapse=tl-a"
    while url:
        page = client.get(url, headers=admin_headers).json
        assert all(item["timelapse_id"] == "tl-a" and item["source"] == "timelapse"
                   for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        url = page["next"]
        if url:
            assert "timelapse=tl-a" in url
    assert seen == list(reversed(frames))
    assert [i["sequence"] for i in client.get(
        "/api/v1/photos?timelapse=tl-a", headers=admin_headers).json["items"]] == [4, 3, 2, 1, 0]
    everything = client.get("/api/v1/photos", headers=admin_headers).json["items"]
    assert {i["id"] for i in everything} == {*frames, *others}
    none = client.get("/api/v1/photos?timelapse=nope", headers=admin_headers).json
    assert none["items"] == [] and none["next"] is None


def _first_cursor(client, headers, query="limit=1") -> str:
    next_url = client.get(f"/api/v1/photos?{query}", headers=headers).json["next"]
    assert next_url
    return next_url.split("cursor=")[1].split("&")[0]


@pytest.mark.parametrize("tamper", [
    lambda c: c[:5] + ("A" if c[5] != "A" else "B") + c[6:],
    lambda c: c[:-2],
    lambda c: "garbage",
    lambda c: "!!!!",
    lambda c: c + "AAAA",
])
def test_tampered_cursor_is_400(client, admin_headers, tamper):
    for _ in range(3):
        post_photo(client, admin_headers)
    cursor = _first_cursor(client, admin_headers)
    assert client.get(f"/api/v1/photos?limit=1&cursor={cursor}",
                      headers=admin_headers).status_code == 200
    body = assert_problem(client.get(f"/api/v1/photos?limit=1&cursor={tamper(cursor)}",
                                     headers=admin_headers), 400)
    assert "cursor" in body["detail"]


def test_cursor_from_another_filter_is_400(client, admin_headers, services):
    capture, settings = _capture(services)
    for i in range(3):
        services.photos.add(capture, settings, timelapse_id="tl-a", sequence=i)
    cursor = _first_cursor(client, admin_headers)
    body = assert_problem(client.get(f"/api/v1/photos?limit=1&cursor={cursor}&timelapse=tl-a",
                                     headers=admin_headers), 400)
    assert "cursor" in body["detail"]
    filtered = _first_cursor(client, admin_headers, "limit=1&timelapse=tl-a")
    assert_problem(client.get(f"/api/v1/photos?limit=1&cursor={filtered}",
                              headers=admin_headers), 400)
    assert_problem(client.get(f"/api/v1/photos?limit=1&cursor={filtered}&timelapse=tl-b",
                              headers=admin_headers), 400)


@pytest.mark.parametrize("limit", ["0", "501", "abc", "-1", "1.5"])
def test_bad_limit_is_422_naming_limit(client, admin_headers, limit):
    assert_problem(client.get(f"/api/v1/photos?limit={limit}", headers=admin_headers),
                   422, "limit")


@pytest.mark.parametrize("limit", ["1", "500"])
def test_limit_bounds_are_accepted(client, admin_headers, limit):
    assert client.get(f"/api/v1/photos?limit={limit}", headers=admin_headers).status_code == 200


# -- delete -------------------------------------------------------------------

def test_delete_removes_file_thumbnail_and_row(client, admin_headers, services):
    keep = post_photo(client, admin_headers)
    photo = post_photo(client, admin_headers)
    assert client.get(photo["links"]["thumbnail"], headers=admin_headers).status_code == 200
    path = services.data_dir / services.photos.get(photo["id"]).path
    thumb = services.data_dir / "thumbnails" / f"{photo['id']}.jpg"
    assert path.is_file() and thumb.is_file()

    response = client.delete(photo["links"]["self"], headers=admin_headers, content_type="application/json")
    assert response.status_code == 204
    assert response.data == b""
    assert not path.exists() and not thumb.exists()
    assert services.db.conn.execute("SELECT count(*) FROM photos WHERE id = ?",
                                    (photo["id"],)).fetchone()[0] == 0
    for link in photo["links"].values():
        assert_problem(client.get(link, headers=admin_headers), 404)
    assert_problem(client.delete(photo["links"]["self"], headers=admin_headers, content_type="application/json"), 404)
    # the other photo is untouched
    assert client.get(keep["links"]["image"], headers=admin_headers).status_code == 200
    assert [i["id"] for i in client.get("/api/v1/photos", headers=admin_headers).json[
        "items"]] == [keep["id"]]


# -- caching --------------------------------------------------------------------

def test_image_is_cacheable(client, admin_headers):
    photo = post_photo(client, admin_headers)
    response = client.get(photo["links"]["image"], headers=admin_headers)
    assert response.status_code == 200
    etag = response.headers["ETag"]
    last_modified = response.headers["Last-Modified"]
    assert etag and last_modified
    assert response.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    assert abs(dt.datetime.strptime(last_modified, "%a, %d %b %Y %H:%M:%S GMT").replace(
        tzinfo=dt.timezone.utc) - dt.datetime.fromisoformat(photo["taken_at"])) < dt.timedelta(
        seconds=1)

    again = client.get(photo["links"]["image"], headers=admin_headers)
    assert again.headers["ETag"] == etag

    not_modified = client.get(photo["links"]["image"],
                              headers={**admin_headers, "If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.data == b""
    assert not_modified.headers["ETag"] == etag

    since = client.get(photo["links"]["image"],
                       headers={**admin_headers, "If-Modified-Since": last_modified})
    assert since.status_code == 304 and since.data == b""

    stale = client.get(photo["links"]["image"], headers={**admin_headers,
                                                         "If-None-Match": '"something-else"'})
    assert stale.status_code == 200 and stale.data == response.data
    old = client.get(photo["links"]["image"], headers={
        **admin_headers, "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert old.status_code == 200 and old.data == response.data


def test_different_photos_have_different_etags(client, admin_headers):
    # big enough for the mock's frame counter to show, so the images differ
    etags = {client.get(post_photo(client, admin_headers, width=320, height=240)["links"][
        "image"], headers=admin_headers).headers["ETag"] for _ in range(3)}
    assert len(etags) == 3


def test_thumbnail_is_small_jpeg_made_once(client, admin_headers, services):
    photo = post_photo(client, admin_headers, width=1280, height=720, format="png")
    thumb_path = services.data_dir / "thumbnails" / f"{photo['id']}.jpg"
    assert not thumb_path.exists()

    response = client.get(photo["links"]["thumbnail"], headers=admin_headers)
    assert response.status_code == 200
    assert response.content_type == "image/jpeg"
    assert response.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    limit = services.photos.thumbnail_px
    with Image.open(io.BytesIO(response.data)) as picture:
        assert picture.format == "JPEG"
        assert max(picture.size) <= limit
        assert picture.size == (limit, round(limit * 720 / 1280))
    assert thumb_path.is_file() and thumb_path.read_bytes() == response.data

    first = thumb_path.stat()
    time.sleep(0.01)
    second = client.get(photo["links"]["thumbnail"], headers=admin_headers)
    assert second.status_code == 200 and second.data == response.data
    after = thumb_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)

    cached = client.get(photo["links"]["thumbnail"],
                        headers={**admin_headers, "If-None-Match": response.headers["ETag"]})
    assert cached.status_code == 304


def test_thumbnail_respects_configured_size(make_app, config, admin_headers):
    config["storage"]["thumbnail_px"] = 40
    client = make_app(config).test_client()
    photo = post_photo(client, admin_headers, width=300, height=100)
    with Image.open(io.BytesIO(client.get(photo["links"]["thumbnail"],
                                          headers=admin_headers).data)) as picture:
        assert picture.size == (40, 13)


def test_thumbnail_of_small_photo_is_not_enlarged(client, admin_headers):
    photo = post_photo(client, admin_headers, width=32, height=20)
    with Image.open(io.BytesIO(client.get(photo["links"]["thumbnail"],
                                          headers=admin_headers).data)) as picture:
        assert picture.size == (32, 20)


# -- bad ids ------------------------------------------------------------------

BAD_IDS = ["../../etc/passwd", "%2e%2e%2f", "..%2f..%2fetc%2fpasswd", "/etc/passwd",
           "%2fetc%2fpasswd", "..", "x" * 5000, "20240101T000000000000Z-zzzzzzzz",
           "20240101T000000000000Z-0000000", "20240101T000000000000Z-00000000"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda b: b[:30])
@pytest.mark.parametrize("suffix", ["", "/image", "/thumbnail"])
def test_bad_photo_ids_are_404(client, admin_headers, services, bad, suffix):
    post_photo(client, admin_headers)
    outside_before = files_under(services.data_dir.parent) - files_under(services.data_dir)
    response = client.get(f"/api/v1/photos/{bad}{suffix}", headers=admin_headers)
    assert_problem(response, 404)
    assert b"root:" not in response.data
    if not suffix:
        assert_problem(client.delete(f"/api/v1/photos/{bad}", headers=admin_headers,
                                     content_type="application/json"), 404)
    assert services.photos.stats()["count"] == 1
    assert files_under(services.data_dir.parent) - files_under(services.data_dir) \
        == outside_before


def test_photo_whose_file_is_missing_is_404(client, admin_headers, services):
    photo = post_photo(client, admin_headers)
    (services.data_dir / services.photos.get(photo["id"]).path).unlink()
    assert_problem(client.get(photo["links"]["image"], headers=admin_headers), 404)
    assert_problem(client.get(photo["links"]["thumbnail"], headers=admin_headers), 404)


def test_index_row_pointing_outside_the_data_dir_is_never_served(client, admin_headers,
                                                                 services, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not for you")
    photo = post_photo(client, admin_headers)
    with services.db.transaction() as conn:
        conn.execute("UPDATE photos SET path = ? WHERE id = ?", ("../secret.jpg", photo["id"]))
    response = client.get(photo["links"]["image"], headers=admin_headers)
    assert response.status_code >= 400
    assert b"not for you" not in response.data
    assert response.content_type == PROBLEM


# -- roles --------------------------------------------------------------------

def test_viewer_reads_but_cannot_write(client, admin_headers, viewer_headers, services):
    photo = post_photo(client, admin_headers)
    assert_problem(client.post("/api/v1/photos", headers=viewer_headers, json=SMALL), 403)
    assert_problem(client.delete(photo["links"]["self"], headers=viewer_headers), 403)
    assert services.photos.stats()["count"] == 1
    for url in ("/api/v1/photos", *photo["links"].values()):
        assert client.get(url, headers=viewer_headers).status_code == 200, url


def test_no_credentials_is_401(client, admin_headers):
    photo = post_photo(client, admin_headers)
    assert_problem(client.post("/api/v1/photos", json=SMALL), 401)
    for url in ("/api/v1/photos", *photo["links"].values()):
        assert_problem(client.get(url), 401)
    assert_problem(client.delete(photo["links"]["self"]), 401)


# -- bad bodies ---------------------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({"bogus": 1}, "bogus"),
    ({"width": "640"}, "width"),
    ({"width": 640.5}, "width"),
    ({"height": True}, "height"),
    ({"hflip": "yes"}, "hflip"),
    ({"vflip": 1}, "vflip"),
    ({"quality": 1.5}, "quality"),
    ({"quality": "90"}, "quality"),
    ({"quality": True}, "quality"),
    ({"hflip": None}, "hflip"),
    ({"hflip": 0}, "hflip"),
    ({"width": 15}, "width"),
    ({"height": 15}, "height"),
    ({"width": 4609}, "width"),
    ({"height": 2593}, "height"),
    ({"width": 10**9}, "width"),
    ({"quality": 0}, "quality"),
    ({"quality": 101}, "quality"),
    ({"format": "gif"}, "format"),
    ({"format": "JPEG"}, "format"),
    ({"format": 1}, "format"),
    ({"controls": {"NoSuchControl": 1}}, "controls.NoSuchControl"),
    ({"controls": {"Brightness": 5}}, "controls.Brightness"),
    ({"controls": {"Brightness": -1.5}}, "controls.Brightness"),
    ({"controls": {"Brightness": "bright"}}, "controls.Brightness"),
    ({"controls": {"Brightness": True}}, "controls.Brightness"),
    ({"controls": {"Brightness": None}}, "controls.Brightness"),
    ({"controls": {"AwbMode": 1.5}}, "controls.AwbMode"),
    ({"controls": {"AeEnable": 1}}, "controls.AeEnable"),
    ({"controls": {"ScalerCrop": [0, 0, 16]}}, "controls.ScalerCrop"),
    ({"controls": {"ScalerCrop": "all"}}, "controls.ScalerCrop"),
    ({"controls": {"ScalerCrop": [-1, 0, 16, 16]}}, "controls.ScalerCrop"),
    ({"controls": {"ScalerCrop": [0, 0, 16.5, 16]}}, "controls.ScalerCrop"),
    ({"controls": {"ScalerCrop": [0, 0, 1e17, 16]}}, "controls.ScalerCrop"),  # was a 500
    ({"controls": [1, 2]}, "controls"),
    ({"controls": "Brightness=1"}, "controls"),
    ({"controls": {f"C{i}": 0 for i in range(33)}}, "controls"),
])
def test_bad_capture_request_is_422_naming_the_field(client, admin_headers, services,
                                                     body, field):
    assert_problem(client.post("/api/v1/photos", headers=admin_headers, json=body), 422, field)
    assert services.photos.stats()["count"] == 0
    assert files_under(services.data_dir / "photos") == set()


def test_whole_number_floats_and_a_crop_past_the_sensor_are_taken(client, admin_headers):
    # JSON has one number type: 320.0 is the integer 320, as JSON Schema says.
    photo = post_photo(client, admin_headers, width=320.0, height=240, quality=80.0,
                       controls={"ScalerCrop": [4000, 2000, 4608, 2592]})
    assert (photo["width"], photo["height"], photo["settings"]["quality"]) == (320, 240, 80)
    # The camera clamps a crop that reaches past the sensor, and so does the mock.
    image = client.get(photo["links"]["image"], headers=admin_headers)
    assert Image.open(io.BytesIO(image.data)).size == (320, 240)


def test_every_bad_field_is_named(client, admin_headers):
    body = assert_problem(client.post("/api/v1/photos", headers=admin_headers,
                                      json={"width": 99999, "quality": 0, "extra": 1}), 422)
    assert {"width", "quality", "extra"} <= set(body["errors"])
    body = assert_problem(client.post("/api/v1/photos", headers=admin_headers,
                                      json={"width": 5000, "height": 3000,
                                            "controls": {"Nope": 1, "Contrast": 99}}), 422)
    assert {"width", "height", "controls.Nope", "controls.Contrast"} <= set(body["errors"])


def test_sensor_size_is_the_upper_bound(make_app, config, admin_headers):
    config["camera"]["mock"]["sensor"] = [640, 480]
    client = make_app(config).test_client()
    assert post_photo(client, admin_headers, width=640, height=480)["width"] == 640
    assert post_photo(client, admin_headers, width=16, height=16)["height"] == 16
    body = assert_problem(client.post("/api/v1/photos", headers=admin_headers,
                                      json={"width": 641, "height": 481}), 422)
    assert {"width", "height"} <= set(body["errors"])
    assert "640" in body["errors"]["width"][0]


@pytest.mark.parametrize("raw", ["[1, 2]", "[]", '"width"', "5", "null", "true"])
def test_json_body_that_is_not_an_object_is_422(client, admin_headers, services, raw):
    response = client.post("/api/v1/photos", headers=admin_headers, data=raw,
                           content_type="application/json")
    assert_problem(response, 422)
    assert services.photos.stats()["count"] == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "image/jpeg"])
def test_non_json_body_is_415(client, admin_headers, services, content_type):
    response = client.post("/api/v1/photos", headers=admin_headers, data='{"width": 64}',
                           content_type=content_type)
    assert_problem(response, 415)
    assert services.photos.stats()["count"] == 0


@pytest.mark.parametrize("raw", ['{"width": 64', "{width: 64}", "\xff\xfe", "{'a': 1}"])
def test_malformed_json_is_400(client, admin_headers, services, raw):
    response = client.post("/api/v1/photos", headers=admin_headers, data=raw,
                           content_type="application/json")
    assert_problem(response, 400)
    assert services.photos.stats()["count"] == 0


def test_oversized_body_is_413(make_app, config, admin_headers):
    config["server"] = {"max_body_bytes": 2048}
    app = make_app(config)
    client = app.test_client()
    small = json.dumps({"bogus": "x" * 1500})
    assert_problem(client.post("/api/v1/photos", headers=admin_headers, data=small,
                               content_type="application/json"), 422, "bogus")
    big = json.dumps({**SMALL, "controls": {"Brightness": 0.1}, "pad": "x" * 3000})
    assert_problem(client.post("/api/v1/photos", headers=admin_headers, data=big,
                               content_type="application/json"), 413)
    assert app.extensions["picam"].photos.stats()["count"] == 0


def test_default_body_limit_is_enforced(client, admin_headers, services):
    limit = services.config["server"]["max_body_bytes"]
    big = json.dumps({"pad": "x" * (limit + 1)})
    assert_problem(client.post("/api/v1/photos", headers=admin_headers, data=big,
                               content_type="application/json"), 413)


# -- concurrency --------------------------------------------------------------

def _index_and_files_agree(conn: sqlite3.Connection, data_dir: Path) -> list[str]:
    rows = conn.execute("SELECT id, path, bytes FROM photos").fetchall()
    files = files_under(data_dir / "photos")
    assert {data_dir / path for _, path, _ in rows} == files
    for _, path, size in rows:
        assert (data_dir / path).stat().st_size == size
    assert not list(data_dir.rglob("*.tmp"))
    return [row[0] for row in rows]


def post_concurrently(make_post) -> list[tuple[int, str, str]]:
    """8 threads post 5 photos each, all starting together; (status, id, Location) of each.

    ``make_post()`` runs once per thread and returns that thread's ``post()``,
    so each thread has a client of its own.
    """
    results, errors = [], []
    barrier = threading.Barrier(8)

    def worker():
        post = make_post()
        barrier.wait()
        for _ in range(5):
            try:
                results.append(post())
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert [status for status, _, _ in results] == [201] * 40
    assert len({photo_id for _, photo_id, _ in results}) == 40
    return results


def test_concurrent_posts_through_test_clients(app, admin_headers, services):
    def make_post():
        client = app.test_client()

        def post():
            response = client.post("/api/v1/photos", headers=admin_headers, json=SMALL)
            return response.status_code, response.json.get("id"), response.headers.get("Location")
        return post

    ids = [photo_id for _, photo_id, _ in post_concurrently(make_post)]
    assert sorted(_index_and_files_agree(services.db.conn, services.data_dir)) == sorted(ids)


def test_concurrent_posts_over_real_http(server):
    auth = basic("admin", ADMIN_PASSWORD)

    def make_post():
        session = requests.Session()

        def post():
            response = session.post(server.url + "/api/v1/photos", headers=auth, json=SMALL,
                                    timeout=30)
            return (response.status_code, response.json().get("id"),
                    response.headers.get("Location"))
        return post

    results = post_concurrently(make_post)
    ids = [photo_id for _, photo_id, _ in results]
    assert all(location == f"/api/v1/photos/{i}" for _, i, location in results)

    listed, url = [], server.url + "/api/v1/photos?limit=7"
    while url:
        page = requests.get(url, headers=auth, timeout=10).json()
        listed += [item["id"] for item in page["items"]]
        url = page["next"] and server.url + page["next"]
    assert listed == sorted(ids, reverse=True)

    conn = sqlite3.connect(server.data_dir / "picam.db")
    try:
        assert sorted(_index_and_files_agree(conn, server.data_dir)) == sorted(ids)
    finally:
        conn.close()


def test_openapi_documents_the_photo_statuses(client):
    paths = client.get("/openapi.json").json["paths"]
    create = paths["/api/v1/photos"]["post"]["responses"]
    assert {"201", "400", "401", "403", "413", "415", "422", "503", "507"} <= set(create)
    assert {"200", "400", "422"} <= set(paths["/api/v1/photos"]["get"]["responses"])
    one = paths["/api/v1/photos/{photo_id}"]
    assert {"200", "404"} <= set(one["get"]["responses"])
    assert {"204", "403", "404"} <= set(one["delete"]["responses"])
    assert {"200", "304", "404"} <= set(paths["/api/v1/photos/{photo_id}/image"]["get"][
        "responses"])
    assert {"200", "304", "404", "507"} <= set(paths["/api/v1/photos/{photo_id}/thumbnail"][
        "get"]["responses"])
