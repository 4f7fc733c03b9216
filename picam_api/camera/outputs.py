"""Where encoded video frames go: an MP4 file, and the pre-roll ring.

Both speak picamera2's ``Output`` protocol (see ``CameraBackend``), and behave
as picamera2's ``PyavOutput`` and ``CircularOutput2`` do, so that the recorder
drives the mock's encoder and a Pi's ``H264Encoder`` the same way:

- ``Mp4Output`` muxes the H.264 frames it is given into an MP4 with PyAV, on
  the stream the encoder announced with ``_add_stream``. Timestamps are
  microseconds; the file starts at the first keyframe. Its ``options`` go to
  the muxer (``+faststart``: the index goes first, as a browser wants it).
- ``CircularOutput`` is a delay line: every frame goes in, and leaves when it
  is older than ``seconds`` than the newest one; while an output is open
  (``open_output``) the leaving frames go to it, from the first keyframe on,
  re-timed to start at zero. So a clip opened at t starts at the keyframe near
  t - seconds, and closing it at t + d + seconds makes it cover [t - seconds,
  t + d]. It also drops the oldest frames beyond ``max_bytes``, and reports
  what it holds (``stats``).
"""
from __future__ import annotations

import collections
import threading
from fractions import Fraction
from typing import Any, Callable

MICROSECONDS = Fraction(1, 1_000_000)
# FFmpeg's AVCOL_RANGE_MPEG and AVCOL_SPC_BT470BG: video range (16-235) and the BT.601
# matrix, what a JPEG's YCbCr and swscale's RGB conversion give; H.264 streams say so.
VIDEO_RANGE, BT601 = 1, 5


class Output:
    """picamera2's ``Output`` base: the attributes its encoders read."""

    needs_pacing = False
    needs_add_stream = False

    def __init__(self):
        self.recording = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                    packet: Any = None, audio: bool = False) -> None:
        """One encoded frame; ``timestamp`` in microseconds."""

    def _add_stream(self, encoder_stream: Any, codec_name: str, **kwargs: Any) -> None:
        """The encoder announces a stream (picamera2 calls it once per stream at start)."""


class Mp4Output(Output):
    """Writes the frames to an MP4 at ``path`` with PyAV, as picamera2's PyavOutput."""

    needs_add_stream = True

    def __init__(self, path: str, format: str = "mp4", options: dict | None = None):
        super().__init__()
        self.path = path
        self.format = format
        self.options = {"movflags": "+faststart"} if options is None else options
        self.error_callback: Callable[[Exception], None] | None = None
        self.frames = 0
        self.first_timestamp: int | None = None
        self.last_timestamp: int | None = None
        self.error: Exception | None = None
        self._container = None
        self._stream = None
        self._seen_keyframe = False
        self._lock = threading.Lock()

    def start(self) -> None:
        import av
        self._container = av.open(self.path, "w", format=self.format, options=self.options)
        super().start()

    def _add_stream(self, encoder_stream: Any, codec_name: str, **kwargs: Any) -> None:
        with self._lock:
            self._stream = self._container.add_stream(codec_name, **kwargs)
            self._stream.time_base = MICROSECONDS

    def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                    packet: Any = None, audio: bool = False) -> None:
        import av
        with self._lock:
            if not self.recording or self._container is None or self._stream is None or audio:
                return
            self._seen_keyframe |= keyframe
            if not self._seen_keyframe:
                return  # a decoder can start only at a keyframe
            if self.first_timestamp is None:
                self.first_timestamp = timestamp
            packet = av.Packet(bytes(frame))
            packet.pts = packet.dts = timestamp - self.first_timestamp
            packet.time_base = MICROSECONDS
            packet.is_keyframe = keyframe
            packet.stream = self._stream
            try:
                self._container.mux(packet)
            except Exception as exc:  # a full disk, a bad frame: the recording ends here
                self.error = exc
                self._close()
                if self.error_callback:
                    self.error_callback(exc)
                return
            self.frames += 1
            self.last_timestamp = timestamp

    @property
    def duration_s(self) -> float:
        """From the first frame to the last, plus one frame's length."""
        if self.first_timestamp is None or self.last_timestamp is None or self.frames < 1:
            return 0.0
        span = (self.last_timestamp - self.first_timestamp) / 1e6
        return span + (span / (self.frames - 1) if self.frames > 1 else 0.0)

    def stop(self) -> None:
        """Finish the file (the muxer writes the index, then moves it to the front)."""
        super().stop()
        with self._lock:
            self._close()

    def _close(self) -> None:
        container, self._container, self._stream = self._container, None, None
        if container is not None:
            try:
                container.close()
            except Exception as exc:
                self.error = self.error or exc


