"""The web page, end to end: Debian's chromium, driven by Playwright, against ``picam-api serve``.

One server (mock camera, mock pins, an LED, a pwm lamp and a button) and one
browser serve the module; each test has its own browser context, so its own
sessionStorage. Every test also checks that the page logged no console error
and asked no host but the service. Never ``playwright install``: the browser
is /usr/bin/chromium from apt (``.ci/run`` installs it).
"""
from __future__ import annotations

import functools
import http.server
import io
import os
import re
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest
import requests
from playwright import sync_api

from conftest import ADMIN_PASSWORD, BIN, VIEWER_PASSWORD, ServerProcess, basic, wait_for

CHROMIUM = Path("/usr/bin/chromium")
# The flags the machine notes give: no sandbox as root, and no calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
WEB_H264_FPS = 15
GPIO_TOML = f"""
[auth]
# Every test signs in afresh, faster than the default 10 tokens a minute allow.
tokens_per_minute = 1000
[stream.h264]
fps = {WEB_H264_FPS}
[events]
# A closed tab frees its event-stream slot at the next keepalive.
keepalive_s = 1.0
[[gpio.devices]]
name = "led"
pin = 17
kind = "led"
[[gpio.devices]]
name = "lamp"
pin = 18
kind = "pwm"
[[gpio.devices]]
name = "doorbell"
pin = 27
kind = "button"
"""
ADMIN = basic("admin", ADMIN_PASSWORD)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
TIMEOUT_MS = 15_000
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium: apt-get install chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One ``picam-api serve`` for the module, with a viewer account made by the CLI."""
    process = ServerProcess(tmp_path_factory.mktemp("web"), GPIO_TOML).start()
    added = subprocess.run([str(BIN / "picam-api"), "user", "add", "viewer", "--role", "viewer",
                            "--password-stdin", "--config", str(process.config_file)],
                           input=VIEWER_PASSWORD + "\n", text=True, capture_output=True,
                           timeout=30)
    assert added.returncode == 0, added.stderr
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Tab:
    """A page in a fresh context that records console errors and every URL it asks for."""

    def __init__(self, browser, base: str, viewport: dict = DESKTOP):
        self.base = base
        self.context = browser.new_context(viewport=viewport, accept_downloads=True)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.expected_statuses: set[int] = set()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.urls.append(r.url))
        # Console errors name no URL: these say which request a status belongs to.
        self.failed: list[str] = []
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(
            f"{r.request.method} {r.url} {r.status}"))

    def login(self, user: str = "admin", password: str = ADMIN_PASSWORD) -> None:
        self.page.goto(self.base + "/")
        self.page.get_by_label("User name").fill(user)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.locator("#who").wait_for()

    def open(self, tab: str) -> None:
        self.page.get_by_role("navigation").get_by_role("link", name=tab).click()

    def token(self) -> str:
        return self.page.evaluate("JSON.parse(sessionStorage.getItem('picam.session')).token")

    def check(self) -> None:
        """No console error but the HTTP statuses the test caused on purpose; no other host."""
        allowed = re.compile(r"Failed to load resource: the server responded with a status of "
                             rf"({'|'.join(map(str, self.expected_statuses)) or 'none'})\b")
        assert [e for e in self.errors if not allowed.match(e)] == [], self.failed
        foreign = [u for u in self.urls
                   if not u.startswith((self.base + "/", "blob:" + self.base + "/", "data:"))]
        assert foreign == []


@pytest.fixture
def tab(browser, server):
    tab = Tab(browser, server.url)
    yield tab
    tab.context.close()
    tab.check()


def live_frames_change(page) -> bool:
    """Whether the live view (the MJPEG <img> or the WebRTC <video>, whichever shows)
    shows a picture and shows another one a moment later."""
    return page.evaluate("""async () => {
        const image = document.getElementById("live-image");
        const video = document.getElementById("live-video");
        const shown = image.hidden ? video : image;
        const width = shown.naturalWidth || shown.videoWidth;
        if (!width) return false;
        const canvas = document.createElement("canvas");
        canvas.width = width;
        canvas.height = shown.naturalHeight || shown.videoHeight;
        const draw = () => { canvas.getContext("2d").drawImage(shown, 0, 0); return canvas.toDataURL(); };
        const before = draw();
        await new Promise((resolve) => setTimeout(resolve, 800));
        return draw() !== before;
    }""")


def api(server, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, server.url + path, headers=ADMIN, timeout=10, **kwargs)


# -- the flows ------------------------------------------------------------------------


def test_login_shows_live_frames_with_a_signed_url_not_the_token(tab, server):
    tab.login()
    page = tab.page
    assert page.locator("#who-role").text_content() == "operator"
    page.locator("#mock-camera").wait_for()
    page.locator("#mock-pins").wait_for()
    page.get_by_label("Stream").select_option("mjpeg")  # MJPEG is the one with a URL to sign
    page.locator("#live-state").filter(has_text=re.compile("^Live$")).wait_for()  # a frame came
    wait_for(lambda: live_frames_change(page), 10, "live frames")
    token = tab.token()
    stream_urls = [u for u in tab.urls if "/api/v1/stream.mjpg" in u]
    assert stream_urls and all("ticket=" in u for u in stream_urls)
    assert not any(token in u for u in tab.urls)
    assert token not in server.log.read_text()
    session = page.evaluate("sessionStorage.getItem('picam.session')")
    assert ADMIN_PASSWORD not in session


def test_a_wrong_password_shows_an_error(tab):
    tab.expected_statuses.add(401)
    tab.page.goto(tab.base + "/")
    tab.page.get_by_label("User name").fill("admin")
    tab.page.get_by_label("Password").fill("not-the-password")
    tab.page.get_by_role("button", name="Sign in").click()
    error = tab.page.locator("#login-error")
    error.filter(has_text="Wrong user name or password").wait_for()
    assert tab.page.locator("#app").is_hidden()
    assert tab.page.evaluate("sessionStorage.length") == 0


def test_a_photo_taken_shows_in_the_gallery_and_can_be_deleted(tab, server):
    page = tab.page
    page.clock.install()  # time runs as usual until the test moves it on
    tab.login()
    page.on("dialog", lambda dialog: dialog.accept())  # "Delete this photo?"
    page.get_by_role("button", name="Take a photo").click()
    dialog = page.locator("#photo-dialog")
    dialog.wait_for()
    wait_for(lambda: page.eval_on_selector("#photo-image", "i => i.naturalWidth") > 0, 10,
             "the photo in its dialog")
    photo = api(server, "GET", "/api/v1/photos?limit=1").json()["items"][0]
    assert dialog.get_by_text(f"{photo['width']} × {photo['height']}").is_visible()
    assert dialog.get_by_text("ago").or_(dialog.get_by_text("just now")).count() >= 1
    dialog.get_by_role("button", name="Close").click()

    tab.open("Photos")
    card = page.locator(f'#gallery li[data-id="{photo["id"]}"]')
    card.locator("img[src^='blob:']").wait_for()
    assert card.locator("time").get_attribute("title")  # the exact time, on hover
    page.clock.fast_forward("03:00")
    card.locator("time", has_text="3 minutes ago").wait_for()  # kept current
    card.get_by_role("button").click()
    dialog.get_by_role("button", name="Delete").click()
    card.wait_for(state="detached")
    assert api(server, "GET", f"/api/v1/photos/{photo['id']}").status_code == 404


def test_the_gallery_loads_the_next_page_as_it_scrolls(tab, server):
    for _ in range(30):  # more than a page (24)
        assert api(server, "POST", "/api/v1/photos", json={"width": 64, "height": 48}).ok
    total = api(server, "GET", "/api/v1/info").json()["counts"]["photos"]
    tab.login()
    tab.open("Photos")
    gallery = tab.page.locator("#gallery li")
    wait_for(lambda: gallery.count() >= 24, 10, "the first page")
    tab.page.locator("#gallery-end").scroll_into_view_if_needed()
    tab.page.get_by_text("No older photos.").wait_for()
    assert gallery.count() == total
    assert any("cursor=" in url for url in tab.urls)  # the "next" link was followed
    newest = api(server, "GET", "/api/v1/photos?limit=1").json()["items"][0]["id"]
    assert gallery.first.get_attribute("data-id") == newest


def test_a_timelapse_runs_to_the_end_and_its_archive_downloads(tab, server):
    tab.expected_statuses.add(422)
    tab.login()
    page = tab.page
    tab.open("Time-lapses")
    form = page.locator("#timelapse-form")
    submit = form.get_by_role("button", name="Start the time-lapse")
    # Checked in the page first: nothing is sent.
    form.get_by_label("Frames", exact=True).fill("0")
    submit.click()
    assert "How many seconds" in page.locator("#error-interval_s").text_content()
    assert "1 or more" in page.locator("#error-frames").text_content()
    # The server's own rule (timelapse.min_interval_s), shown by the field it names.
    form.get_by_label("Seconds between frames").fill("0.01")
    form.get_by_label("Frames", exact=True).fill("3")
    submit.click()
    page.locator("#error-interval_s").filter(has_text="at least").wait_for()
    assert form.get_by_label("Seconds between frames").get_attribute("aria-invalid") == "true"

    form.get_by_label("Name (optional)").fill("web test")
    form.get_by_label("Seconds between frames").fill("1")
    submit.click()
    job = page.locator("#jobs li", has_text="web test")
    job.locator(".state", has_text="completed").wait_for(timeout=20_000)
    assert "3 of 3 frames: 3 captured" in job.text_content()
    newest = api(server, "GET", "/api/v1/timelapses?limit=1").json()["items"][0]["id"]
    assert page.locator("#jobs li").first.get_attribute("data-id") == newest  # newest first
    with page.expect_download() as download:
        job.get_by_role("button", name="Download frames (.zip)").click()
    assert download.value.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        assert archive.namelist() == ["000001.jpg", "000002.jpg", "000003.jpg"]


def test_switching_the_led_changes_the_mock_pin(tab, server):
    tab.login()
    page = tab.page
    tab.open("GPIO")
    switch = page.get_by_role("switch", name="led on")
    switch.check()
    wait_for(lambda: api(server, "GET", "/api/v1/gpio/led").json()["value"] == 1, 5, "LED on")
    page.locator('[data-name="led"] .value', has_text="On").wait_for()
    switch.uncheck()
    wait_for(lambda: api(server, "GET", "/api/v1/gpio/led").json()["value"] == 0, 5, "LED off")
    page.locator('[data-name="lamp"] input[type=range]').fill("0.5")
    wait_for(lambda: api(server, "GET", "/api/v1/gpio/lamp").json()["value"] == 0.5, 5, "lamp")
    page.locator('[data-name="lamp"] .value', has_text="50 %").wait_for()
    assert page.locator('[data-name="doorbell"]').get_by_text("Inactive").is_visible()


def test_the_motion_tab_switches_on_and_draws_a_mask_on_the_preview(tab, server):
    tab.login()
    page = tab.page
    tab.open("Motion")
    page.locator("#motion-enabled").check()
    wait_for(lambda: api(server, "GET", "/api/v1/motion").json()["enabled"], 5, "motion on")
    preview = page.locator("#motion-preview[src^='blob:']")
    preview.wait_for()
    box = _box(preview)
    page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6, steps=5)
    page.mouse.up()
    masks = wait_for(lambda: api(server, "GET", "/api/v1/motion").json()["masks"], 5, "a mask")
    assert masks[0]["x"] == pytest.approx(0.1, abs=0.02) and masks[0]["w"] == pytest.approx(0.4, abs=0.02)
    assert masks[0]["y"] == pytest.approx(0.2, abs=0.02) and masks[0]["h"] == pytest.approx(0.4, abs=0.02)
    page.locator("#motion-facts", has_text="Masks1").wait_for()
    page.get_by_role("button", name="Clear masks").click()
    wait_for(lambda: api(server, "GET", "/api/v1/motion").json()["masks"] == [], 5, "no mask")
    page.locator("#motion-enabled").uncheck()
    wait_for(lambda: not api(server, "GET", "/api/v1/motion").json()["enabled"], 5, "motion off")


LATE_MOTION_POLLS = """ms => {
    // Every status poll's answer, read when it is sent, reaches the page ms later.
    window.realFetch = window.fetch;
    window.fetch = async (url, init = {}) => {
        const response = await window.realFetch(url, init);
        if (String(url).endsWith("/api/v1/motion") && (init.method || "GET") === "GET")
            await new Promise(done => setTimeout(done, ms));
        return response;
    };
}"""


def test_a_poll_in_flight_does_not_undo_the_motion_switch(tab, server):
    tab.login()
    page = tab.page
    tab.open("Motion")
    page.evaluate(LATE_MOTION_POLLS, 700)
    page.wait_for_timeout(500)  # a poll is out
    page.locator("#motion-enabled").check()
    wait_for(lambda: api(server, "GET", "/api/v1/motion").json()["enabled"], 5, "motion on")
    page.wait_for_timeout(1500)  # the polls sent before the click have come back
    assert page.locator("#motion-enabled").is_checked()
    page.evaluate("() => { window.fetch = window.realFetch; }")
    page.locator("#motion-enabled").uncheck()
    wait_for(lambda: not api(server, "GET", "/api/v1/motion").json()["enabled"], 5, "motion off")


def delete(server, path: str) -> None:
    response = requests.delete(server.url + path, timeout=10,
                               headers={**ADMIN, "Content-Type": "application/json"})
    assert response.status_code == 204, response.text


def test_the_page_follows_the_event_stream_not_polls(tab, server):
    """Changes made elsewhere (here: straight through the API) show at once, with no polling."""
    streams = []
    tab.page.on("request", lambda r: "/api/v1/events" in r.url and streams.append(r))
    tab.login()
    page = tab.page
    tab.open("GPIO")
    page.locator('[data-name="led"] .value', has_text="Off").wait_for()
    api(server, "PATCH", "/api/v1/gpio/led", json={"value": 1})
    page.locator('[data-name="led"] .value', has_text="On").wait_for()
    assert page.get_by_role("switch", name="led on").is_checked()
    api(server, "PATCH", "/api/v1/gpio/led", json={"value": 0})
    page.locator('[data-name="led"] .value', has_text="Off").wait_for()

    tab.open("Time-lapses")
    job = api(server, "POST", "/api/v1/timelapses",
              json={"name": "from-elsewhere", "interval_s": 0.5, "frames": 3, "width": 160,
                    "height": 120}).json()
    card = page.locator(f'#jobs li[data-id="{job["id"]}"]')
    card.get_by_text("from-elsewhere").wait_for()
    card.get_by_text("3 of 3 frames").wait_for()
    card.locator(".state", has_text="completed").wait_for()
    delete(server, job["links"]["self"])
    card.wait_for(state="detached")

    tab.open("Photos")
    photo = api(server, "POST", "/api/v1/photos", json={"width": 160, "height": 120}).json()
    shown = page.locator(f'#gallery li[data-id="{photo["id"]}"]')
    shown.locator("img[src^='blob:']").wait_for()
    delete(server, photo["links"]["self"])
    shown.wait_for(state="detached")

    # One stream, with the token in its header, never in its URL; no list was polled.
    assert len(streams) == 1
    assert streams[0].headers["authorization"] == f"Bearer {tab.token()}"
    assert tab.token() not in streams[0].url and "ticket" not in streams[0].url
    lists = [u for u in tab.urls if u.endswith(("/api/v1/timelapses?limit=50", "/api/v1/gpio"))]
    assert len(lists) <= 4  # each view's load on show, and once when the stream opened


def test_a_viewer_sees_no_operator_controls(tab, server):
    photo = api(server, "POST", "/api/v1/photos", json={"width": 320, "height": 240}).json()
    tab.login("viewer", VIEWER_PASSWORD)
    page = tab.page
    assert page.locator("#who-role").text_content() == "viewer"
    wait_for(lambda: live_frames_change(page), 10, "live frames for a viewer")
    assert page.get_by_role("button", name="Take a photo").is_hidden()
    tab.open("Photos")
    page.locator(f'#gallery li[data-id="{photo["id"]}"]').get_by_role("button").click()
    page.locator("#photo-image[src^='blob:']").wait_for()
    assert page.get_by_role("button", name="Delete").is_hidden()
    assert page.get_by_role("link", name="Download").is_visible()
    page.get_by_role("button", name="Close").click()
    tab.open("Time-lapses")
    assert page.locator("#timelapse-form").is_hidden()
    tab.open("GPIO")
    page.locator('[data-name="led"] .value').wait_for()
    assert page.locator("#devices input, #devices button").count() == 0


def test_logging_out_revokes_the_token(tab, server):
    tab.login()
    token = tab.token()
    tab.page.get_by_role("button", name="Log out").click()
    tab.page.get_by_role("button", name="Sign in").wait_for()
    assert tab.page.evaluate("sessionStorage.length") == 0
    revoked = requests.get(server.url + "/api/v1/info", timeout=5,
                           headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401


def test_logging_out_with_a_poll_out_revokes_the_token_once_it_is_back(tab, server):
    tab.login()
    tab.open("Motion")
    token = tab.token()
    tab.page.evaluate(LATE_MOTION_POLLS, 2000)
    tab.page.wait_for_timeout(1200)  # a poll went at the last tick of the 1 s clock, and is out
    tab.page.get_by_role("button", name="Log out").click()
    tab.page.get_by_role("button", name="Sign in").wait_for()
    assert tab.page.evaluate("sessionStorage.length") == 0
    revoked = lambda: requests.get(server.url + "/api/v1/info", timeout=5,  # noqa: E731
                                   headers={"Authorization": f"Bearer {token}"}).status_code == 401
    wait_for(revoked, 5, "the token revoked")
    tab.page.wait_for_timeout(2500)  # the poll is back
    # No 401 came back to the page (the fixture checks the console), and it says nothing
    # of a session ended by the server.
    assert tab.page.locator("#login-error").text_content() == ""


def test_a_lost_connection_is_shown_and_the_page_recovers(browser, tmp_path):
    own = ServerProcess(tmp_path).start()  # this one is killed mid-test
    tab = Tab(browser, own.url)
    streams = []
    tab.page.on("request", lambda r: "/api/v1/events" in r.url and streams.append(r))
    try:
        tab.login()
        banner = tab.page.locator("#offline")
        wait_for(lambda: live_frames_change(tab.page), 10, "live frames")
        tab.open("Photos")
        photo = api(own, "POST", "/api/v1/photos", json={"width": 160, "height": 120}).json()
        tab.page.locator(f'#gallery li[data-id="{photo["id"]}"]').wait_for()  # its event came
        tab.open("Live")
        wait_for(lambda: live_frames_change(tab.page), 10, "live frames")
        caption = tab.page.locator("#live-state")
        snapshot = tab.page.get_by_role("button", name="Take a photo")
        assert caption.text_content() == "Live" and snapshot.is_enabled()
        own.kill()
        banner.wait_for()
        # What shows is the last frame: not called live, and nothing to press.
        assert "Live" not in caption.text_content()
        assert snapshot.is_disabled()
        own.start()
        banner.wait_for(state="hidden")
        wait_for(lambda: live_frames_change(tab.page), 15, "live frames again")
        # The event stream came back too, resuming after the last event it saw.
        wait_for(lambda: len(streams) >= 2, 15, "the event stream again")
        assert streams[-1].headers["last-event-id"].isdecimal()
        caption.filter(has_text="Live").wait_for()
        assert snapshot.is_enabled()
    finally:
        tab.context.close()
        own.stop()
    # Chromium reports the stream cut short and the connections refused while it was down.
    tab.errors = [e for e in tab.errors if "net::ERR_" not in e]
    tab.check()


ATTACK_PAGE = """<!doctype html>
<title>A page of another site</title>
<form id="form" method="post" action="{api}/api/v1/photos"></form>
<script>
  // What a page of another site can make a browser send without asking the API:
  // a no-cors fetch with a "simple" content type, then an empty form post.
  fetch("{api}/api/v1/photos", {{method: "POST", mode: "no-cors", credentials: "include",
                                 headers: {{"Content-Type": "text/plain"}}, body: "{{}}"}})
    .catch(() => null)
    .finally(() => document.getElementById("form").submit());
