"""Live view: each MJPEG frame is captured and encoded once, whatever the number of clients.

``StreamHub`` (``services.streams``) admits clients up to ``stream.max_clients``
and gives each a ``Subscription``, whose ``parts()`` is the multipart response body.

Producers
    Each frame size in use has one ``Producer`` thread. It takes every frame
    through the camera owner (``CameraOwner.stream_frame``), so streams share the
    one camera lock with snapshots, photos and time-lapse frames, which keep
    working while streams run. It publishes the newest frame, already framed as
    a multipart part, with a sequence number, under a ``threading.Condition``.
    N clients at one size cost one encode per tick plus N socket writes.
    ``stream.sizes`` is a short list, so at worst there is one producer per listed
    size. (One producer at the largest size would cost a resize and an encode per
    client of every other size instead.)

Rates
    A producer ticks at the highest ``fps`` among its clients, on a fixed-rate
    schedule of monotonic deadlines: it does not drift, and a tick missed because
    a capture ran long is skipped, not made up. A client that asked for fewer fps
    takes the first frame at or after its own next due time and skips the rest.

Slow and dead clients
    Clients pull: each waits for a frame newer than the one it last sent. A slow
    client therefore skips frames; nothing queues, and the producer never waits
    for a client. A write to a closed socket raises in the server, which closes
    the generator and frees the slot. A client that has had no new frame for
    ``KEEPALIVE_S`` (a low ``fps``, a stalled camera) is sent its last frame
    again, so a dead connection is found within seconds at any rate.

Lifecycle
    A producer starts with its first client. When the last one leaves it stops
    capturing, and it exits ``stream.idle_stop_s`` later unless a client comes
    back first (a browser reload or a Home Assistant reconnect finds it running).
    A camera that fails for longer than the capture timeout ends the producer and
    its clients' streams; new clients get 503 until it works again.
    ``close()`` sets every producer's ``stopping`` Event, which ends every stream
    (``picam-api serve`` does this on SIGTERM); ``shutdown()`` also joins them.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from .camera import CameraOwner, CaptureSettings
from .capture import CaptureService
from .errors import (CameraError, CameraUnavailable, CaptureTimeout, InvalidInput, PicamError,
                     TooManyStreams)
from .workers import WorkerHealth

log = logging.getLogger(__name__)

BOUNDARY = "frame"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
# The longest a client goes without a write: see "Slow and dead clients".
KEEPALIVE_S = 2.0
# Scheduled times reach a client by two sums of floats; this absorbs the rounding.
EPSILON_S = 1e-3


@dataclass(frozen=True)
class Frame:
    """One published frame."""

    seq: int
    due: float  # the tick it was taken for, on time.monotonic()'s clock
    part: bytes  # boundary, part headers and JPEG: written as they are to every client


def multipart_part(jpeg: bytes) -> bytes:
    """One part of the ``multipart/x-mixed-replace`` body."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode("ascii") + jpeg + b"\r\n"


