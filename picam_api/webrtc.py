"""WebRTC live view over WHEP: aiortc peers that send the live encoder's H.264 as it is.

``WhepService`` (``services.whep``) answers a WHEP offer (``offer``) with an
SDP answer and a session id, and ends a session (``end``). aiortc is asyncio,
Flask is threads: the peers live on one event loop on one thread
(``picam-webrtc``), started with the first offer; a view waits for its answer
with ``run_coroutine_threadsafe``.

Pass-through
    Each peer's video track is an ``H264Track`` fed by a ``PeerFeed`` on the
    live encoder of its size (``H264Hub``). The track hands aiortc the
    encoder's packets (``av.Packet``), which aiortc only splits into RTP: no
    peer costs an encode. aiortc asks for a keyframe when a viewer reports
    picture loss (RTCP PLI/FIR), and so does a new peer: both go to the encoder.

ICE
    No STUN server is contacted unless ``stream.h264.stun_urls`` names one (aiortc
    would otherwise ask Google's): the answer carries host candidates only, which is
    what a LAN viewer needs. The offer's candidates come in the offer (no
    trickle), as WHEP players and MediaMTX's page send it.

Limits
    At most ``stream.h264.max_peers`` sessions, counting those still connecting
    (503 with Retry-After beyond it). A peer whose connection is not up
    ``stream.h264.connect_timeout_s`` after its answer, or that fails or closes
    later (a closed tab: DTLS close, or ICE consent lost), is ended and frees
    its slot.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .errors import BadRequest, CameraUnavailable, NotFound, PicamError, TooManyStreams
from .h264_live import Feed, H264Hub
from .workers import WorkerHealth

log = logging.getLogger(__name__)

MICROSECONDS = Fraction(1, 1_000_000)
# A peer's queue: past this many frames unsent (about 1 s at 30 fps) it skips to a keyframe.
MAX_QUEUED_FRAMES = 30
ANSWER_TIMEOUT_S = 10.0
# How long a session that ended by itself still takes its DELETE (answered 204, once).
GONE_KEPT_S = 60.0


def _track_class():
    """The track class; made on first use because aiortc is imported only then."""
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class Track(MediaStreamTrack):
        """A video track whose frames are the live encoder's H.264 packets."""

        kind = "video"

        def __init__(self):
            super().__init__()
            self._queue: collections.deque = collections.deque()
            self._ready = asyncio.Event()
            # aiortc reads a sender's track once the connection is up; frames before
            # that would only queue, so the feed starts at the first read.
            self.reading = False
            self.on_first_read = lambda: None

        def push(self, data: bytes, timestamp: int) -> None:
            self._queue.append((data, timestamp))
            self._ready.set()

        def clear(self) -> None:
            self._queue.clear()

        def queued(self) -> int:
            return len(self._queue)

        async def recv(self):
            import av
            if not self.reading:
                self.reading = True
                self.on_first_read()
            while not self._queue:
                if self.readyState != "live":
                    raise MediaStreamError
                self._ready.clear()
                await self._ready.wait()
            data, timestamp = self._queue.popleft()
            packet = av.Packet(data)
            packet.pts = packet.dts = timestamp
            packet.time_base = MICROSECONDS
            return packet

        def stop(self) -> None:
            super().stop()
            self._ready.set()  # a recv() waiting sees the end

    return Track