</script>
"""


@pytest.fixture
def other_site(tmp_path):
    """A second origin: a plain static server on another port of this host."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{site.server_port}"
    site.shutdown()
    thread.join(5)


def test_a_page_of_another_site_cannot_use_cached_basic_credentials(browser, server, other_site):
    folder, origin = other_site
    (folder / "attack.html").write_text(ATTACK_PAGE.format(api=server.url))
    before = api(server, "GET", "/api/v1/photos?limit=500").json()["items"]
    # The browser holds the password for the API's origin, as after opening an API URL
    # and answering its Basic prompt: it sends it whenever the API asks.
    context = browser.new_context(http_credentials={"username": "admin", "password": ADMIN_PASSWORD,
                                                    "origin": server.url})
    answers: list[tuple[str, int]] = []
    try:
        page = context.new_page()
        page.on("response", lambda r: r.url.startswith(server.url) and answers.append(
            (r.request.method, r.status)))
        page.goto(origin + "/attack.html")
        page.wait_for_url(server.url + "/api/v1/photos", timeout=TIMEOUT_MS)  # the form went
        assert "Cross-site request refused" in page.content()
    finally:
        context.close()
    assert ("POST", 403) in answers, answers
    assert not [status for _, status in answers if status < 400], answers
    assert api(server, "GET", "/api/v1/photos?limit=500").json()["items"] == before


