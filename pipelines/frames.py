"""Stage 2, video → frames: decode with PyAV and pick frames at a fixed rate by timestamp.

Only the picked frames are converted to RGB (conversion costs more than decoding at 1080p), every
frame is turned upright by its display matrix (phone videos), variable frame rate is handled by
picking on presentation timestamps, and a corrupt stretch of packets is skipped rather than ending
the video. With a ``pipelines.gate.SceneGate`` (``decode.gate``) only the GOPs around activity are
decoded (``pipelines.gate`` has the design); the frames it skips still go through the clock and
the picking grid by their packet times, so times, indices and picks match an ungated read.

When frames are picked at a fraction of the stream's rate, an H.264 or HEVC decoder is told to
drop non-reference frames (``decode.skip_nonref``: FFmpeg's ``skip_frame`` NONREF): no other
frame is predicted from them, so nothing else changes, and a pick falls on the next frame that
is decoded instead, a frame or two later. With the B-frames of x264's defaults that is half the
frames and 20-40 % of the decoding work; cameras that send no B-frames lose nothing and gain
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import av
import numpy as np

from pipelines.gate import GopWalker, Passed, SceneGate

# Consecutive undecodable packets after which a video is declared broken rather than damaged.
MAX_CONSECUTIVE_ERRORS = 200
# A timestamp this far behind the previous frame's is a restart (recordings joined, a camera
# restarted mid-file), not decoder jitter: times go on from where they were.
RESTART_S = 0.5
# Video data missing this much (and this share of the video) at its start or end is reported.
MISSING_S, MISSING_SHARE = 1.0, 0.1
# Codecs whose FFmpeg decoder can drop non-reference frames (AVDISCARD_NONREF) without damage.
NONREF_CODECS = frozenset({"h264", "hevc"})


class VideoError(Exception):
    """The file cannot be read as a video; the message is the one-line reason recorded for it."""


@dataclass(frozen=True)
class Frame:
    index: int  # position among all decoded frames of the video
    t_s: float  # presentation time, seconds from the start of the video stream
    image: np.ndarray  # upright RGB, uint8, H x W x 3


@dataclass
class VideoInfo:
    """What the container says, completed with counters while decoding runs."""

    duration_s: float | None
    fps: float | None
    width: int
    height: int
    rotation: int
    codec: str
    creation_time: datetime | None
    pick_fps: float  # frames picked per second of video (decode.fps)
    # Frames the decoder produced: the decoding work. With the gate, a key frame looked at and
    # then decoded again with its active stretch counts twice, so decoded + skipped can exceed
    # the stream's frames by the number of such key frames.
    frames_decoded: int = 0
    # Frames of the stream never decoded: passed by the gate, or non-reference frames the
    # decoder dropped (``VideoReader(skip_nonref=True)``).
    frames_skipped: int = 0
    corrupt_packets: int = 0
    first_t_s: float | None = None  # the first decoded frame's time: late when the start is lost
    last_t_s: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def decoded_span_s(self) -> float:
        """Seconds from the stream's start to the end of the last decoded frame."""
        return self.last_t_s + 1.0 / (self.fps or self.pick_fps)

    def missing(self, seconds: float) -> bool:
        """Whether this much video data missing is worth reporting."""
        length = self.duration_s or self.decoded_span_s()
        return seconds > max(MISSING_S, MISSING_SHARE * length)

    def ends_short(self) -> bool:
        stated = self.duration_s
        return bool(stated) and self.missing(stated - self.decoded_span_s())

    def video_duration_s(self) -> float:
        """The container's duration, else (or where the video data ends well before it) the
        span of decoded timestamps plus one frame."""
        if self.duration_s and not self.ends_short():
            return self.duration_s
        return self.decoded_span_s()


def _creation_time(container) -> datetime | None:
    raw = container.metadata.get("creation_time") if container.metadata else None
    if not raw:
        return None
    try:
        stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _seconds(container, stream, field: str) -> float | None:
    """The stream's ``duration`` or ``start_time`` in seconds (from the container's index), else
    the container's own."""
    value = getattr(stream, field)
    if value is not None and stream.time_base is not None:
        return float(value * stream.time_base)
    value = getattr(container, field)
    return value / av.time_base if value is not None else None


