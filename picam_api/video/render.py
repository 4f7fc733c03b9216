"""Time-lapse frames to an H.264 MP4, one frame at a time.

Each frame is read, decoded (FFmpeg's own JPEG/PNG decoders through PyAV),
scaled and encoded before the next is read, so memory stays the same whatever
the number or size of the frames. JPEGs larger than the output are decoded at
1/2, 1/4 or 1/8 size straight from their DCT (the decoder's ``lowres``), so a
12 MP frame never exists in memory at full size. A frame whose file is gone
or does not decode is skipped and counted; frame numbers need not be
contiguous. The output is yuv420p H.264 (libx264, CRF quality), in an MP4
whose index comes first (``+faststart``): what every browser and player opens.

Deflicker evens out brightness: a first pass reads every frame at 1/8 size
and records its mean luma; the second scales each frame's luma by the rolling
mean of its neighbours over its own. The timestamp overlay burns the frame's
capture time (local time) into its bottom-left corner.
"""
from __future__ import annotations

import datetime as dt
import functools
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..camera.outputs import BT601, VIDEO_RANGE

DECODERS = {"jpeg": "mjpeg", "png": "png"}
MAX_LOWRES = 3  # the JPEG decoder scales by up to 1/8


class RenderCancelled(Exception):
    """The render was told to stop (a cancel, or the server stopping)."""


@dataclass(frozen=True)
class RenderOptions:
    """How to render; validated by the video service."""

    fps: float = 25.0
    width: int | None = None
    height: int | None = None
    max_px: int = 1920  # the output's longest side, whatever was asked
    crf: int = 23
    preset: str = "veryfast"
    deflicker: int = 0  # rolling-mean window in frames; 0 is off
    timestamp: bool = False


@dataclass(frozen=True)
class FrameRef:
    """One frame to render: where it is (None when its file is gone) and when it was taken."""

    path: Path | None
    format: str
    taken_at: dt.datetime
    sequence: int


@dataclass(frozen=True)
class RenderResult:
    frames: int
    skipped: int
    width: int
    height: int
    fps: float

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def output_size(source: tuple[int, int], options: RenderOptions) -> tuple[int, int]:
    """The output size for frames of ``source`` size: what was asked, aspect kept,
    no side above ``max_px``, both even (yuv420p halves the chroma)."""
    width, height = source
    scale = 1.0
    if options.width and options.height:
        scale = min(options.width / width, options.height / height)
    elif options.width:
        scale = options.width / width
    elif options.height:
        scale = options.height / height
    scale = min(scale, options.max_px / max(width, height))
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


class Decoder:
    """Decodes single images with FFmpeg's decoders; strict, so a damaged file is an error."""

    def __init__(self):
        self._contexts: dict[tuple[str, int], object] = {}

    def decode(self, ref: FrameRef, lowres_for: tuple[int, int] | None = None):
        """The frame as a PyAV VideoFrame, or None if it cannot be read."""
        import av
        if ref.path is None or ref.format not in DECODERS:
            return None
        try:
            data = ref.path.read_bytes()
        except OSError:
            return None
        if not data:
            return None
        lowres = self._lowres(data, ref.format, lowres_for)
        key = (ref.format, lowres)
        try:
            context = self._contexts.get(key) or self._open(*key)
            frames = context.decode(av.Packet(data))
        except (av.FFmpegError, ValueError):
            self._contexts.pop(key, None)  # a decoder that failed starts fresh
            return None
        return frames[0] if frames else None

    def _open(self, fmt: str, lowres: int):
        import av
        context = av.CodecContext.create(DECODERS[fmt], "r")
        context.thread_count = 1
        context.options = {"err_detect": "explode", **({"lowres": str(lowres)} if lowres else {})}
        self._contexts[(fmt, lowres)] = context
        return context

    @staticmethod
    def _lowres(data: bytes, fmt: str, target: tuple[int, int] | None) -> int:
        if fmt != "jpeg" or target is None:
            return 0
        size = jpeg_size(data)
        if size is None:
            return 0
        lowres = 0
        while (lowres < MAX_LOWRES and size[0] >> (lowres + 1) >= target[0]
               and size[1] >> (lowres + 1) >= target[1]):
            lowres += 1
        return lowres


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a JPEG's SOF marker, without decoding it."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