class StreamHub:
    """Live MJPEG for one app: the client cap, one producer per size, shutdown."""

    def __init__(self, owner: CameraOwner, capture: CaptureService, config: dict,
                 health: WorkerHealth | None = None):
        stream = config["stream"]
        self.health = health or WorkerHealth()
        self.owner = owner
        self.capture = capture
        self.sizes = [tuple(size) for size in stream["sizes"]]
        self.max_fps = stream["max_fps"]
        self.default_fps = min(stream["fps"], self.max_fps)
        self.quality = stream["quality"]
        self.max_clients = stream["max_clients"]
        self.idle_stop_s = stream["idle_stop_s"]
        self.retry_after = config["camera"]["retry_after_s"]
        # Guards what follows, and each producer's rates and idle_since. Re-entrant
        # because close() runs in a signal handler, maybe inside shutdown().
        self._lock = threading.RLock()
        self._producers: dict[tuple[int, int], Producer] = {}  # by size, taking clients
        self._running: set[Producer] = set()  # every producer thread not yet finished
        self._clients = 0
        self._closed = False

    def subscribe(self, size: str | None = None, fps: float | None = None) -> Subscription:
        """Admit one client and wait until its first frame is ready.

        ``size`` is ``"WxH"`` from ``stream.sizes`` (default: the first one);
        ``fps`` defaults to ``stream.fps`` and is capped at ``stream.max_fps``.
        Raises ``InvalidInput`` for an unknown size, ``TooManyStreams`` at the
        cap, and the camera's error when no frame comes.
        """
        dims = self._parse_size(size)
        self.settings(dims)  # a size this camera cannot make is a 422 now, not a dead stream
        rate = min(fps or self.default_fps, self.max_fps)
        with self._lock:
            if self._closed:
                raise self._tagged(CameraUnavailable("the server is stopping"))
            if self._clients >= self.max_clients:
                raise TooManyStreams(f"all {self.max_clients} live-view slots are in use "
                                     "(stream.max_clients); try again later", retry_after=self.retry_after)
            producer = self._producers.get(dims)
            new = producer is None
            if new:
                producer = self._producers[dims] = Producer(self, dims)
                self._running.add(producer)
            producer.rates.append(rate)
            self._clients += 1
            subscription = Subscription(self, producer, rate)
        if new:
            producer.start()
        else:
            producer.wake()
        try:
            subscription.wait_first(self.owner.timeout + 1)
        except BaseException:
            subscription.close()
            raise
        return subscription

    def settings(self, size: tuple[int, int]) -> CaptureSettings:
        """Stream frames look like snapshots: the capture defaults at a stream size."""
        return self.capture.resolve({"width": size[0], "height": size[1], "format": "jpeg",
                                     "quality": self.quality})

    def stats(self) -> dict:
        with self._lock:
            return {"clients": self._clients, "max_clients": self.max_clients,
                    "producers": sorted(f"{w}x{h}" for w, h in self._producers)}

    def close(self) -> None:
        """End every stream now and refuse new ones, waiting for nothing.

        ``picam-api serve`` calls this on SIGTERM and SIGINT: it waits for
        requests in flight, and a stream never ends by itself.
        """
        with self._lock:
            self._closed = True
            producers = list(self._running)
        for producer in producers:
            producer.stop()

    def shutdown(self, timeout: float) -> None:
        """``close()``, then join every producer."""
        self.close()
        with self._lock:
            producers = list(self._running)
        for producer in producers:
            producer.stop(timeout)

    def _parse_size(self, text: str | None) -> tuple[int, int]:
        if text is None:
            return self.sizes[0]
        names = {f"{w}x{h}": (w, h) for w, h in self.sizes}
        if text not in names:
            raise InvalidInput({"size": [f"must be one of {', '.join(names)} (stream.sizes)"]})
        return names[text]

    def _leave(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription.closed:
                return
            subscription.closed = True
            subscription.producer.rates.remove(subscription.fps)
            self._clients -= 1
        subscription.producer.wake()

    def _rate(self, producer: Producer) -> float | None:
        """What ``producer`` should run at: its fastest client's fps, 0 while it
        has no clients, and None once idle for ``idle_stop_s`` (it is then forgotten,
        so the next client starts a new one)."""
        with self._lock:
            if producer.rates:
                producer.idle_since = None
                return max(producer.rates)
            now = time.monotonic()
            if producer.idle_since is None:
                producer.idle_since = now
            if now - producer.idle_since < self.idle_stop_s:
                return 0.0
            self._forget(producer)
            return None

    def _forget(self, producer: Producer) -> None:
        """Take no more clients to ``producer``: the next one starts a new producer."""
        with self._lock:
            if self._producers.get(producer.size) is producer:
                del self._producers[producer.size]

    def _finished(self, producer: Producer) -> None:
        with self._lock:
            self._running.discard(producer)

    def _tagged(self, exc: CameraError) -> CameraError:
        exc.retry_after = self.retry_after
        return exc


class Producer(threading.Thread):
    """Captures frames of one size for its clients; see the module docstring.

    ``frame``, ``error``, ``attempts`` and ``done`` change under ``changed``,
    which is notified on every change; clients wait on it.
    """

    def __init__(self, hub: StreamHub, size: tuple[int, int]):
        super().__init__(name=f"picam-stream-{size[0]}x{size[1]}", daemon=True)
        self.hub = hub
        self.size = size
        self.rates: list[float] = []  # each client's fps (the hub's lock)
        self.idle_since: float | None = None  # (the hub's lock)
        self.frame: Frame | None = None
        self.error: PicamError | None = None  # the last capture's, None once one works
        self.attempts = 0
        self.done = False
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self._wake = threading.Event()

    def wake(self) -> None:
        """Clients came or went: look at the rate again now, not at the next tick."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end; given a timeout, wait that long for it to."""
        self.stopping.set()
        self._wake.set()
        if timeout is not None and self.is_alive():
            self.join(timeout)
            if self.is_alive():
                log.error("%s did not stop within %.1f s", self.name, timeout)

    def run(self) -> None:
        try:
            self._produce()
        except Exception as exc:
            # Its clients' streams end; the next client starts a new producer.
            self.hub.health.failed(self.name, exc)
        finally:
            self.hub._forget(self)
            with self.changed:
                self.done = True
                self.changed.notify_all()
            if not self.stopping.is_set():  # at shutdown the camera closes anyway
                self._end_stream()
            self.hub._finished(self)

    def _produce(self) -> None:
        seq, period, due = 0, 0.0, 0.0
        failing_since: float | None = None
        while not self.stopping.is_set():
            self._wake.clear()
            fps = self.hub._rate(self)
            if fps is None:
                return
            if not fps:
                with self.changed:
                    self.frame = None  # a client that comes back waits for a fresh one
                period = 0.0
                self._wake.wait(self.hub.idle_stop_s)
                continue
            if period != 1 / fps:
                period, due = 1 / fps, time.monotonic()  # a new rate starts a new schedule now
            delay = due - time.monotonic()
            if delay > 0 and self._wake.wait(delay):
                continue  # clients came or went, or stop: look again
            try:
                capture = self.hub.owner.stream_frame(self.hub.settings(self.size), fps)
            except PicamError as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    log.warning("%s: capture failed: %s", self.name, exc.detail)
                with self.changed:
                    self.error = exc
                    self.attempts += 1
                    self.changed.notify_all()
                if now - failing_since >= self.hub.owner.timeout:
                    log.error("%s: the camera has failed for %.1f s; ending its streams",
                              self.name, now - failing_since)
                    return
            else:
                if failing_since is not None:
                    log.info("%s: the camera works again", self.name)
                    failing_since = None
                seq += 1
                with self.changed:
                    self.frame = Frame(seq, due, multipart_part(capture.data))
                    self.error = None
                    self.attempts += 1
                    self.changed.notify_all()
            due += period
            late = time.monotonic() - due
            if late > 0:
                due += math.ceil(late / period) * period

    def _end_stream(self) -> None:
        try:
            self.hub.owner.end_stream(self.size)
        except PicamError as exc:
            log.warning("%s: leaving streaming mode failed: %s", self.name, exc.detail)


class Subscription:
    """One client: its slot, its rate, and where it is in its producer's frames."""

    def __init__(self, hub: StreamHub, producer: Producer, fps: float):
        self.hub = hub
        self.producer = producer
        self.fps = fps
        self.closed = False  # (the hub's lock)
        self._period = 1 / fps
        self._seq = 0
        self._next_due = -math.inf
        self._last: Frame | None = None

    def wait_first(self, timeout: float) -> None:
        """Return once a frame is ready; raise the camera's error if none will be."""
        producer = self.producer
        with producer.changed:
            # An error counts only from a capture tried since this client came.
            attempts = producer.attempts
            producer.changed.wait_for(lambda: (producer.frame is not None or producer.done or (
                producer.error is not None and producer.attempts > attempts)), timeout)
            if producer.frame is not None:
                return
            error = producer.error if producer.attempts > attempts or producer.done else None
        if error is None:
            error = self.hub._tagged(
                CameraUnavailable("the server is stopping") if producer.done
                else CaptureTimeout(f"the stream did not start within {timeout:g} s"))
        raise error

    def part_bytes(self) -> int:
        """The size of the newest part: what a client buffer should hold."""
        frame = self.producer.frame
        return len(frame.part) if frame is not None else 0

    def parts(self) -> Iterator[bytes]:
        """The response body: frames at this client's rate until the stream ends.

        The server runs it in this client's thread, and closes it when a write
        fails; either way the slot is freed.
        """
        try:
            while (frame := self._next()) is not None:
                yield frame.part
        finally:
            self.close()

    def close(self) -> None:
        """Free the slot. Idempotent."""
        self.hub._leave(self)

    def _next(self) -> Frame | None:
        producer = self.producer
        with producer.changed:
            while True:
                fresh = producer.changed.wait_for(
                    lambda: producer.done or self._wanted(producer.frame), KEEPALIVE_S)
                if producer.done:
                    return None
                if fresh:
                    frame = producer.frame
                    break
                if self._last is not None:
                    return self._last  # nothing new: send the last frame again (keep-alive)
        self._seq = frame.seq
        if frame.due > self._next_due + self._period:
            # The first frame, or a period or more behind (a slow client): start the
            # schedule again from here rather than catch up faster than asked.
            self._next_due = frame.due
        self._next_due += self._period
        self._last = frame
        return frame

    def _wanted(self, frame: Frame | None) -> bool:
        return (frame is not None and frame.seq > self._seq
                and frame.due >= self._next_due - EPSILON_S)
