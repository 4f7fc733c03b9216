"""GET /api/v1/snapshot.jpg, GET/PATCH /api/v1/camera, and settings that show in images."""
from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat
from conftest import assert_problem

SNAPSHOT = "/api/v1/snapshot.jpg"


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def stored_files(services) -> list:
    return [p for p in services.data_dir.rglob("*")
            if p.is_file() and p.parent != services.data_dir]


def row_count(services) -> int:
    return services.db.conn.execute("SELECT count(*) FROM photos").fetchone()[0]



# -- snapshot -------------------------------------------------------------------

def test_snapshot_is_a_jpeg_of_the_requested_size(client, admin_headers):
    response = client.get(f"{SNAPSHOT}?width=320&height=200&quality=70", headers=admin_headers)
    assert response.status_code == 200
    assert response.content_type == "image/jpeg"
    assert response.headers["Cache-Control"] == "no-store"
    image = open_image(response.data)
    assert image.format == "JPEG"
    assert image.size == (320, 200)


def test_snapshot_without_query_uses_the_defaults(client, admin_headers, services):
    defaults = services.capture.defaults()
    image = open_image(client.get(SNAPSHOT, headers=admin_headers).data)
    assert image.size == (defaults["width"], defaults["height"])


def test_snapshot_quality_changes_the_size(client, admin_headers):
    low = client.get(f"{SNAPSHOT}?width=640&height=480&quality=10", headers=admin_headers)
    high = client.get(f"{SNAPSHOT}?width=640&height=480&quality=95", headers=admin_headers)
    assert low.status_code == high.status_code == 200
    assert len(low.data) * 2 < len(high.data)


def test_snapshot_stores_nothing(client, admin_headers, services):
    for _ in range(3):
        assert client.get(f"{SNAPSHOT}?width=64&height=48",
                          headers=admin_headers).status_code == 200
    assert row_count(services) == 0
    assert stored_files(services) == []
    assert client.get("/api/v1/photos", headers=admin_headers).json["items"] == []


def test_snapshot_is_always_jpeg_even_if_defaults_say_png(client, admin_headers):
    assert client.patch("/api/v1/camera", headers=admin_headers,
                        json={"format": "png"}).status_code == 200
    response = client.get(f"{SNAPSHOT}?width=64&height=48", headers=admin_headers)
    assert response.content_type == "image/jpeg"
    assert open_image(response.data).format == "JPEG"


def test_viewer_may_take_snapshots(client, viewer_headers):
    response = client.get(f"{SNAPSHOT}?width=64&height=48", headers=viewer_headers)
    assert response.status_code == 200
    assert response.content_type == "image/jpeg"


def test_snapshot_needs_credentials(client):
    assert_problem(client.get(SNAPSHOT), 401)


@pytest.mark.parametrize("query, field", [
    ("width=5", "width"),
    ("height=15", "height"),
    ("width=abc", "width"),
    ("width=", "width"),
    ("width=64.5", "width"),
    ("quality=0", "quality"),
    ("quality=101", "quality"),
    ("quality=high", "quality"),
    ("width=4609", "width"),
    ("height=2593", "height"),
])
def test_snapshot_bad_query_is_422_naming_the_field(client, admin_headers, mock_camera,
                                                    query, field):
    frames = mock_camera.frames
    assert_problem(client.get(f"{SNAPSHOT}?{query}", headers=admin_headers), 422, field)
    assert mock_camera.frames == frames  # refused before touching the camera


def test_snapshot_of_a_hung_camera_is_503_in_time_and_heals(client, admin_headers, services,
                                                           mock_camera):
    assert client.get(f"{SNAPSHOT}?width=64&height=48", headers=admin_headers).status_code == 200
    opens = mock_camera.opens
    mock_camera.hang = True
    started = time.monotonic()
    response = client.get(f"{SNAPSHOT}?width=64&height=48", headers=admin_headers)
    elapsed = time.monotonic() - started
    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "3"  # camera.retry_after_s in the test config
    assert elapsed < services.config["camera"]["capture_timeout_s"] + 1

    mock_camera.hang = False
    response = client.get(f"{SNAPSHOT}?width=64&height=48", headers=admin_headers)
    assert response.status_code == 200
    assert open_image(response.data).size == (64, 48)
    assert mock_camera.opens == opens + 1  # reopened after the timeout, no restart