def test_the_docs_page_runs_under_its_policy(tab):
    tab.page.goto(tab.base + "/docs")
    tab.page.locator(".swagger-ui .info .title", has_text="picam-api").wait_for()
    tab.page.locator(".opblock-summary-path", has_text="/api/v1/stream/urls").wait_for()


def test_chromium_plays_a_recorded_clip_and_seeks_with_range_requests(browser, server):
    """A <video> on the service's own origin plays video.mp4 and seeks; Chromium fetches
    it in byte ranges (206), as VLC and Home Assistant do."""
    clip = api(server, "POST", "/api/v1/videos", json={"duration_s": 4, "width": 320,
                                                       "height": 240, "fps": 15})
    assert clip.status_code == 202
    video = wait_for(lambda: (lambda v: v if v["state"] == "ready" else None)(
        api(server, "GET", clip.json()["links"]["self"]).json()), 20, "the clip")
    # A <video> cannot send a bearer token; it gets Basic credentials on the challenge.
    context = browser.new_context(http_credentials={"username": "admin",
                                                    "password": ADMIN_PASSWORD})
    try:
        page = context.new_page()
        statuses = []
        page.on("response", lambda r: "video.mp4" in r.url and statuses.append(
            (r.status, r.request.headers.get("range"))))
        page.goto(server.url + "/")
        played = page.evaluate("""async (src) => {
            const video = document.createElement("video");
            video.muted = true;
            video.src = src;
            document.body.append(video);
            const once = (name) => new Promise((resolve, reject) => {
                video.addEventListener(name, resolve, {once: true});
                video.addEventListener("error", () => reject(video.error.message), {once: true});
            });
            await once("loadedmetadata");
            const size = [video.videoWidth, video.videoHeight, video.duration];
            await video.play();
            while (video.currentTime < 0.5) await new Promise((r) => setTimeout(r, 50));
            video.pause();
            const seeks = [];
            for (const target of [3.0, 1.0, 2.5]) {
                video.currentTime = target;
                await once("seeked");
                seeks.push(video.currentTime);
            }
            return {size, seeks};
        }""", video["links"]["video"])
    finally:
        context.close()
    width, height, duration = played["size"]
    assert (width, height) == (320, 240)
    assert duration == pytest.approx(video["duration_s"], abs=0.2)
    assert [round(t, 1) for t in played["seeks"]] == [3.0, 1.0, 2.5]
    assert any(status == 206 and header and header.startswith("bytes=")
               for status, header in statuses), statuses


