"""What a synthetic clip looks like: size, rate, length, codec, and how its visitors behave."""

from __future__ import annotations

from dataclasses import dataclass

import av

from simulation import SimulationError

CODEC_ALIASES = {
    "h264": "libx264",
    "x264": "libx264",
    "libx264": "libx264",
    "h265": "libx265",
    "hevc": "libx265",
    "x265": "libx265",
    "libx265": "libx265",
    "mpeg4": "mpeg4",
}
DEFAULT_CRF = {"libx264": 23, "libx265": 28}
DEFAULT_PRESET = {"libx264": "veryfast", "libx265": "ultrafast"}
SCHEDULES = ("steady", "day")
# Options left out of a clip's truth while at these values, so clips rendered before they
# existed keep their truth byte for byte.
NEWER_DEFAULTS = {
    "schedule": "steady",
    "busy_share": 0.25,
    "grain": 0.0,
    "gop_s": None,
    "returns": 0.0,
    "return_gap_s": 60.0,
    "passers": 0.0,
}


@dataclass
class RenderOptions:
    width: int = 1920
    height: int = 1080
    fps: float = 30.0
    duration_s: float = 60.0
    codec: str = "libx264"
    crf: int | None = None  # libx264/libx265 quality; default 23 / 28
    bitrate: int | None = None  # bits per second; mpeg4 default ~0.07 bit per pixel per frame
    preset: str | None = None  # libx264 default veryfast, libx265 ultrafast
    seed: int = 0
    visitors_max: int = 3  # at most this many visitors in frame at any instant
    visitors_total: int | None = None  # cap on the number of visitors in the clip
    walk_s: tuple[float, float] = (1.5, 3.0)  # walking in, and walking out
    linger_s: tuple[float, float] = (4.0, 20.0)
    gap_s: tuple[float, float] = (0.5, 8.0)  # pause before the next visitor in the same "lane"
    face_frac: tuple[float, float] = (0.11, 0.23)  # face box side / frame height while lingering
    boxes_every_s: float = 1.0  # 0: no per-visitor boxes in the truth
    start_time: str | None = None  # ISO time written as the container's creation_time
    # A kiosk day (``day``): visitors come only in busy stretches covering ``busy_share`` of the
    # clip, the rest is the empty scene; ``steady`` keeps them coming all through (today's clips).
    schedule: str = "steady"
    busy_share: float = 0.25  # day schedule only
    # Camera grain: standard deviation, in grey levels, of fresh noise on every frame's luma. A
    # real camera's noise is what makes its bit rate (and decoding cost) real: a clean drawn
    # scene compresses to a tenth of it and decodes unrealistically fast. 0: none (no draws).
    grain: float = 0.0
    gop_s: float | None = None  # a key frame every gop_s seconds, fixed (a camera); None: x264's
    # Identity cases (simulation/returns.py): the share of visits made by someone who came at
    # least return_gap_s before, and the share of lingers a passer-by hides for 3-5 s.
    returns: float = 0.0
    return_gap_s: float = 60.0
    passers: float = 0.0

    def validate(self) -> None:
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise SimulationError(f"size must be even and at least 16x16, got {self.size}")
        if not 1 <= self.fps <= 240:
            raise SimulationError(f"fps must be between 1 and 240, got {self.fps}")
        if not 0 < self.duration_s <= 6 * 3600:
            raise SimulationError(f"duration must be between 0 and 6 hours, got {self.duration_s}")
        if not 0 <= self.visitors_max <= 10:
            raise SimulationError(f"visitors-max must be 0..10, got {self.visitors_max}")
        for name in ("walk_s", "linger_s", "gap_s", "face_frac"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise SimulationError(f"{name} must be a range 0 < min <= max, got {lo}:{hi}")
        if self.face_frac[1] > 0.45:
            raise SimulationError("face_frac above 0.45 of the frame height does not fit")
        if self.schedule not in SCHEDULES:
            raise SimulationError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if not 0 < self.busy_share <= 1:
            raise SimulationError(f"busy_share must be in (0, 1], got {self.busy_share}")
        if not 0 <= self.grain <= 20:
            raise SimulationError(f"grain must be 0..20 grey levels, got {self.grain}")
        for name in ("returns", "passers"):
            if not 0 <= getattr(self, name) <= 1:
                raise SimulationError(f"{name} must be a share between 0 and 1")
        if self.return_gap_s < 0:
            raise SimulationError("return_gap_s must not be negative")
        if self.gop_s is not None and not 1 / self.fps <= self.gop_s <= 60:
            raise SimulationError(f"gop_s must be one frame to 60 s, got {self.gop_s}")
        self.codec = resolve_codec(self.codec)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def frames(self) -> int:
        return max(1, round(self.duration_s * self.fps))


def resolve_codec(name: str) -> str:
    codec = CODEC_ALIASES.get(name.lower())
    if codec is None:
        raise SimulationError(f"unknown codec {name!r}; use libx264, mpeg4 or libx265")
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        raise SimulationError(f"this PyAV build has no {codec} encoder") from None
    return codec


def kiosk_day(minutes: float = 8.0, seed: int = 0) -> RenderOptions:
    """A benchmark kiosk day: 1080p30 H.264 at 4 Mbit/s (a kiosk camera's rate) with its grain,
    a key frame every 2 s, visitors in busy stretches covering a quarter of the clip."""
    return RenderOptions(
        width=1920,
        height=1080,
        fps=30.0,
        duration_s=minutes * 60,
        bitrate=4_000_000,
        seed=seed,
        schedule="day",
        busy_share=0.25,
        grain=2.5,
        gop_s=2.0,
    )