class CircularOutput(Output):
    """The pre-roll ring: picamera2's CircularOutput2, with a byte bound and stats."""

    def __init__(self, seconds: float, max_bytes: int):
        super().__init__()
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._ring: collections.deque = collections.deque()
        self._bytes = 0
        self._output: Output | None = None
        self._streams: list[tuple[Any, str, dict]] = []
        self._first_frame = True
        self._offset = 0
        self.frames_in = 0
        self.dropped = 0  # frames pushed out by max_bytes before their time
        self.last_frame_at: int | None = None  # timestamp of the newest frame

    def _add_stream(self, encoder_stream: Any, codec_name: str, **kwargs: Any) -> None:
        self._streams.append((encoder_stream, codec_name, kwargs))

    def open_output(self, output: Output) -> None:
        """Start ``output``; it gets the frames that leave the ring from its next keyframe on."""
        if self._output is not None:
            raise RuntimeError("close the open output first")
        output.start()
        for stream, codec, kwargs in self._streams:
            output._add_stream(stream, codec, **kwargs)
        with self._lock:
            self._output = output
            self._first_frame = True

    def close_output(self) -> None:
        """Stop sending frames to the open output, and stop it."""
        with self._lock:
            output, self._output = self._output, None
        if output is None:
            raise RuntimeError("no output is open")
        output.stop()

    def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                    packet: Any = None, audio: bool = False) -> None:
        with self._lock:
            if not self.recording or self.seconds <= 0:
                return
            data = bytes(frame)
            self._ring.append((data, keyframe, timestamp))
            self._bytes += len(data)
            self.frames_in += 1
            self.last_frame_at = timestamp
            self._flush(timestamp)

    def _flush(self, now: int | None) -> None:
        """Let out what is older than ``seconds`` (everything when ``now`` is None)."""
        while self._ring:
            data, keyframe, timestamp = self._ring[0]
            expired = now is None or now - timestamp >= self.seconds * 1e6
            if not expired and self._bytes <= self.max_bytes:
                return
            self._ring.popleft()
            self._bytes -= len(data)
            if not expired:
                self.dropped += 1
            if self._output is None:
                continue
            if keyframe and self._first_frame:
                self._offset, self._first_frame = timestamp, False
            if not self._first_frame:
                self._output.outputframe(data, keyframe, timestamp - self._offset)

    def stats(self) -> dict:
        """What the ring holds now: frames, bytes, and the seconds they span."""
        with self._lock:
            span = (self._ring[-1][2] - self._ring[0][2]) / 1e6 if len(self._ring) > 1 else 0.0
            return {"seconds": self.seconds, "frames": len(self._ring), "bytes": self._bytes,
                    "max_bytes": self.max_bytes, "span_s": round(span, 3),
                    "dropped_frames": self.dropped}

    def stop(self) -> None:
        """Stop taking frames; an open output gets the rest of the ring, then stops."""
        with self._lock:
            self.recording = False
            output, self._output = self._output, None
            if output is not None:
                self._output = output
                self._flush(None)
                self._output = None
            self._ring.clear()
            self._bytes = 0
        if output is not None:
            output.stop()
