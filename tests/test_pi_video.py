"""Clips on the picamera2 backend: the REAL picamera2's H.264 encoders and outputs over
the simulated libcamera (tests/simcam), checked with ffprobe.

A Pi 4 (VC4) encodes through the V4L2 codec at the simulated /dev/video11; a
Pi 5 (PiSP) with picamera2's LibavH264Encoder (libx264). The MP4 is picamera2's
PyavOutput, the pre-roll its CircularOutput2. tests/test_pi_versions.py checks
that the oldest picamera2 supported refuses to record, saying why.
"""
from __future__ import annotations

import threading

import pytest

from conftest import ffprobe, mp4_boxes, wait_for
from picam_api.camera.base import CaptureSettings, VideoSettings
from picam_api.errors import CameraBusy, InsufficientCameraMemory
from picam_api.h264_live import FanOut, Feed
from test_pi_backend import STREAM, TIMEOUT, decoded, streamed

VIDEO = VideoSettings(width=640, height=480, fps=15.0, bitrate=2_000_000, keyframe_s=0.5)


LIVE = VideoSettings(width=320, height=240, fps=15.0, bitrate=10**6, keyframe_s=0.5)


class LiveView(Feed):
    """What the hub's fan-out gives a viewer, decoded: the frame sizes in order."""

    def __init__(self):
        import av

        super().__init__()
        self.output = FanOut(self._stopped)
        self.output.feeds = (self,)
        self.stopped = False
        self.sizes: list[tuple[int, int]] = []
        self.timestamps: list[int] = []
        self._decoder = av.CodecContext.create("h264", "r")

    def deliver(self, data: bytes, keyframe: bool, timestamp: int) -> bool:
        import av

        self.timestamps.append(timestamp)
        self.sizes += [(f.width, f.height) for f in self._decoder.decode(av.Packet(data))]
        return True

    def _stopped(self) -> None:
        self.stopped = True

    def frames_of(self, size, count: int = 5) -> None:
        """Until ``count`` more frames of ``size`` arrive."""
        seen = self.sizes.count(size)
        wait_for(lambda: self.sizes.count(size) >= seen + count, 20, f"{count} frames of {size}")


def runs(sizes: list) -> list:
    """``sizes`` without repeats: the sizes in the order they came."""
    return [size for i, size in enumerate(sizes) if i == 0 or sizes[i - 1] != size]


def recorded(output, seconds: float) -> None:
    wait_for(lambda: output.duration_s >= seconds or output.error, 20,
             f"{seconds} s of video")
    assert output.error is None


def check_mp4(path, output, size=(VIDEO.width, VIDEO.height)) -> dict:
    probe = ffprobe(path)
    assert (probe["codec_name"], probe["pix_fmt"]) == ("h264", "yuv420p")
    assert (probe["width"], probe["height"]) == size
    assert probe["frames"] == output.frames
    assert abs(probe["duration"] - output.duration_s) < 0.2
    boxes = mp4_boxes(path.read_bytes())
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart: seekable while loading
    return probe


@pytest.mark.parametrize("sim", [{"sensors": ["imx219"]}], indirect=True)  # no focus wait
def test_a_pi_4_records_through_the_hardware_h264_codec_and_stills_go_on(sim, backend, tmp_path):
    from simcam import video11

    path = tmp_path / "clip.mp4"
    output = backend.file_output(str(path))
    assert type(output).__mro__[1].__name__ == "PyavOutput"
    recording = backend.start_encoder(VIDEO, output)
    assert type(recording.encoder).__name__ == "H264Encoder"  # V4L2, /dev/video11
    config = backend._picam2.camera_configuration()
    assert config["main"]["size"] == (640, 480) and config["use_case"] == "record-640x480"
    # A still up to the recording's size is a frame of it; a larger one would cut it.
    assert decoded(backend.capture(CaptureSettings(width=320, height=240), TIMEOUT).data).size \
        == (320, 240)
    with pytest.raises(CameraBusy, match="recording video at 640x480") as info:
        backend.capture(CaptureSettings(width=3280, height=2464), TIMEOUT)
    assert "at most 640x480" in info.value.extra["fix"]
    with pytest.raises(CameraBusy, match="other flips"):
        backend.capture(CaptureSettings(width=320, height=240, hflip=True), TIMEOUT)
    recorded(output, 1.5)
    codec = next(c for c in video11.OPENED if c.capture_format == video11._fourcc("H264"))
    backend.stop_encoder(recording)
    assert codec.closed
    probe = check_mp4(path, output)
    assert probe["frames"] >= 20 and abs(probe["fps"] - 15) < 1.5
    # Back to the still configuration, and a full still works again.
    assert backend._picam2.camera_configuration()["use_case"].startswith("still-")
    assert decoded(backend.capture(CaptureSettings(width=3280, height=2464), TIMEOUT).data).size \
        == (3280, 2464)


