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
