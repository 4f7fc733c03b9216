"""RTSP publishing: the live H.264 stream pushed to a media server (MediaMTX, go2rtc).

While ``stream.rtsp.publish_url`` is set, ``RtspPublisher`` keeps one feed on
the live encoder of ``stream.h264.size`` and sends its frames, as they are,
with PyAV's RTSP muxer (ANNOUNCE + RECORD, RTP interleaved over TCP). The
server does the fan-out to Frigate, Home Assistant, VLC; we write no RTSP
server. Each connection starts at a keyframe, with the SPS/PPS in its SDP and
timestamps from zero.

When the server is down or goes away, the publisher waits 1 s, then twice as
long after each failure up to ``stream.rtsp.reconnect_max_s``, and connects
again; a connection that lasted a while starts the backoff over. Frames made
meanwhile are dropped, never queued up: the server gets the live picture.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from fractions import Fraction
from urllib.parse import urlsplit, urlunsplit

from .errors import PicamError
from .h264_live import Feed, H264Hub
from .workers import WorkerHealth, supervise

log = logging.getLogger(__name__)

MICROSECONDS = Fraction(1, 1_000_000)
FIRST_BACKOFF_S = 1.0
# A connection that lasted this long was a good one: the next failure backs off from the start.
STEADY_S = 10.0
# Socket I/O timeout for the muxer, in microseconds (FFmpeg's rtsp "timeout").
IO_TIMEOUT_US = 5_000_000
SPS, PPS = 7, 8


class QueueFeed(Feed):
    """Frames for a thread that reads them with ``get``; about two seconds' worth at most."""

    def __init__(self, max_frames: int):
        super().__init__()
        self.queue: queue.Queue = queue.Queue(max_frames)

    def deliver(self, data: bytes, keyframe: bool, timestamp: int) -> bool:
        try:
            self.queue.put_nowait((data, keyframe, timestamp))
            return True
        except queue.Full:
            return False

    def encoder_stopped(self) -> None:
        self.queue.put(None)  # wakes the reader, which attaches again

    def restart(self) -> None:
        """Start again at the next keyframe (a new connection), asking for one now."""
        self._started = False
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        if self.encoder is not None:
            self.encoder.request_keyframe()


def parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units of an Annex B keyframe, start codes included."""
    units, start = [], data.find(b"\x00\x00\x01")
    while start >= 0:
        following = data.find(b"\x00\x00\x01", start + 3)
        end = len(data) if following < 0 else following - (data[following - 1] == 0)
        if data[start + 3] & 0x1F in (SPS, PPS):
            units.append(b"\x00\x00\x00\x01" + data[start + 3:end])
        start = following
    return b"".join(units)


def redacted(url: str) -> str:
    """``url`` without its password, for the log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RtspPublisher:
    """Publishes the live H.264 stream to ``stream.rtsp.publish_url``; see the module docstring."""

    def __init__(self, hub: H264Hub, config: dict, health: WorkerHealth | None = None):
        rtsp = config["stream"]["rtsp"]
        self.hub = hub
        self.url = rtsp["publish_url"]
        self.max_backoff_s = rtsp["reconnect_max_s"]
        self.size = hub.default_size
        self.health = health or WorkerHealth()
        self.feed = QueueFeed(max(4, round(2 * hub.fps)))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="picam-rtsp-publish", daemon=True)
        self.state = "starting"
        self.connections = 0
        self.frames_sent = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self.health.watch(self.thread)
        self.thread.start()

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.feed.queue.put(None)
        if self.thread.is_alive():
            self.thread.join(timeout)
            if self.thread.is_alive():
                log.error("picam-rtsp-publish did not stop within %.1f s", timeout)

    def stats(self) -> dict:
        return {"url": redacted(self.url), "state": self.state, "connections": self.connections,
                "frames_sent": self.frames_sent, "last_error": self.last_error}

    def _run(self) -> None:
        try:
            supervise(self.thread.name, self._loop, self.stopping, self.health)
        finally:
            self.hub.detach(self.feed)
            self.state = "stopped"

    def _loop(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                if self.feed.encoder is None:
                    self.hub.attach(self.feed, self.size)
                self._publish()
            except PicamError as exc:  # no camera, or no encoder: as a server that is down
                self._failed(exc.detail)
            except (OSError, ValueError, RuntimeError) as exc:  # av.FFmpegError is an OSError
                self._failed(str(exc) or type(exc).__name__)
            if time.monotonic() - began >= STEADY_S:
                backoff = FIRST_BACKOFF_S
            self.state = "waiting"
            if self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.max_backoff_s)

    def _failed(self, why: str) -> None:
        if why != self.last_error:
            log.warning("RTSP publish to %s: %s; reconnecting with backoff", redacted(self.url), why)
        self.last_error = why

    def _next(self):
        """The next frame, or None when stopping or the encoder went away."""
        item = self.feed.queue.get()
        return None if self.stopping.is_set() else item

    def _publish(self) -> None:
        """One connection: from the next keyframe until the server goes or we stop."""
        import av
        self.feed.restart()
        self.state = "connecting"
        first = self._next()
        if first is None:
            return
        data, _, start = first
        encoder = self.feed.encoder  # on a Pi it may make a recording's size (``follow``)
        width, height = encoder.encoding if encoder is not None else self.size
        container = av.open(self.url, "w", format="rtsp",
                            options={"rtsp_transport": "tcp", "timeout": str(IO_TIMEOUT_US)})
        try:
            stream = container.add_stream("h264", rate=Fraction(self.hub.fps).limit_denominator(1001))
            stream.width, stream.height = width, height
            stream.time_base = MICROSECONDS
            # The SDP the server gets carries these (sprop-parameter-sets): a reader can
            # start decoding without waiting for one in the stream.
            stream.codec_context.extradata = parameter_sets(data)
            item = first
            while item is not None:
                data, keyframe, timestamp = item
                packet = av.Packet(data)
                packet.pts = packet.dts = timestamp - start
                packet.time_base = MICROSECONDS
                packet.is_keyframe = keyframe
                packet.stream = stream
                container.mux(packet)
                if self.state != "publishing":
                    self.connections += 1
                    self.state = "publishing"
                    self.last_error = None
                    log.info("publishing H.264 %dx%d to %s", width, height, redacted(self.url))
                self.frames_sent += 1
                item = self._next()
        finally:
            try:
                container.close()
            except (OSError, ValueError, RuntimeError):
                pass  # the connection is gone already
