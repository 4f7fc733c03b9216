"""WebRTC over WHEP: aiortc as the viewer, over real HTTP to ``picam-api serve``.

The server runs the mock camera at 15 fps; each peer decodes what it gets
(aiortc decodes H.264 with PyAV) and reads the mock's stamp (frame counter and
clock) out of the picture. Two peers share one encoder: they get the very same
frames (the same counter and clock values), which a per-peer encode could not give.
"""
from __future__ import annotations

import asyncio
import json
import random
import re
import string
import subprocess
import threading
import time
import types

import aiortc
import pytest
import requests

from conftest import (ADMIN_PASSWORD, BIN, PROBLEM, VIEWER_PASSWORD, ServerProcess, assert_problem,
                      basic, wait_for)
from picam_api.camera.base import CameraBackend
from picam_api.camera.mock_video import read_stamp
from picam_api.config import from_mapping
from picam_api.errors import ConfigError
from picam_api.h264_live import Feed
from picam_api.webrtc import Session
from webrtc_viewer import Viewer, offer_sdp

WHEP = "/api/v1/stream/whep"
SDP = {"Content-Type": "application/sdp"}
ADMIN = basic("admin", ADMIN_PASSWORD)
JSON = {"Content-Type": "application/json"}
FRAMES = 12
# Enough of an offer to get past the first look, not enough to answer.
VIDEO_OFFER = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n"
SERVER_TOML = """
[stream]
sizes = [[320, 240], [640, 480]]
[stream.h264]
fps = 15
max_peers = 3
size = [320, 240]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("whep"), SERVER_TOML).start()
    yield process
    process.stop()


def h264_info(server) -> dict:
    return requests.get(server.url + "/api/v1/info", headers=ADMIN, timeout=10).json()["h264"]


def no_peers(server) -> bool:
    return h264_info(server)["webrtc"]["peers"] == 0


@pytest.fixture(autouse=True)
def all_peers_gone(server):
    """Each test starts with no peer and ends its own."""
    wait_for(lambda: no_peers(server), what="the previous test's peers to end")
    yield


def stamps(frames) -> list[tuple[int, int]]:
    return [read_stamp(frame.to_ndarray(format="gray")) for frame in frames]


def test_a_peer_gets_decodable_h264_of_the_configured_size(server):
    async def watch():
        viewer = Viewer(server.url + WHEP)
        response = await viewer.connect()
        try:
            return response, await viewer.frames(FRAMES)
        finally:
            await viewer.close()

    response, frames = asyncio.run(watch())
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/sdp"
    assert response.headers["Location"].startswith(WHEP + "/")
    answer = response.text
    assert "H264/90000" in answer and "VP8" not in answer
    candidates = [line for line in answer.splitlines() if line.startswith("a=candidate:")]
    # No STUN server is configured, so none was asked: host candidates only.
    assert candidates and all(" typ host" in line for line in candidates)
    assert {(frame.width, frame.height) for frame in frames} == {(320, 240)}
    counters = [frame for frame, _ in stamps(frames)]
    assert counters == sorted(counters) and len(set(counters)) == FRAMES, counters


def test_two_peers_share_one_encoder(server):
    started = h264_info(server)["encoders_started"]

    async def watch():
        viewers = [Viewer(server.url + WHEP + "?size=640x480") for _ in range(2)]
        try:
            for viewer in viewers:
                assert (await viewer.connect()).status_code == 201
            got = await asyncio.gather(*(viewer.frames(FRAMES) for viewer in viewers))
            return got, h264_info(server)
        finally:
            for viewer in viewers:
                await viewer.close()

    (first, second), info = asyncio.run(watch())
    # (The first test's 320x240 encoder may still be idling out beside it.)
    assert [(e["size"], e["feeds"]) for e in info["encoders"] if e["feeds"]] == [("640x480", 2)]
    assert info["encoders_started"] == started + 1
    # The same frames, byte for byte from one encode: the same counter and clock.
    assert set(stamps(first)) & set(stamps(second))
    assert {(f.width, f.height) for f in first + second} == {(640, 480)}


def test_the_peer_cap_answers_503_with_retry_after_and_a_delete_frees_a_slot(server):
    async def fill():
        viewers = [Viewer(server.url + WHEP) for _ in range(4)]
        responses = [await viewer.connect() for viewer in viewers]
        try:
            refused = responses[3]
            deleted = requests.delete(server.url + responses[0].headers["Location"],
                                      headers={**ADMIN, **JSON}, timeout=10)
            again = requests.delete(server.url + responses[0].headers["Location"],
                                    headers={**ADMIN, **JSON}, timeout=10)
            extra = Viewer(server.url + WHEP)
            viewers.append(extra)
            return responses, refused, deleted, again, await extra.connect()
        finally:
            for viewer in viewers:
                await viewer.close()

    responses, refused, deleted, again, after = asyncio.run(fill())
    assert [r.status_code for r in responses[:3]] == [201, 201, 201]
    assert_problem(refused, 503)
    assert int(refused.headers["Retry-After"]) > 0
    assert "stream.h264.max_peers" in refused.json()["detail"]
    assert deleted.status_code == 204
    assert_problem(again, 404)
    assert after.status_code == 201


def test_a_peer_that_closes_frees_its_slot(server):
    async def watch_and_leave():
        viewer = Viewer(server.url + WHEP)
        await viewer.connect()
        await viewer.frames(2)
        assert h264_info(server)["webrtc"]["peers"] == 1
        await viewer.close(delete=False)  # DTLS close_notify only, as from a closed tab
        return viewer.response.headers["Location"]

    location = asyncio.run(watch_and_leave())
    wait_for(lambda: no_peers(server), what="the closed peer's slot to be freed")
    # A page's DELETE that its own close beat to the server is no error, once.
    delete = lambda: requests.delete(server.url + location, headers={**ADMIN, **JSON}, timeout=10)  # noqa: E731
    assert delete().status_code == 204
    assert_problem(delete(), 404)


def test_the_encoder_stops_after_the_last_peer(server):
    wait_for(lambda: h264_info(server)["encoders"] == [], timeout=15,
             what="the idle encoders to stop (stream.idle_stop_s after the last peer)")


def test_whep_needs_credentials(server):
    async def anonymous():
        viewer = Viewer(server.url + WHEP, headers={})
        try:
            return await viewer.connect()
        finally:
            await viewer.close()

    assert_problem(asyncio.run(anonymous()), 401)


def test_a_viewer_ends_only_its_own_sessions(server):
    added = subprocess.run([str(BIN / "picam-api"), "user", "add", "viewer", "--role", "viewer",
                            "--password-stdin", "--config", str(server.config_file)],
                           input=VIEWER_PASSWORD + "\n", text=True, capture_output=True,
                           timeout=30)
    assert added.returncode == 0, added.stderr
    viewer_auth = {**basic("viewer", VIEWER_PASSWORD), **JSON}

    async def run():
        admins, viewers = Viewer(server.url + WHEP), Viewer(server.url + WHEP, viewer_auth)
        try:
            theirs, own = await admins.connect(), await viewers.connect()
            return [requests.delete(server.url + response.headers["Location"],
                                    headers=viewer_auth, timeout=10) for response in (theirs, own)]
        finally:
            await admins.close()
            await viewers.close()

    theirs, own = asyncio.run(run())
    assert_problem(theirs, 404)
    assert own.status_code == 204


@pytest.mark.parametrize("body, content_type, status", [
    ("v=0\r\nthis is not sdp", "application/sdp", 400),
    ("", "application/sdp", 400),
    ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", "application/sdp", 400),
    # What aiortc's parser meets in a mangled offer: AssertionError, IndexError, ValueError.
    ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\na=ssrc:x\r\n",
     "application/sdp", 400),
    ("v=0\r\nm=video\r\n", "application/sdp", 400),
    ('{"sdp": "v=0"}', "application/json", 415),
    ("v=0", "text/plain", 415),
])
def test_a_bad_offer_is_a_problem(server, body, content_type, status):
    response = requests.post(server.url + WHEP, data=body.encode(),
                             headers={**ADMIN, "Content-Type": content_type}, timeout=10)
    assert_problem(response, status)
    assert no_peers(server)


def test_an_offer_without_h264_is_a_400(server):
    async def vp8_only():
        pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        transceiver = pc.addTransceiver("video", direction="recvonly")
        transceiver.setCodecPreferences(
            [c for c in aiortc.RTCRtpReceiver.getCapabilities("video").codecs
             if c.mimeType == "video/VP8"])
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    response = requests.post(server.url + WHEP, data=asyncio.run(vp8_only()),
                             headers={**ADMIN, **SDP}, timeout=10)
    body = assert_problem(response, 400)
    assert "H.264" in body["detail"]


def test_an_unknown_size_is_a_422(server):
    response = requests.post(server.url + WHEP + "?size=1x1", data=b"v=0",
                             headers={**ADMIN, **SDP}, timeout=10)
    assert_problem(response, 422, "size")


def test_another_sites_page_may_not_offer(server):
    response = requests.post(server.url + WHEP, data=b"v=0", timeout=10,
                             headers={**ADMIN, **SDP, "Origin": "https://evil.example"})
    assert_problem(response, 403)


def test_a_whep_ticket_opens_one_offer(server):
    issued = requests.post(server.url + "/api/v1/stream/urls?stream=whep",
                           headers={**ADMIN, **JSON}, timeout=10)
    assert issued.status_code == 201
    url = issued.json()["url"]
    assert url.startswith(WHEP + "?ticket=")
    mjpeg = requests.post(server.url + "/api/v1/stream/urls", headers={**ADMIN, **JSON},
                          timeout=10).json()["url"]

    async def offers():
        viewers = [Viewer(server.url + url, headers={}), Viewer(server.url + url, headers={}),
                   Viewer(server.url + WHEP + "?" + mjpeg.split("?", 1)[1], headers={})]
        try:
            return [await viewer.connect() for viewer in viewers]
        finally:
            for viewer in viewers:
                await viewer.close()

    first, spent, wrong_route = asyncio.run(offers())
    assert first.status_code == 201
    assert "spent" in assert_problem(spent, 401)["detail"]
    assert "not valid for this URL" in assert_problem(wrong_route, 401)["detail"]


def test_an_expired_whep_ticket_is_refused(client, services, admin_headers):
    class Later:
        def time(self):
            return time.time() + services.config["stream"]["url_ttl_s"] + 1

    url = client.post("/api/v1/stream/urls?stream=whep", headers=admin_headers,
                      content_type="application/json").json["url"]
    services.stream_urls.clock = Later()
    response = client.post(url, data="v=0", content_type="application/sdp")
    assert response.status_code == 401
    assert response.content_type == PROBLEM
    assert json.loads(response.data)["detail"].startswith("the stream ticket has expired")


def test_a_backend_without_an_h264_encoder_is_a_clear_503(client, services, admin_headers):
    # The seam: a backend that has no start_encoder of its own (the base class's).
    services.backend.start_encoder = types.MethodType(CameraBackend.start_encoder, services.backend)
    response = client.post(WHEP, data=VIDEO_OFFER, headers=admin_headers,
                           content_type="application/sdp")
    body = assert_problem(response, 503)
    assert body["detail"].startswith("live H.264 needs a camera backend with an H.264 encoder")
    assert services.whep.stats()["peers"] == 0


def test_live_h264_may_be_turned_off(make_app, config, admin_headers):
    config["stream"] = {"h264": {"enabled": False}}
    client = make_app(config).test_client()
    assert client.get("/api/v1/info", headers=admin_headers).json["h264"]["enabled"] is False
    response = client.post(WHEP, data=VIDEO_OFFER, headers=admin_headers,
                           content_type="application/sdp")
    assert "stream.h264.enabled" in assert_problem(response, 503)["detail"]


@pytest.mark.parametrize("h264, message", [
    ({"size": [800, 600]}, "stream.h264.size: must be one of stream.sizes"),
    ({"stun_urls": ["http://stun.example.org"]}, "stream.h264.stun_urls"),
    ({"max_peers": 0}, "stream.h264.max_peers"),
])
def test_bad_h264_config_is_one_clear_line(h264, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_mapping({"stream": {"h264": h264}})


def test_an_odd_h264_size_is_refused_at_start():
    with pytest.raises(ConfigError, match="stream.h264.size: must be even"):
        from_mapping({"stream": {"sizes": [[321, 240]]}})


def test_a_delete_racing_the_peers_own_end_is_never_a_404(services, monkeypatch):
    # The page DELETEs its session as it closes the peer, whose close also ends the
    # session: the DELETE may come while the server is still ending it.
    whep = services.whep
    whep._sessions["racing"] = Session("racing", "admin", (320, 240))
    answered = []
    monkeypatch.setattr(whep, "_release", lambda session: answered.append(
        whep.end("racing", user="admin")))  # the DELETE, mid-way through the end
    whep._ended("racing", "closed")
    assert answered == [None] and "racing" not in whep._sessions


def test_an_encoder_stopped_under_its_viewers_tells_them_and_the_next_starts_anew(services):
    class Counting(Feed):
        def __init__(self):
            super().__init__()
            self.stopped = threading.Event()

        def deliver(self, data, keyframe, timestamp):
            return True

        def encoder_stopped(self):
            self.stopped.set()

    hub, feed = services.h264, Counting()
    hub.attach(feed, (640, 480))
    wait_for(lambda: feed.frames, what="frames")
    services.owner.close()  # what a camera fault does: the backend closes, encoders with it
    assert feed.stopped.wait(5) and feed.encoder is None
    assert hub.stats()["encoders"] == []
    again = Counting()
    hub.attach(again, (640, 480))
    wait_for(lambda: again.frames, what="frames from a new encoder")
    assert hub.stats()["encoders_started"] == 2
    hub.detach(again)


def test_the_openapi_document_says_the_offer_is_sdp(client):
    operation = client.get("/openapi.json").json["paths"][WHEP]["post"]
    assert list(operation["requestBody"]["content"]) == ["application/sdp"]
    assert "application/sdp" in operation["responses"]["201"]["content"]


def test_mangled_offers_are_400s_never_500s(client, services, admin_headers):
    async def real_offer():
        pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        sdp = await offer_sdp(pc)
        await pc.close()
        return sdp

    offer = asyncio.run(real_offer())
    rnd = random.Random(16)
    statuses = set()
    for _ in range(40):
        text = list(offer)
        for _ in range(rnd.randint(1, 12)):  # what aiortc's parser meets in the wild
            text[rnd.randrange(len(text))] = rnd.choice(string.printable)
        response = client.post(WHEP, data="".join(text), headers=admin_headers,
                               content_type="application/sdp")
        statuses.add(response.status_code)
        if response.status_code == 201:
            client.delete(response.headers["Location"], headers=admin_headers,
                          content_type="application/json")
        else:
            assert_problem(response, 400)
    assert 400 in statuses
    wait_for(lambda: services.whep.stats()["peers"] == 0, what="every peer to end")
