"""RTSP publishing, against a real RTSP server: ffmpeg's own listen mode.

``ffmpeg -rtsp_flags listen`` takes the ANNOUNCE/RECORD of one publisher and
copies what arrives into an MP4, which ffprobe then reads. Ending that ffmpeg
and starting another is a media server restart: publishing must resume.
"""
from __future__ import annotations

import subprocess

import requests

from conftest import ADMIN_PASSWORD, ServerProcess, basic, ffprobe, free_port, wait_for
from picam_api.rtsp_publish import parameter_sets, redacted

FPS = 15
SECONDS = 3


def receive(port: int, out) -> subprocess.Popen:
    """An RTSP server for one publisher that keeps ``SECONDS`` of what it gets in ``out``."""
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_flags", "listen", "-timeout", "30",
         "-i", f"rtsp://127.0.0.1:{port}/picam", "-c", "copy", "-t", str(SECONDS), "-y", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_the_stream_arrives_and_publishing_resumes_after_the_server_restarts(tmp_path):
    port = free_port()
    first = receive(port, tmp_path / "first.mp4")
    server = ServerProcess(tmp_path, f"""
[stream.h264]
fps = {FPS}
size = [640, 480]
[stream.rtsp]
publish_url = "rtsp://127.0.0.1:{port}/picam"
reconnect_max_s = 2
""").start()
    try:
        assert first.wait(30) == 0, first.stderr.read()
        # The receiver is gone (a media server restart): the publisher backs off and retries.
        second = receive(port, tmp_path / "second.mp4")
        assert second.wait(30) == 0, second.stderr.read()
        rtsp = requests.get(server.url + "/api/v1/info", headers=basic("admin", ADMIN_PASSWORD),
                            timeout=10).json()["h264"]["rtsp"]
    finally:
        server.stop()
    for name in ("first.mp4", "second.mp4"):
        video = ffprobe(tmp_path / name)
        assert (video["codec_name"], video["width"], video["height"]) == ("h264", 640, 480)
        assert video["profile"] == "Constrained Baseline"
        assert abs(video["frames"] - FPS * SECONDS) <= FPS // 2, video
    assert rtsp["connections"] >= 2 and rtsp["state"] in ("publishing", "waiting", "connecting")


def test_the_server_may_be_down_at_start(tmp_path):
    port = free_port()
    server = ServerProcess(tmp_path, f"""
[stream.h264]
fps = {FPS}
[stream.rtsp]
publish_url = "rtsp://127.0.0.1:{port}/picam"
reconnect_max_s = 1
""").start()
    headers = basic("admin", ADMIN_PASSWORD)
    try:
        down = wait_for(lambda: requests.get(server.url + "/api/v1/info", headers=headers,
                                             timeout=10).json()["h264"]["rtsp"]["last_error"],
                        what="a failed connection")
        late = receive(port, tmp_path / "late.mp4")
        assert late.wait(30) == 0, late.stderr.read()
    finally:
        server.stop()
    assert "refused" in down.lower()
    assert ffprobe(tmp_path / "late.mp4")["frames"] > FPS


def test_parameter_sets_are_found_in_a_keyframe():
    sps, pps = b"\x67\x42\xc0\x1e\xda", b"\x68\xce\x3c\x80"
    keyframe = (b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps
                + b"\x00\x00\x01\x06\x05\x01" + b"\x00\x00\x01\x65\x88\x84")
    assert parameter_sets(keyframe) == b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps


def test_the_password_stays_out_of_the_log():
    assert redacted("rtsp://cam:s3cret@10.0.0.2:8554/picam") == "rtsp://cam:***@10.0.0.2:8554/picam"
    assert redacted("rtsp://10.0.0.2/picam") == "rtsp://10.0.0.2/picam"