def test_hung_camera_keeps_other_requests_bounded(client, admin_headers, app, services,
                                                  mock_camera):
    """While one capture hangs, a second one waits at most the timeout for the camera."""
    mock_camera.hang = True
    statuses = []

    def snap():
        response = app.test_client().get(f"{SNAPSHOT}?width=64&height=48",
                                          headers=admin_headers)
        statuses.append((response.status_code, response.headers.get("Retry-After")))

    started = time.monotonic()
    threads = [threading.Thread(target=snap) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    timeout = services.config["camera"]["capture_timeout_s"]
    assert time.monotonic() - started < 2 * timeout + 1
    assert [status for status, _ in statuses] == [503, 503]
    assert all(retry for _, retry in statuses)
    mock_camera.hang = False
    assert client.get(f"{SNAPSHOT}?width=64&height=48", headers=admin_headers).status_code == 200


def test_slow_camera_past_the_timeout_is_503(client, admin_headers, mock_camera):
    mock_camera.delay_s = 60
    started = time.monotonic()
    assert_problem(client.get(f"{SNAPSHOT}?width=64&height=48", headers=admin_headers), 503)
    assert time.monotonic() - started < 3
    mock_camera.delay_s = 0
    assert client.get(f"{SNAPSHOT}?width=64&height=48", headers=admin_headers).status_code == 200


def test_failing_camera_is_503_with_retry_after(client, admin_headers, mock_camera, services):
    mock_camera.fail_rate = 1.0
    response = client.get(f"{SNAPSHOT}?width=64&height=48", headers=admin_headers)
    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    photo = client.post("/api/v1/photos", headers=admin_headers, json={"width": 64, "height": 48})
    assert_problem(photo, 503)
    assert "Retry-After" in photo.headers
    assert row_count(services) == 0 and stored_files(services) == []
    mock_camera.fail_rate = 0.0
    assert client.get(f"{SNAPSHOT}?width=64&height=48", headers=admin_headers).status_code == 200


def test_missing_camera_is_503_everywhere(make_app, config, admin_headers):
    config["camera"]["mock"]["missing"] = True
    app = make_app(config)
    client = app.test_client()
    for response in (client.get(SNAPSHOT, headers=admin_headers),
                     client.get("/api/v1/camera", headers=admin_headers),
                     client.post("/api/v1/photos", headers=admin_headers, json={})):
        assert_problem(response, 503)
        assert "Retry-After" in response.headers


# -- GET /camera ------------------------------------------------------------------

def test_get_camera_reports_backend_defaults_and_capabilities(client, admin_headers):
    response = client.get("/api/v1/camera", headers=admin_headers)
    assert response.status_code == 200
    body = response.json
    assert body["backend"] == "mock"
    assert body["defaults"] == {"width": 1920, "height": 1080, "format": "jpeg", "quality": 90,
                                "hflip": False, "vflip": False, "controls": {}}
    caps = body["capabilities"]
    assert caps["sensor_size"] == {"width": 4608, "height": 2592}
    assert set(caps["formats"]) == {"jpeg", "png"}
    assert caps["model"]
    controls = caps["controls"]
    assert {"Brightness", "Contrast", "Saturation", "Sharpness"} <= set(controls)
    assert controls["Brightness"] == {"min": -1.0, "max": 1.0, "default": 0.0}
    for name, info in controls.items():
        assert set(info) == {"min", "max", "default"}, name


def test_get_camera_follows_the_configured_sensor(make_app, config, admin_headers):
    config["camera"]["mock"]["sensor"] = [800, 600]
    body = make_app(config).test_client().get("/api/v1/camera", headers=admin_headers).json
    assert body["capabilities"]["sensor_size"] == {"width": 800, "height": 600}
    assert (body["defaults"]["width"], body["defaults"]["height"]) == (800, 600)


def test_viewer_may_read_camera(client, viewer_headers):
    assert client.get("/api/v1/camera", headers=viewer_headers).status_code == 200


# -- PATCH /camera --------------------------------------------------------------

def test_patch_camera_changes_the_defaults_later_captures_use(client, admin_headers):
    changes = {"width": 320, "height": 240, "quality": 55, "controls": {"Brightness": 0.25}}
    response = client.patch("/api/v1/camera", headers=admin_headers, json=changes)
    assert response.status_code == 200
    assert response.json["defaults"] == {**changes, "format": "jpeg", "hflip": False,
                                         "vflip": False}
    assert client.get("/api/v1/camera", headers=admin_headers).json["defaults"] == \
        response.json["defaults"]

    photo = client.post("/api/v1/photos", headers=admin_headers, json={}).json
    assert (photo["width"], photo["height"]) == (320, 240)
    assert photo["settings"]["quality"] == 55
    assert photo["settings"]["controls"] == {"Brightness": 0.25}
    image = client.get(photo["links"]["image"], headers=admin_headers)
    assert open_image(image.data).size == (320, 240)
    assert open_image(client.get(SNAPSHOT, headers=admin_headers).data).size == (320, 240)

    # a request still overrides a default, and controls merge key by key
    photo = client.post("/api/v1/photos", headers=admin_headers,
                        json={"width": 100, "controls": {"Contrast": 2.0}}).json
    assert (photo["width"], photo["height"]) == (100, 240)
    assert photo["settings"]["controls"] == {"Brightness": 0.25, "Contrast": 2.0}


def test_patch_camera_is_partial(client, admin_headers):
    client.patch("/api/v1/camera", headers=admin_headers,
                 json={"width": 320, "height": 240, "controls": {"Brightness": 0.1}})
    body = client.patch("/api/v1/camera", headers=admin_headers,
                        json={"hflip": True, "controls": {"Saturation": 0.0}}).json
    assert body["defaults"]["width"] == 320 and body["defaults"]["hflip"] is True
    assert body["defaults"]["controls"] == {"Brightness": 0.1, "Saturation": 0.0}


def test_camera_defaults_survive_a_restart(make_app, config, admin_headers):
    app = make_app(config)
    changes = {"width": 640, "height": 360, "format": "png", "vflip": True,
               "controls": {"AwbMode": 2}}
    assert app.test_client().patch("/api/v1/camera", headers=admin_headers,
                                   json=changes).status_code == 200
    app.extensions["picam"].shutdown()

    client = make_app(config).test_client()
    defaults = client.get("/api/v1/camera", headers=admin_headers).json["defaults"]
    assert defaults == {**changes, "quality": 90, "hflip": False}
    photo = client.post("/api/v1/photos", headers=admin_headers, json={}).json
    assert (photo["width"], photo["height"], photo["format"]) == (640, 360, "png")


@pytest.mark.parametrize("changes, field", [
    ({"width": 99999}, "width"),
    ({"width": 4609}, "width"),
    ({"width": 15}, "width"),
    ({"quality": 0}, "quality"),
    ({"quality": 101}, "quality"),
    ({"format": "gif"}, "format"),
    ({"hflip": "yes"}, "hflip"),
    ({"bogus": 1}, "bogus"),
    ({"controls": {"Brightness": 5}}, "controls.Brightness"),
    ({"controls": {"NoSuchControl": 1}}, "controls.NoSuchControl"),
    ({"width": 320, "controls": {"Contrast": "high"}}, "controls.Contrast"),
])
def test_patch_camera_invalid_is_422_and_changes_nothing(client, admin_headers, changes,
                                                         field):
    client.patch("/api/v1/camera", headers=admin_headers, json={"quality": 42})
    before = client.get("/api/v1/camera", headers=admin_headers).json["defaults"]
    assert_problem(client.patch("/api/v1/camera", headers=admin_headers, json=changes),
                   422, field)
    assert client.get("/api/v1/camera", headers=admin_headers).json["defaults"] == before


def test_patch_camera_bad_bodies(client, admin_headers):
    before = client.get("/api/v1/camera", headers=admin_headers).json["defaults"]
    assert_problem(client.patch("/api/v1/camera", headers=admin_headers, data="[1]",
                                content_type="application/json"), 422)
    assert_problem(client.patch("/api/v1/camera", headers=admin_headers, data="{",
                                content_type="application/json"), 400)
    assert_problem(client.patch("/api/v1/camera", headers=admin_headers, data="quality=5",
                                content_type="application/x-www-form-urlencoded"), 415)
    assert client.get("/api/v1/camera", headers=admin_headers).json["defaults"] == before


def test_viewer_cannot_patch_camera(client, admin_headers, viewer_headers):
    before = client.get("/api/v1/camera", headers=admin_headers).json["defaults"]
    assert_problem(client.patch("/api/v1/camera", headers=viewer_headers,
                                json={"quality": 10}), 403)
    assert client.get("/api/v1/camera", headers=admin_headers).json["defaults"] == before


# -- settings show in the pictures ------------------------------------------------

def _photo_image(client, headers, **body) -> Image.Image:
    photo = client.post("/api/v1/photos", headers=headers,
                        json={"width": 320, "height": 240, "format": "png", **body})
    assert photo.status_code == 201, photo.json
    return open_image(client.get(photo.json["links"]["image"], headers=headers).data)


def _mean(image: Image.Image) -> float:
    return sum(ImageStat.Stat(image.convert("RGB")).mean) / 3


# The colour-bar band below the text overlay and above the moving dot: it is the
# same in every frame, so two frames can be compared pixel for pixel there.
BAND = (0, 60, 320, 100)


def test_brightness_brightens(client, admin_headers):
    plain = _photo_image(client, admin_headers)
    bright = _photo_image(client, admin_headers, controls={"Brightness": 0.5})
    dark = _photo_image(client, admin_headers, controls={"Brightness": -0.5})
    assert _mean(bright) > _mean(plain) + 20
    assert _mean(dark) < _mean(plain) - 20


def test_hflip_mirrors_and_vflip_flips(client, admin_headers):
    plain = _photo_image(client, admin_headers)
    mirrored = _photo_image(client, admin_headers, hflip=True)
    assert ImageChops.difference(ImageOps.mirror(plain).crop(BAND),
                                 mirrored.crop(BAND)).getbbox() is None
    assert ImageChops.difference(plain.crop(BAND), mirrored.crop(BAND)).getbbox() is not None
    # the leftmost bar is grey, the rightmost blue
    assert plain.getpixel((5, 80)) == mirrored.getpixel((314, 80)) == (192, 192, 192)
    assert plain.getpixel((314, 80)) == mirrored.getpixel((5, 80)) == (0, 0, 192)

    flipped = _photo_image(client, admin_headers, vflip=True)
    top, bottom = (0, 0, 320, 20), (0, 220, 320, 240)
    assert ImageChops.difference(plain.crop(bottom).transpose(Image.Transpose.FLIP_TOP_BOTTOM),
                                 flipped.crop(top)).getbbox() is None


def test_saturation_zero_is_grey_and_contrast_spreads(client, admin_headers):
    grey = _photo_image(client, admin_headers, controls={"Saturation": 0.0}).crop(BAND)
    red, green, blue = grey.split()
    assert ImageChops.difference(red, green).getbbox() is None
    assert ImageChops.difference(green, blue).getbbox() is None
    plain = _photo_image(client, admin_headers).crop(BAND)
    flat = _photo_image(client, admin_headers, controls={"Contrast": 0.2}).crop(BAND)
    assert sum(ImageStat.Stat(flat).stddev) < sum(ImageStat.Stat(plain).stddev) / 2


def test_default_controls_show_in_later_photos(client, admin_headers):
    plain = _photo_image(client, admin_headers)
    client.patch("/api/v1/camera", headers=admin_headers, json={"controls": {"Brightness": 0.5}})
    assert _mean(_photo_image(client, admin_headers)) > _mean(plain) + 20


def test_stored_defaults_that_no_longer_fit_the_camera_are_not_used(make_app, config,
                                                                    admin_headers):
    """Defaults saved for a bigger sensor must not make every plain capture a 422."""
    app = make_app(config)
    assert app.test_client().patch("/api/v1/camera", headers=admin_headers, json={
        "width": 4000, "height": 500, "quality": 42}).status_code == 200
    app.extensions["picam"].shutdown()

    small = {**config, "camera": {**config["camera"],
                                  "mock": {**config["camera"]["mock"], "sensor": [800, 600]}}}
    app = make_app(small)
    client = app.test_client()
    defaults = client.get("/api/v1/camera", headers=admin_headers).json["defaults"]
    # only the field that no longer fits falls back; the others are kept
    assert (defaults["width"], defaults["height"], defaults["quality"]) == (800, 500, 42)
    photo = client.post("/api/v1/photos", headers=admin_headers, json={})
    assert photo.status_code == 201
    assert (photo.json["width"], photo.json["height"]) == (800, 500)
    assert client.get(SNAPSHOT, headers=admin_headers).status_code == 200
    assert_problem(client.post("/api/v1/photos", headers=admin_headers, json={"width": 801}),
                   422, "width")
    app.extensions["picam"].shutdown()

    # back on the bigger camera, the saved defaults apply again
    client = make_app(config).test_client()
    defaults = client.get("/api/v1/camera", headers=admin_headers).json["defaults"]
    assert (defaults["width"], defaults["height"], defaults["quality"]) == (4000, 500, 42)


def test_patch_camera_null_removes_a_default_control(client, admin_headers):
    set_ = client.patch("/api/v1/camera", headers=admin_headers,
                        json={"controls": {"Brightness": 0.3, "Contrast": 2.0}})
    assert set_.json["defaults"]["controls"] == {"Brightness": 0.3, "Contrast": 2.0}
    removed = client.patch("/api/v1/camera", headers=admin_headers,
                           json={"controls": {"Brightness": None}})
    assert removed.status_code == 200
    assert removed.json["defaults"]["controls"] == {"Contrast": 2.0}
    photo = client.post("/api/v1/photos", headers=admin_headers, json={})
    assert photo.json["settings"]["controls"] == {"Contrast": 2.0}
    # In a capture request, null is no value at all.
    bad = client.post("/api/v1/photos", headers=admin_headers, json={"controls": {"Contrast": None}})
    assert bad.status_code == 422 and "controls.Contrast" in bad.json["errors"]