@pytest.mark.parametrize("sim", [{"platform": "pisp", "sensors": ["imx219"]}], indirect=True)
def test_a_pi_5_records_with_libav_and_a_pre_roll_starts_before_the_trigger(sim, backend,
                                                                            tmp_path):
    ring = backend.circular_output(1.0, 8 << 20)
    recording = backend.start_encoder(VIDEO, ring)
    assert type(recording.encoder).__mro__[1].__name__ == "LibavH264Encoder"
    wait_for(lambda: ring.stats()["span_s"] >= 0.9, 20, "a full pre-roll")
    stats = ring.stats()
    assert 0 < stats["bytes"] <= 8 << 20 and stats["frames"] >= 12
    path = tmp_path / "clip.mp4"
    output = backend.file_output(str(path))
    ring.open_output(output)  # the trigger
    opened = ring.last_frame_at
    wait_for(lambda: ring.last_frame_at - opened >= 1.5e6, 20, "1.5 s after the trigger")
    ring.close_output()
    backend.stop_encoder(recording)
    probe = check_mp4(path, output)
    # The ring delays by 1 s, so at most 0.5 s of the clip is from after the trigger;
    # it starts at a keyframe (every 8 frames: 0.53 s) in the second before it.
    assert probe["duration"] >= 0.9, probe
    assert backend._picam2.camera_configuration()["use_case"].startswith("still-")


@pytest.mark.parametrize("sim", [{"sensors": ["imx219"]}], indirect=True)
def test_a_live_stream_keeps_its_mjpeg_encoder_while_a_clip_records(sim, backend, tmp_path):
    backend.stream_frame(streamed(), 15.0, TIMEOUT)
    mjpeg = backend._encoder
    output = backend.file_output(str(tmp_path / "clip.mp4"))
    recording = backend.start_encoder(VIDEO, output)
    config = backend._picam2.camera_configuration()
    assert config["lores"]["size"] == STREAM and config["main"]["size"] == (640, 480)
    frames = {backend.stream_frame(streamed(), 15.0, TIMEOUT).data for _ in range(3)}
    assert len(frames) == 3 and type(backend._encoder) is type(mjpeg)  # the hardware MJPEG
    # A second stream size while recording is encoded from main in software.
    other = backend.stream_frame(streamed(width=160, height=120), 15.0, TIMEOUT)
    assert decoded(other.data).size == (160, 120)
    recorded(output, 1.0)
    backend.stop_encoder(recording)
    check_mp4(tmp_path / "clip.mp4", output)
    assert backend._picam2.camera_configuration()["use_case"].startswith("video-")  # streams on
    assert decoded(backend.stream_frame(streamed(), 15.0, TIMEOUT).data).size == STREAM