def render(frames: Callable[[], Iterable[FrameRef]], total: int, path: Path,
           options: RenderOptions, progress: Callable[[int, int, int], None],
           should_stop: Callable[[], bool]) -> RenderResult:
    """Render ``frames()`` (in order) to an MP4 at ``path``.

    ``frames`` is called once per pass (deflicker reads them twice).
    ``progress(done, skipped, total)`` is called after each frame; ``should_stop()``
    is asked before each, and a true answer raises ``RenderCancelled``.
    Raises ``ValueError`` when no frame can be read.
    """
    import av
    decoder = Decoder()
    size = _first_size(frames(), decoder, should_stop)
    out_size = output_size(size, options)
    gains = _deflicker_gains(frames(), decoder, options.deflicker, should_stop) \
        if options.deflicker > 1 else None
    rate = Fraction(options.fps).limit_denominator(1001)
    container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
    encoder = None
    try:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = out_size
        stream.pix_fmt = "yuv420p"
        # Tagged as what _prepare makes: video range, and JPEG's own BT.601 matrix.
        stream.codec_context.color_range = VIDEO_RANGE
        stream.codec_context.colorspace = BT601
        stream.options = {"crf": str(options.crf), "preset": options.preset}
        encoder = _Encoder(container, stream)
        written = skipped = 0
        for index, ref in enumerate(frames()):
            if should_stop():
                raise RenderCancelled()
            frame = decoder.decode(ref, out_size)
            if frame is None:
                skipped += 1
            else:
                frame = _prepare(frame, out_size, ref, options,
                                 gains[index] if gains is not None else 1.0)
                frame.pts = written
                # A decoded JPEG is an I picture, and libx264 makes every frame that
                # says so a keyframe: an all-intra movie many times the size.
                frame.pict_type = av.video.frame.PictureType.NONE
                frame.time_base = 1 / rate
                encoder.put(frame)
                written += 1
            progress(written, skipped, total)
        encoder.finish()
    finally:
        if encoder is not None:
            encoder.abort()
        container.close()
    return RenderResult(written, skipped, *out_size, float(rate))