def _main_video_stream(streams):
    """The video to analyse: the largest stream that is not a cover picture (an mkv or mp4 may
    carry a thumbnail or a second, smaller view first), the first of equals."""
    real = [s for s in streams if not s.disposition & av.stream.Disposition.attached_pic]
    candidates = real or list(streams)
    return max(
        candidates, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0)
    )


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    # PyAV reports the display matrix as a counter-clockwise angle, as np.rot90 turns.
    quarter_turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


class VideoReader:
    """Decode one video, yielding upright RGB frames at ``fps`` frames per second of video.

    ``source`` is a local path or a readable binary file object (a Beam FileSystems stream);
    ``gate``: decode only around activity (``pipelines.gate``), None: every frame.
    ``skip_nonref``: drop non-reference frames where picking takes at most every other frame
    of an H.264 or HEVC stream; frame indices then come from the time (see ``frames``).
    """

    def __init__(
        self, source, fps: float, threads: int, gate: SceneGate | None = None, skip_nonref=False
    ):
        self.fps = fps
        self._gate = gate
        self._walker: GopWalker | None = None
        self._position = 0  # frames of the stream passed so far, decoded or not
        self._consecutive_errors = 0
        try:
            self._container = av.open(source, mode="r", metadata_errors="ignore")
        except av.error.FFmpegError as e:
            raise VideoError(f"not a readable video container ({_reason(e)})") from None
        except (OSError, ValueError) as e:
            raise VideoError(f"cannot open: {e}") from None
        if not self._container.streams.video:
            kinds = sorted({s.type for s in self._container.streams}) or ["no"]
            self.close()
            raise VideoError(f"no video stream (file has {', '.join(kinds)} streams)")
        self._stream = _main_video_stream(self._container.streams.video)
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = max(0, threads)
        ctx = self._stream.codec_context
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.info = VideoInfo(
            duration_s=_seconds(self._container, self._stream, "duration"),
            fps=float(rate) if rate else None,
            width=ctx.width,
            height=ctx.height,
            rotation=0,
            codec=ctx.name,
            creation_time=_creation_time(self._container),
            pick_fps=fps,
        )
        source_fps = self.info.fps or 0.0
        self._skipping = bool(skip_nonref and ctx.name in NONREF_CODECS and source_fps >= 2 * fps)
        if self._skipping:
            ctx.skip_frame = "NONREF"
        self._fed = self._output = 0  # packets given to the decoder, frames it gave back
        self._last_index = -1

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        """The frames a packet completes; a damaged packet is dropped (counted) and decoding
        resyncs on the next decodable one."""
        self._fed += packet.size > 0
        try:
            frames = packet.decode()
        except av.error.FFmpegError as e:
            self.info.corrupt_packets += 1
            self._consecutive_errors += 1
            if self._consecutive_errors > MAX_CONSECUTIVE_ERRORS:
                raise VideoError(f"undecodable video data ({_reason(e)})") from None
            return []
        self._consecutive_errors = 0
        return frames

    def _decoded(self) -> Iterator[av.VideoFrame]:
        for packet in self._container.demux(self._stream):
            yield from self._decode(packet)

    def _drain(self) -> list[av.VideoFrame]:
        """The decoder's last frames of a decoded stretch; the decoder is then flushed, ready
        to start again at any key frame."""
        context = self._stream.codec_context
        try:
            frames = context.decode(None)
        except av.error.FFmpegError:
            frames = []
        context.flush_buffers()
        for frame in frames:  # a flush carries no packet to take the time base from
            frame.time_base = self._stream.time_base
        return frames

    def _look(self, packet: av.Packet) -> bool:
        """Whether the gate finds the key frame in ``packet`` active; one that does not decode
        is (decoding its GOPs in full then counts the damage)."""
        try:
            frames = self._stream.codec_context.decode(packet)
        except av.error.FFmpegError:
            frames = []
        frames += self._drain()
        self.info.frames_decoded += len(frames)
        if not frames:
            return True
        self.info.rotation = int(frames[-1].rotation or 0)
        return self._gate.active(frames[-1])

    def _source(self) -> Iterator[av.VideoFrame | Passed]:
        if self._gate is None:
            return self._decoded()
        rate = self.info.fps or self.fps
        self._walker = GopWalker(
            self._container.demux(self._stream),
            self._decode,
            self._drain,
            self._look,
            (self._gate.max_gop_s, rate),
            self._stream.codec_context.codec.intra_only,
        )
        return self._walker.frames()

    @property
    def sample_interval_s(self) -> float:
        """Seconds of video each picked frame stands for: one step at ``fps``, or one source
        frame where the source has fewer frames per second than that."""
        return max(1.0 / self.fps, 1.0 / self.info.fps if self.info.fps else 0.0)

    def _times(self, source) -> Iterator[tuple[av.VideoFrame | Passed, float]]:
        """Each frame of ``source`` with its time in seconds from the start of the stream (so
        frames lost to damage at the start do not shift the rest), monotonic across restarts."""
        origin = _seconds(self._container, self._stream, "start_time")
        offset, last_raw, restarts = 0.0, None, 0
        rate = self.info.fps or self.fps
        for index, frame in enumerate(source):
            if frame.time is None:
                yield frame, index / rate
                continue
            raw = frame.time
            if origin is None or (last_raw is None and raw < origin):  # index missing or off
                origin = raw
            if last_raw is not None and raw < last_raw - RESTART_S:
                offset += last_raw - raw + 1.0 / rate
                restarts += 1
            last_raw = raw
            yield frame, raw - origin + offset
        if restarts:
            self.info.warnings.append(
                f"timestamps restart {restarts} time{'s' if restarts > 1 else ''} "
                "(joined recordings?): later times follow on"
            )

    def frames(self) -> Iterator[Frame]:
        step = 1.0 / self.fps
        next_t = 0.0
        try:
            for frame, t in self._times(self._source()):
                index, self._position = self._position, self._position + 1
                self.info.last_t_s = max(self.info.last_t_s, t)
                if isinstance(frame, Passed):  # skipped by the gate: the grid moves on past it
                    self.info.frames_skipped += not frame.looked
                    if frame.looked and self.info.first_t_s is None:
                        self.info.first_t_s = t
                    next_t = _grid_after(t, step)
                    continue
                self.info.frames_decoded += 1
                self._output += 1
                if self._skipping:
                    index = self._index_at(t, index)
                if self.info.first_t_s is None:
                    self.info.first_t_s = t
                if t + 1e-6 < next_t:
                    continue
                # Next pick on the regular grid after t, so gaps (VFR, dropped frames) don't bunch.
                next_t = _grid_after(t, step)
                self.info.rotation = int(frame.rotation or 0)
                image = _upright(frame.to_ndarray(format="rgb24"), self.info.rotation)
                yield Frame(index=index, t_s=t, image=image)
        except av.error.FFmpegError as e:
            raise VideoError(
                f"decoding failed after {self.info.frames_decoded} frames ({_reason(e)})"
            ) from None
        if self.info.frames_decoded == 0:
            raise VideoError("no decodable video frames")
        if self._skipping:  # what the decoder dropped, less what it could not decode
            dropped = self._fed - self._output - self.info.corrupt_packets
            self.info.frames_skipped += max(0, dropped)
        self._note_problems()

    def _index_at(self, t: float, counted: int) -> int:
        """A frame's position in the stream while the decoder drops frames unseen: its time
        times the frame rate (exact at a constant rate), never behind a frame already given."""
        index = max(round(t * self.info.fps), counted, self._last_index + 1)
        self._last_index = index
        return index

    def _note_problems(self) -> None:
        """The warnings ``videos.error`` carries for a video that was read to its end."""
        if self.info.corrupt_packets:
            n = self.info.corrupt_packets
            self.info.warnings.append(f"skipped {n} corrupt packet{'s' if n > 1 else ''}")
        if self.info.missing(self.info.first_t_s or 0.0):
            self.info.warnings.append(
                f"video data starts at {self.info.first_t_s:.1f} s (the frames before it could "
                "not be decoded)"
            )
        if self.info.ends_short():
            self.info.warnings.append(
                f"video data ends at {self.info.decoded_span_s():.1f} s of the "
                f"{self.info.duration_s:.1f} s the container states (truncated?)"
            )
        long_gops = self._walker.long_gops if self._walker else []
        if long_gops:
            origin = _seconds(self._container, self._stream, "start_time") or 0.0
            n, first = len(long_gops), long_gops[0] - origin
            self.info.warnings.append(
                f"key frames over decode.gate_max_gop_s = {self._gate.max_gop_s:g} s apart "
                f"({n} time{'s' if n > 1 else ''}, first at {first:.1f} s): decoded in full there"
            )

    @property
    def duration_s(self) -> float:
        return self.info.video_duration_s()


def _grid_after(t: float, step: float) -> float:
    """The first time of the picking grid after ``t``: an ungated read's next pick after a frame
    at ``t``, whether or not that frame was picked."""
    return (math.floor(t / step + 1e-6) + 1) * step


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split())[:200]