@pytest.mark.parametrize("sim", [{"sensors": ["imx219"]}], indirect=True)
def test_recordings_of_one_size_share_the_encoder_and_close_stops_it(sim, backend, tmp_path):
    output = backend.file_output(str(tmp_path / "clip.mp4"))
    recording = backend.start_encoder(VIDEO, output)
    with pytest.raises(CameraBusy, match="one video stream") as info:
        backend.start_encoder(VideoSettings(width=320, height=240, fps=15.0, bitrate=10**6),
                              backend.file_output(str(tmp_path / "other.mp4")))
    assert "640x480 at 15 fps" in info.value.extra["fix"]
    recorded(output, 0.5)
    # The same size and rate: a second output on the running encoder, from a keyframe on.
    second = backend.file_output(str(tmp_path / "second.mp4"))
    shared = backend.start_encoder(VIDEO, second)
    assert shared.encoder is recording.encoder
    recorded(second, 0.5)
    backend.stop_encoder(shared)  # the first goes on
    assert not second.recording and output.recording
    frames = output.frames
    wait_for(lambda: output.frames > frames, 10, "the first output's frames")
    check_mp4(tmp_path / "second.mp4", second)
    backend.close()  # the owner closes the camera under a running encoder
    assert not output.recording and output.error is None
    check_mp4(tmp_path / "clip.mp4", output)
    backend.stop_encoder(recording)  # nothing left to stop
    assert not [t for t in threading.enumerate() if "thread_poll" in repr(getattr(t, "_target", ""))]


# A Pi 5's libav encoder here; tests/test_pi_server.py restarts a Pi 4's V4L2 one.
@pytest.mark.parametrize("sim", [{"platform": "pisp", "sensors": ["imx219"]}], indirect=True)
def test_live_view_follows_the_recording_and_a_clip_of_another_size_restarts_it(sim, backend,
                                                                                tmp_path):
    # A recording runs: live view of another size takes its frames (no 503).
    first = backend.file_output(str(tmp_path / "first.mp4"))
    recording = backend.start_encoder(VIDEO, first)
    view = LiveView()
    live = backend.start_encoder(LIVE, view.output, follow=True)
    assert live.encoder is recording.encoder
    view.frames_of((640, 480))
    # It ends: the live view goes on, at its own size.
    backend.stop_encoder(recording)
    view.frames_of((320, 240))
    assert backend._picam2.camera_configuration()["main"]["size"] == (320, 240)
    check_mp4(tmp_path / "first.mp4", first)
    # A clip of another size now restarts the encoder under the live view.
    path = tmp_path / "clip.mp4"
    output = backend.file_output(str(path))
    clip = backend.start_encoder(VIDEO, output)
    assert clip.encoder is live.encoder
    view.frames_of((640, 480))
    # A second clip of yet another size would cut this one.
    with pytest.raises(CameraBusy, match="one video stream"):
        backend.start_encoder(LIVE, backend.file_output(str(tmp_path / "other.mp4")))
    recorded(output, 1.0)
    backend.stop_encoder(clip)
    view.frames_of((320, 240))
    check_mp4(path, output)
    # The live view was never stopped, and its timestamps went on across the restarts.
    assert not view.stopped and view.output.recording
    assert runs(view.sizes) == [(640, 480), (320, 240), (640, 480), (320, 240)]
    assert all(a < b for a, b in zip(view.timestamps, view.timestamps[1:]))
    backend.stop_encoder(live)
    assert view.stopped
    assert backend._picam2.camera_configuration()["use_case"].startswith("still-")


@pytest.mark.parametrize("sim", [{"sensors": ["imx219"], "cma_mib": 64}], indirect=True)
def test_a_clip_that_cannot_start_leaves_the_live_view_running_at_its_own_size(sim, backend,
                                                                             tmp_path):
    view = LiveView()
    live = backend.start_encoder(LIVE, view.output, follow=True)
    view.frames_of((320, 240))
    full = VideoSettings(width=3280, height=2464, fps=15.0, bitrate=10**7)
    with pytest.raises(InsufficientCameraMemory, match="recording 3280x2464"):
        backend.start_encoder(full, backend.file_output(str(tmp_path / "clip.mp4")))
    view.frames_of((320, 240))
    assert not view.stopped and set(view.sizes) == {(320, 240)}
    assert live.encoder is not None
    # (Going back to stills would not fit now: the failed clip freed their buffers.)
    backend.close()
    assert view.stopped
