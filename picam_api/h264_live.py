"""Live H.264: one encoder per size in use, its packets handed to every consumer.

``H264Hub`` (``services.h264``) is the H.264 twin of the MJPEG ``StreamHub`` in
its lifecycle, not its mechanics: MJPEG producers pull stills, while an H.264
encoder pushes frames, so here the consumers are fed.

Encoders
    Each size in use has one ``LiveEncoder``: the backend's H.264 encoder
    (``CameraOwner.start_encoder``: libx264 on the mock, picamera2's encoder on a
    Pi) writing into a ``FanOut`` output. Every frame it makes is given, as the
    same bytes, to every consumer of that size: N WebRTC peers and an RTSP
    publisher cost one encode, not N. It is started with ``follow``: a camera
    that makes one encode at a time (a Pi) gives it the running recording's
    frames (a clip's, the pre-roll's) at that recording's size and rate, which
    ``/api/v1/info`` reports as each encoder's ``encoding``.

Consumers
    A ``Feed`` receives ``(data, keyframe, timestamp_us)`` on the encoder's
    thread and must not block there. It passes nothing on before its first
    keyframe, since a decoder can start only at one; a new consumer asks the
    encoder for a keyframe so it starts now rather than up to ``stream.h264.gop``
    seconds later. A consumer that falls behind (its own queue full) drops what
    it has and waits for the next keyframe again, asking for one: a slow peer
    skips ahead, it never delays the encoder or the others.

Lifecycle
    An encoder starts with its first consumer. When the last one leaves it is
    stopped ``stream.idle_stop_s`` later unless a consumer comes back first (a
    page reload finds it running). An encoder stopped under its consumers (the
    camera closed after a fault) tells each one (``Feed.encoder_stopped``), and
    the next consumer starts a new encoder.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from .camera import CameraOwner, VideoSettings
from .camera.outputs import Output
from .errors import CameraUnavailable, InvalidInput, PicamError

log = logging.getLogger(__name__)


class Feed:
    """One consumer of a live encoder; subclasses implement ``deliver``.

    ``put`` runs on the encoder's thread: ``deliver`` must queue and return,
    and return False when its queue is full (the feed then restarts at the next
    keyframe).
    """

    def __init__(self):
        self.encoder: LiveEncoder | None = None  # set by H264Hub.attach
        self._started = False
        self.frames = 0
        self.dropped = 0

    def put(self, data: bytes, keyframe: bool, timestamp: int) -> None:
        if not self._started:
            if not keyframe:
                return
            self._started = True
        if self.deliver(data, keyframe, timestamp):
            self.frames += 1
            return
        self.dropped += 1
        self._started = False
        if self.encoder is not None:
            self.encoder.request_keyframe()

    def deliver(self, data: bytes, keyframe: bool, timestamp: int) -> bool:
        raise NotImplementedError

    def encoder_stopped(self) -> None:
        """The encoder stopped while this feed was attached (the camera closed)."""


class FanOut(Output):
    """The encoder's output: every frame to every attached feed."""

    def __init__(self, on_stop):
        super().__init__()
        self.feeds: tuple[Feed, ...] = ()  # replaced, never changed in place: read unlocked
        self.frames = 0
        self.bytes = 0
        self.keyframes = 0
        self.stream: dict[str, Any] = {}
        self._on_stop = on_stop

    def _add_stream(self, encoder_stream: Any, codec_name: str, **kwargs: Any) -> None:
        # Again when the encoder restarts under it at another size (a Pi's clip).
        before, self.stream = self.stream, {"codec": codec_name, **kwargs}
        size = _size(self.stream)
        if before and size and _size(before) != size:
            log.info("live H.264: the encoder now makes %dx%d, the camera's recording", *size)

    def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                    packet: Any = None, audio: bool = False) -> None:
        if audio or not self.recording:
            return
        data = bytes(frame)
        self.frames += 1
        self.bytes += len(data)
        self.keyframes += bool(keyframe)
        for feed in self.feeds:
            feed.put(data, keyframe, timestamp or 0)

    def stop(self) -> None:
        super().stop()
        self._on_stop()