# -- every view at phone and desktop size (the README's screenshots) ------------------


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_every_view_renders(browser, server, size, tmp_path):
    # PICAM_SCREENSHOTS=1 keeps the pictures in docs/screenshots for the README.
    shots = SCREENSHOTS if os.environ.get("PICAM_SCREENSHOTS") else tmp_path
    api(server, "POST", "/api/v1/timelapses", json={"name": "garden", "interval_s": 1,
                                                    "frames": 5, "width": 640, "height": 480})
    for _ in range(3):
        api(server, "POST", "/api/v1/photos", json={"width": 1280, "height": 720})
    tab = Tab(browser, server.url, PHONE if size == "phone" else DESKTOP)
    shots.mkdir(parents=True, exist_ok=True)
    try:
        tab.page.goto(server.url + "/")
        tab.page.screenshot(path=shots / f"login-{size}.png")
        tab.login()
        wait_for(lambda: live_frames_change(tab.page), 10, "live frames")
        tab.page.screenshot(path=shots / f"live-{size}.png")
        for view, ready in (("Photos", "#gallery img[src^='blob:']"),
                            ("Time-lapses", "#jobs li"), ("GPIO", "#devices li"),
                            ("Status", "#status-list dd")):
            tab.open(view)
            tab.page.locator(ready).first.wait_for()
            tab.page.wait_for_timeout(500)  # the rest of the thumbnails
            tab.page.screenshot(path=shots / f"{view.lower()}-{size}.png")
        tab.open("Photos")
        tab.page.locator("#gallery .thumb").first.click()
        tab.page.locator("#photo-image[src^='blob:']").wait_for()
        tab.page.screenshot(path=shots / f"photo-{size}.png")
    finally:
        tab.context.close()
    tab.check()
    pictures = sorted(shots.glob(f"*-{size}.png"))
    assert len(pictures) == 7
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures)