class _Encoder(threading.Thread):
    """Encodes and muxes frames from a short queue on a thread of its own.

    The next frame is decoded while this one is encoded (PyAV lets go of the GIL
    in both), as the ffmpeg command line overlaps them. The queue holds at most
    ``DEPTH`` frames, so memory stays bounded. Started from the render thread, it
    and the libx264 threads it starts share that thread's priority.
    """

    DEPTH = 4

    def __init__(self, container, stream):
        super().__init__(name=f"{threading.current_thread().name}-encode", daemon=True)
        self.container = container
        self.stream = stream
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(self.DEPTH)
        self._aborted = threading.Event()
        self.start()

    def put(self, frame) -> None:
        while self.error is None:
            try:
                self._queue.put(frame, timeout=0.5)
                return
            except queue.Full:
                continue
        raise self.error

    def finish(self) -> None:
        """Flush the encoder; raise what went wrong on the thread, if anything did."""
        self.put(None)
        self.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop now, dropping what is queued (a cancel, or a failure elsewhere)."""
        if self.is_alive():
            self._aborted.set()
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put(None)
            self.join()

    def run(self) -> None:
        try:
            while (frame := self._queue.get()) is not None:
                for packet in self.stream.encode(frame):
                    self.container.mux(packet)
            if not self._aborted.is_set():
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
        except BaseException as exc:  # handed to the render thread, which raises it
            self.error = exc


def _first_size(refs: Iterable[FrameRef], decoder: Decoder, should_stop) -> tuple[int, int]:
    for ref in refs:
        if should_stop():
            raise RenderCancelled()
        frame = decoder.decode(ref)
        if frame is not None:
            return frame.width, frame.height
    raise ValueError("none of the frames could be read")


def _deflicker_gains(refs: Iterable[FrameRef], decoder: Decoder, window: int,
                     should_stop) -> np.ndarray:
    """Per frame: the rolling mean of luma over ``window`` frames, over its own luma."""
    means = []
    for ref in refs:
        if should_stop():
            raise RenderCancelled()
        frame = decoder.decode(ref, (1, 1))  # the smallest the decoder can make
        means.append(np.nan if frame is None else float(_luma(frame).mean()))
    values = np.asarray(means, dtype=np.float64)
    known = ~np.isnan(values)
    if not known.any():
        return np.ones(len(values))
    # Unreadable frames take their neighbours' brightness, so they do not skew the mean.
    values = np.interp(np.arange(len(values)), np.flatnonzero(known), values[known])
    pad = window // 2
    padded = np.pad(values, (pad, window - 1 - pad), mode="edge")
    rolling = np.convolve(padded, np.ones(window) / window, mode="valid")
    return np.clip(rolling / np.maximum(values, 1.0), 0.25, 4.0)


def _luma(frame) -> np.ndarray:
    plane = frame.planes[0]
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
    return rows[:frame.height, :frame.width]


def _prepare(frame, size: tuple[int, int], ref: FrameRef, options: RenderOptions, gain: float):
    """Scale to ``size`` as yuv420p (JPEG's full range to video range), then
    deflicker and stamp it if asked."""
    import av
    # JPEGs are full range (0-255); video is 16-235, which players assume for yuv420p.
    source_range = frame.color_range or ("JPEG" if frame.format.name.startswith("yuvj") else None)
    frame = frame.reformat(width=size[0], height=size[1], format="yuv420p",
                           interpolation="BICUBIC", src_color_range=source_range,
                           dst_color_range="MPEG")
    if gain == 1.0 and not options.timestamp:
        return frame
    planes = frame.to_ndarray()  # yuv420p: luma rows, then the two chroma planes
    height, width = size[1], size[0]
    if gain != 1.0:
        planes[:height] = _gain_table(round(gain, 3))[planes[:height]]
    if options.timestamp:
        _burn_in(planes, width, height, ref.taken_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


@functools.lru_cache(maxsize=512)
def _gain_table(gain: float) -> np.ndarray:
    """Video-range luma (16-235) scaled by ``gain`` around black."""
    values = 16 + (np.arange(256) - 16) * gain
    return np.clip(values, 16, 235).astype(np.uint8)


def _burn_in(planes: np.ndarray, width: int, height: int, text: str) -> None:
    """White text with a black edge in the bottom-left corner, neutral in colour."""
    size = max(10, height // 24)
    font = _font(size)
    mask = Image.new("L", (width, size * 2), 0)  # 0 picture, 1 edge, 2 text
    draw = ImageDraw.Draw(mask)
    edge = max(1, size // 12)
    draw.text((size // 2, size // 2), text, font=font, fill=2, stroke_width=edge, stroke_fill=1)
    marks = np.asarray(mask)
    top = height - marks.shape[0]
    luma = planes[top:height]
    luma[marks == 1] = 16
    luma[marks == 2] = 235
    chroma_marks = marks[::2, ::2] > 0
    rows = chroma_marks.shape[0]
    # The U and V planes (height/2 rows of width/2 each) follow the luma, packed two rows to a row.
    quarter = (height // 2) * (width // 2)
    flat = planes[height:].reshape(-1)
    for plane in range(2):
        chroma = flat[plane * quarter:(plane + 1) * quarter].reshape(height // 2, width // 2)
        chroma[top // 2:top // 2 + rows][chroma_marks] = 128


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def iter_refs(photos: Iterable, file_of: Callable) -> Iterator[FrameRef]:
    """FrameRefs for stored photos; ``file_of(photo)`` gives the path or raises for a missing file."""
    for photo in photos:
        try:
            path = file_of(photo)
        except (LookupError, ValueError, OSError):
            path = None
        yield FrameRef(path, photo.format, photo.taken_at_datetime, photo.sequence)