class LiveEncoder:
    """One running encoder of one size and the feeds attached to it (the hub's lock)."""

    def __init__(self, hub: H264Hub, size: tuple[int, int]):
        self.hub = hub
        self.size = size
        self.output = FanOut(self._stopped)
        self.handle: Any = None
        self.idle_timer: threading.Timer | None = None
        self.stopping = False  # the hub stops it: its feeds are not told
        # Its output stopped. Set without the hub's lock: the output stops on the
        # encoder's or the camera owner's thread, maybe under the camera lock, which
        # the hub takes inside its own (lock order: hub, then camera).
        self.dead = False

    @property
    def encoding(self) -> tuple[int, int]:
        """The size the encoder makes: where the camera runs one encode at a time (a
        Pi), live view follows the recording, whose size may not be ``size``."""
        return _size(self.output.stream) or self.size

    def request_keyframe(self) -> None:
        if self.handle is not None:
            self.hub.owner.request_keyframe(self.handle)

    def _stopped(self) -> None:
        self.hub._encoder_stopped(self)


class H264Hub:
    """Live H.264 encoders for one app; see the module docstring."""

    def __init__(self, owner: CameraOwner, config: dict):
        stream = config["stream"]
        h264 = stream["h264"]
        self.owner = owner
        self.enabled = h264["enabled"]
        self.sizes = [tuple(size) for size in stream["sizes"]]
        self.default_size = (tuple(h264["size"]) if h264["size"]
                             else owner.backend.live_h264_size(self.sizes))
        self.fps = h264["fps"]
        self.bitrate = h264["bitrate"]
        self.gop = h264["gop"]
        self.idle_stop_s = stream["idle_stop_s"]
        self._lock = threading.RLock()
        self._encoders: dict[tuple[int, int], LiveEncoder] = {}
        self._timers: set[threading.Timer] = set()
        self._closed = False
        self.encoders_started = 0

    def parse_size(self, text: str | None) -> tuple[int, int]:
        """``"WxH"`` from ``stream.sizes`` (default ``stream.h264.size``); 422 otherwise."""
        if text is None:
            return self.default_size
        names = {f"{w}x{h}": (w, h) for w, h in self.sizes}
        if text not in names:
            raise InvalidInput({"size": [f"must be one of {', '.join(names)} (stream.sizes)"]})
        if names[text][0] % 2 or names[text][1] % 2:
            raise InvalidInput({"size": ["H.264 needs an even width and height"]})
        return names[text]

    def settings(self, size: tuple[int, int]) -> VideoSettings:
        return VideoSettings(width=size[0], height=size[1], fps=self.fps, bitrate=self.bitrate,
                             keyframe_s=self.gop)

    def attach(self, feed: Feed, size: tuple[int, int]) -> LiveEncoder:
        """Give ``feed`` the frames of the encoder of ``size``, starting it if none runs.

        Raises ``CameraUnavailable`` when the server is stopping or the backend has
        no H.264 encoder, and the camera's errors when it cannot start one.
        """
        with self._lock:
            if self._closed:
                raise CameraUnavailable("the server is stopping", retry_after=self.owner.retry_after)
            if not self.enabled:
                raise CameraUnavailable("live H.264 is off (stream.h264.enabled = false)")
            encoder = self._encoders.get(size)
            if encoder is None or encoder.dead:
                encoder = self._start(size)
            if encoder.idle_timer is not None:
                encoder.idle_timer.cancel()
                encoder.idle_timer = None
            feed.encoder = encoder
            encoder.output.feeds = (*encoder.output.feeds, feed)
            if encoder.dead:  # it stopped just now, before it could see this feed
                encoder.output.feeds = ()
                encoder = self._start(size)
                feed.encoder = encoder
                encoder.output.feeds = (feed,)
        encoder.request_keyframe()
        return encoder

    def detach(self, feed: Feed) -> None:
        """Stop feeding ``feed``; the encoder stops ``idle_stop_s`` after its last feed left."""
        with self._lock:
            encoder, feed.encoder = feed.encoder, None
            if encoder is None or feed not in encoder.output.feeds:
                return
            encoder.output.feeds = tuple(f for f in encoder.output.feeds if f is not feed)
            if encoder.output.feeds or encoder.dead \
                    or self._encoders.get(encoder.size) is not encoder:
                return
            if self.idle_stop_s <= 0 or self._closed:
                self._stop(encoder)
                return
            timer = threading.Timer(self.idle_stop_s, self._idle, (encoder,))
            timer.name = f"picam-h264-idle-{encoder.size[0]}x{encoder.size[1]}"
            timer.daemon = True
            encoder.idle_timer = timer
            self._timers.add(timer)
        timer.start()

    def stats(self) -> dict:
        with self._lock:
            return {"enabled": self.enabled, "encoders_started": self.encoders_started,
                    "encoders": [{"size": f"{w}x{h}", "encoding": "%dx%d" % e.encoding,
                                  "feeds": len(e.output.feeds),
                                  "frames": e.output.frames, "bytes": e.output.bytes,
                                  "keyframes": e.output.keyframes}
                                 for (w, h), e in sorted(self._encoders.items()) if not e.dead]}

    def shutdown(self, timeout: float) -> None:
        """Stop every encoder and refuse new feeds."""
        with self._lock:
            self._closed = True
            encoders, timers = list(self._encoders.values()), list(self._timers)
        for timer in timers:
            timer.cancel()
            timer.join(timeout)
        for encoder in encoders:
            with self._lock:
                self._stop(encoder)

    def _start(self, size: tuple[int, int]) -> LiveEncoder:
        encoder = LiveEncoder(self, size)
        try:
            encoder.handle = self.owner.start_encoder(self.settings(size), encoder.output,
                                                      follow=True)
        except CameraUnavailable as exc:
            if "cannot record video" in exc.detail:
                raise CameraUnavailable(
                    f"live H.264 needs a camera backend with an H.264 encoder; {exc.detail}",
                    retry_after=exc.retry_after) from None
            raise
        self._encoders[size] = encoder
        self.encoders_started += 1
        log.info("live H.264 encoder %dx%d@%g started%s", size[0], size[1], self.fps,
                 "" if encoder.encoding == size else
                 ", making %dx%d: the camera's running recording" % encoder.encoding)
        return encoder

    def _stop(self, encoder: LiveEncoder) -> None:
        """(the hub's lock) Stop ``encoder`` on purpose; its feeds are not told."""
        encoder.stopping = True
        if self._encoders.get(encoder.size) is encoder:
            del self._encoders[encoder.size]
        try:
            self.owner.stop_encoder(encoder.handle)
        except PicamError as exc:
            log.warning("stopping the live H.264 encoder failed: %s", exc.detail)
        log.info("live H.264 encoder %dx%d stopped", *encoder.size)

    def _idle(self, encoder: LiveEncoder) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not encoder.idle_timer}
            if encoder.idle_timer is None or encoder.output.feeds:
                return  # a feed came back meanwhile
            encoder.idle_timer = None
            self._stop(encoder)

    def _encoder_stopped(self, encoder: LiveEncoder) -> None:
        """The encoder's output stopped: on purpose, or under its feeds (the camera
        closed). Takes no lock (see ``LiveEncoder.dead``); the next attach replaces it."""
        encoder.dead = True
        feeds, encoder.output.feeds = encoder.output.feeds, ()
        if not encoder.stopping:
            log.warning("live H.264 encoder %dx%d stopped under %d viewer(s)", *encoder.size,
                        len(feeds))
            for feed in feeds:
                feed.encoder = None
                feed.encoder_stopped()


def _size(stream: dict) -> tuple[int, int] | None:
    """The frame size an encoder announced (``_add_stream``), if it did."""
    if "width" in stream and "height" in stream:
        return int(stream["width"]), int(stream["height"])
    return None