class PeerFeed(Feed):
    """Hands one peer's track the encoder's frames, across to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, track, on_stopped):
        super().__init__()
        self.loop = loop
        self.track = track
        self._on_stopped = on_stopped
        self._pending = 0  # frames handed to the loop that the track has not queued yet
        track.on_first_read = self._first_read

    def put(self, data: bytes, keyframe: bool, timestamp: int) -> None:
        if self.track.reading:
            super().put(data, keyframe, timestamp)

    def _first_read(self) -> None:
        if self.encoder is not None:
            self.encoder.request_keyframe()

    def deliver(self, data: bytes, keyframe: bool, timestamp: int) -> bool:
        if self.track.queued() + self._pending >= MAX_QUEUED_FRAMES:
            self.loop.call_soon_threadsafe(self.track.clear)
            return False
        self._pending += 1
        self.loop.call_soon_threadsafe(self._push, data, timestamp)
        return True

    def _push(self, data: bytes, timestamp: int) -> None:
        self._pending -= 1
        self.track.push(data, timestamp)

    def encoder_stopped(self) -> None:
        self.loop.call_soon_threadsafe(self._on_stopped)


@dataclass
class Session:
    id: str
    user: str
    size: tuple[int, int]
    created: float = field(default_factory=time.monotonic)
    pc: Any = None
    feed: PeerFeed | None = None
    state: str = "new"


class WhepService:
    """WHEP sessions: one aiortc peer each, all on one event loop; see the module docstring."""

    def __init__(self, hub: H264Hub, config: dict, health: WorkerHealth | None = None):
        h264 = config["stream"]["h264"]
        self.hub = hub
        self.health = health or WorkerHealth()
        self.max_peers = h264["max_peers"]
        self.stun_urls = list(h264["stun_urls"])
        self.connect_timeout_s = h264["connect_timeout_s"]
        self.retry_after = config["camera"]["retry_after_s"]
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._gone: dict[str, tuple[str, float]] = {}  # ended by themselves: id -> (user, when)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._track_class = None

    def offer(self, sdp: str, size: str | None, user: str) -> tuple[Session, str]:
        """Answer the WHEP ``sdp`` offer for ``user``: the new session and the SDP answer.

        ``BadRequest`` for an offer that is not SDP or has no H.264 video to receive,
        ``TooManyStreams`` at the peer cap, the camera's errors if no encoder starts.
        """
        dims = self.hub.parse_size(size)
        if "m=video" not in sdp:  # before a slot is taken and an encoder started for it
            raise BadRequest("the body is not a WHEP offer: it has no video section (m=video)")
        with self._lock:
            if self._closed:
                raise CameraUnavailable("the server is stopping", retry_after=self.retry_after)
            if len(self._sessions) >= self.max_peers:
                raise TooManyStreams(f"all {self.max_peers} WebRTC slots are in use "
                                     "(stream.h264.max_peers); try again later",
                                     retry_after=self.retry_after)
            session = Session(secrets.token_urlsafe(16), user, dims)
            self._sessions[session.id] = session
            loop = self._ensure_loop()
        try:
            track = self._track_class()
            session.feed = PeerFeed(loop, track, lambda: self._ended(session.id, "encoder stopped"))
            # Here, not on the event loop: starting an encoder may wait for the camera.
            self.hub.attach(session.feed, dims)
            future = asyncio.run_coroutine_threadsafe(self._answer(session, sdp), loop)
            try:
                return session, future.result(ANSWER_TIMEOUT_S)
            except TimeoutError:
                future.cancel()
                raise CameraUnavailable("the WebRTC answer took too long",
                                        retry_after=self.retry_after) from None
        except BaseException:
            with contextlib.suppress(NotFound):  # it may have ended by itself meanwhile
                self.end(session.id)
            raise

    def end(self, session_id: str, user: str | None = None) -> None:
        """End a session (``user``: only if it is theirs); ``NotFound`` if there is none.

        A session that ended by itself a moment ago (its peer closed: a page's close
        and DELETE race each other) is ended already: no error, once.
        """
        with self._lock:
            now = time.monotonic()
            self._gone = {k: v for k, v in self._gone.items() if now - v[1] < GONE_KEPT_S}
            gone = self._gone.get(session_id)
            if gone is not None and user in (None, gone[0]):
                del self._gone[session_id]
                return
            session = self._sessions.get(session_id)
            if session is None or (user is not None and session.user != user):
                raise NotFound("no such WebRTC session (it ended, or was never made)")
            del self._sessions[session_id]
        self._close(session)

    def stats(self) -> dict:
        with self._lock:
            states = collections.Counter(s.state for s in self._sessions.values())
            return {"peers": len(self._sessions), "max_peers": self.max_peers,
                    "states": dict(states)}

    def shutdown(self, timeout: float) -> None:
        """Close every peer and stop the event loop."""
        with self._lock:
            self._closed = True
            sessions, self._sessions = list(self._sessions.values()), {}
            loop, thread = self._loop, self._thread
        for session in sessions:
            self._release(session)
        if loop is None:
            return
        closing = asyncio.run_coroutine_threadsafe(
            _close_all([s.pc for s in sessions if s.pc is not None]), loop)
        try:
            closing.result(timeout)
        except Exception as exc:  # a peer that will not close must not hold up the shutdown
            log.warning("closing WebRTC peers: %r", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            log.error("picam-webrtc did not stop within %.1f s", timeout)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        """(self._lock) The event loop thread, started on first use."""
        if self._loop is None:
            # aioice logs every candidate pair's every state at INFO.
            logging.getLogger("aioice").setLevel(logging.WARNING)
            self._track_class = _track_class()
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._run, args=(loop,), name="picam-webrtc",
                                            daemon=True)
            self._loop = loop
            self.health.watch(self._thread)
            self._thread.start()
        return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        except Exception as exc:
            self.health.failed("picam-webrtc", exc)
        finally:
            loop.close()

    async def _answer(self, session: Session, sdp: str) -> str:
        from aiortc import (RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender,
                            RTCSessionDescription)

        # An explicit list, even empty: given none, aiortc asks stun.l.google.com.
        pc = RTCPeerConnection(RTCConfiguration(
            iceServers=[RTCIceServer(url) for url in self.stun_urls]))
        session.pc = pc
        transceiver = pc.addTransceiver(session.feed.track, direction="sendonly")
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                         if c.mimeType in ("video/H264", "video/rtx")])
        _forward_keyframe_requests(transceiver.sender, session.feed)

        @pc.on("connectionstatechange")
        async def changed():
            session.state = pc.connectionState
            if pc.connectionState in ("failed", "closed"):
                self._ended(session.id, pc.connectionState)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if transceiver.mid is None:
                raise BadRequest("the offer has no video section to receive the stream in")
            await pc.setLocalDescription(await pc.createAnswer())
        except BadRequest:
            raise
        except Exception as exc:
            # aiortc's SDP parser meets arbitrary client text here and raises whatever the
            # text makes it raise (ValueError, AssertionError, IndexError, OperationError,
            # ...): each is a bad offer, never a 500.
            log.debug("a WHEP offer was refused", exc_info=exc)
            raise BadRequest(f"the body is not a WHEP offer with H.264 video to receive: "
                             f"{str(exc)[:200] or type(exc).__name__}") from None
        asyncio.get_running_loop().call_later(self.connect_timeout_s, self._check_connected,
                                              session)
        return pc.localDescription.sdp

    def _check_connected(self, session: Session) -> None:
        if session.state != "connected" and session.id in self._sessions:
            log.info("WebRTC peer %s did not connect within %g s", session.id[:8],
                     self.connect_timeout_s)
            self._ended(session.id, "no connection")

    def _ended(self, session_id: str, why: str) -> None:
        """(event loop) The peer failed, closed or never came up: end its session."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is None:
                return
            # Under the same lock as the removal: a DELETE racing this finds the
            # session either still there or gone, never neither (a 404).
            if len(self._gone) < 4 * self.max_peers:  # bounded, whatever the churn
                self._gone[session_id] = (session.user, time.monotonic())
        log.info("WebRTC session %s ended: %s", session_id[:8], why)
        self._close(session)

    def _close(self, session: Session) -> None:
        self._release(session)
        loop = self._loop
        if loop is not None and session.pc is not None:
            asyncio.run_coroutine_threadsafe(session.pc.close(), loop)

    def _release(self, session: Session) -> None:
        if session.feed is not None:
            try:
                self.hub.detach(session.feed)
            except PicamError as exc:
                log.warning("detaching a WebRTC peer: %s", exc.detail)
            session.feed.loop.call_soon_threadsafe(session.feed.track.stop)


def _forward_keyframe_requests(sender, feed: PeerFeed) -> None:
    """A viewer's PLI/FIR reaches aiortc's sender, which would force a keyframe in an
    encoder of its own (``_send_keyframe``); pass-through has none, so the request goes
    on to the live encoder. (aiortc is pinned below 2 for this seam.)"""
    own = sender._send_keyframe

    def send_keyframe() -> None:
        own()
        if feed.encoder is not None:
            feed.encoder.request_keyframe()

    sender._send_keyframe = send_keyframe


async def _close_all(pcs: list) -> None:
    """Close ``pcs``, then end whatever else still runs on the loop (the tasks of peers
    closed earlier), so that stopping the loop leaves no task pending."""
    await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