# -- the first hour (issue 17) ----------------------------------------------------------


def _box(locator) -> dict:
    box = locator.bounding_box()
    assert box is not None, locator
    return box


def test_desktop_form_errors_sit_under_their_own_fields(tab):
    tab.login()
    tab.open("Time-lapses")
    form = tab.page.locator("#timelapse-form")
    form.get_by_label("Frames", exact=True).fill("0")
    form.get_by_role("button", name="Start the time-lapse").click()
    for name, label in (("interval_s", "Seconds between frames"), ("frames", "Frames")):
        error, field = tab.page.locator(f"#error-{name}"), form.get_by_label(label, exact=True)
        error.wait_for()
        under, above = _box(error), _box(field)
        # The same column, just below the field (not in the grid's next cell).
        assert abs(under["x"] - above["x"]) < 2, name
        assert 0 <= under["y"] - (above["y"] + above["height"]) < 40, name


def test_take_a_photo_is_in_sight_on_a_1280x800_desktop(tab):
    tab.login()
    tab.page.locator("#mock-camera").wait_for()  # the banners take room too
    tab.page.locator("#live-state", has_text="Live").wait_for()
    button = _box(tab.page.get_by_role("button", name="Take a photo"))
    assert button["y"] + button["height"] <= DESKTOP["height"]
    assert tab.page.evaluate("window.scrollY") == 0


def test_a_new_timelapse_on_a_phone_is_brought_into_view(browser, server):
    tab = Tab(browser, server.url, PHONE)
    try:
        tab.login()
        tab.open("Time-lapses")
        form = tab.page.locator("#timelapse-form")
        form.get_by_label("Name (optional)").fill("phone job")
        form.get_by_label("Seconds between frames").fill("3600")
        form.get_by_label("Frames", exact=True).fill("1")
        form.get_by_role("button", name="Start the time-lapse").click()
        job = tab.page.locator("#jobs li.new", has_text="phone job")
        job.wait_for()
        wait_for(lambda: job.evaluate("e => { const r = e.getBoundingClientRect(); "
                                      "return r.top >= 0 && r.bottom <= innerHeight; }"),
                 5, "the new job scrolled into view")
    finally:
        tab.context.close()
    tab.check()


def test_the_status_names_the_mock_camera_once(tab):
    tab.login()
    tab.open("Status")
    row = tab.page.locator("#status-list dd").first
    row.filter(has_text="Pillow test pattern").wait_for()
    assert row.text_content() == "mock (Pillow test pattern)"


def test_loading_a_view_again_revalidates_with_its_etag(tab, server):
    tab.login()
    tab.open("Time-lapses")
    tab.page.locator("#jobs-empty, #jobs li").first.wait_for()
    tab.open("Live")
    # Back on the tab, the list loads again: the browser asks with the ETag it kept,
    # which the server answers with a bodyless 304 (Chromium then reports the 200 it kept).
    with tab.page.expect_request(lambda r: "/api/v1/timelapses?" in r.url
                                 and "if-none-match" in r.all_headers()) as asked:
        tab.open("Time-lapses")
    request = asked.value
    again = requests.get(request.url, headers={**ADMIN, "If-None-Match": request.all_headers()[
        "if-none-match"]}, timeout=10)
    assert again.status_code == 304 and again.content == b""


def webrtc_peers(server) -> int:
    return api(server, "GET", "/api/v1/info").json()["h264"]["webrtc"]["peers"]


def test_chromium_plays_the_live_view_over_webrtc_and_switches_to_mjpeg(browser, tmp_path):
    # A server of its own: the module's has the peers of other tests' tabs, which end
    # only when ICE consent runs out (30 s) if their tab closed before it could say so.
    server = ServerProcess(tmp_path, f"[stream.h264]\nfps = {WEB_H264_FPS}\n").start()
    tabs = [Tab(browser, server.url), Tab(browser, server.url)]
    try:
        for tab in tabs:
            tab.login()
            assert tab.page.get_by_label("Stream").input_value() == "webrtc"
            tab.page.locator("#live-state").filter(has_text=re.compile("^Live$")).wait_for()
        page = tabs[0].page
        played = page.evaluate("""() => new Promise((resolve) => {
            const video = document.getElementById("live-video");
            const frames = [];
            const step = (now, meta) => {
                frames.push(meta.mediaTime);
                if (frames.length > 1 && now - start >= 5000) {
                    resolve({frames, width: video.videoWidth, height: video.videoHeight});
                } else video.requestVideoFrameCallback(step);
            };
            const start = performance.now();
            video.requestVideoFrameCallback(step);
        })""")
        assert (played["width"], played["height"]) == (640, 480)
        times = played["frames"]
        assert times == sorted(times) and len(set(times)) >= WEB_H264_FPS * 5 // 2, times
        h264 = api(server, "GET", "/api/v1/info").json()["h264"]
        # Two browsers, one encode: one encoder with both peers on it.
        assert [(e["size"], e["feeds"]) for e in h264["encoders"] if e["feeds"]] == [("640x480", 2)]
        assert h264["webrtc"]["peers"] == 2
        page.get_by_label("Stream").select_option("mjpeg")
        assert page.locator("#live-video").is_hidden()
        wait_for(lambda: live_frames_change(page), 10, "MJPEG frames after the switch")
        wait_for(lambda: webrtc_peers(server) == 1, 10, "the switched tab's peer to end")
        page.get_by_label("Stream").select_option("webrtc")
        wait_for(lambda: webrtc_peers(server) == 2, 10, "the tab's peer back")
        # Logging out ends the session with a DELETE sent before the token is revoked,
        # not 30 s later when ICE consent runs out.
        page.get_by_role("button", name="Log out").click()
        wait_for(lambda: webrtc_peers(server) == 1, 5, "the logged out tab's peer to end")
        tabs[1].context.close()  # closing the tab frees its slot
        wait_for(lambda: webrtc_peers(server) == 0, 15, "the closed tab's peer to end")
    finally:
        for tab in tabs:
            tab.context.close()
        server.stop()
    for tab in tabs:
        tab.check()
