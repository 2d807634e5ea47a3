"""Small generated video files for tests: clean clips and every kind of bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def write_clip(
    path: Path,
    seconds: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
    rotation: int | None = None,
    frame_times: list[float] | None = None,
    creation_time: str | None = None,
    image=None,
    faststart: bool = False,
    gop: int | None = None,
) -> Path:
    """Encode a moving gradient clip; ``frame_times`` (seconds) makes it variable-frame-rate,
    ``gop`` puts a key frame every that many frames."""
    width, height = size
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        if creation_time:
            out.metadata["creation_time"] = creation_time
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        times = (
            frame_times if frame_times is not None else [i / fps for i in range(int(seconds * fps))]
        )
        for i, t in enumerate(times):
            frame_image = image(i, t) if image else _gradient(width, height, i)
            frame = av.VideoFrame.from_ndarray(frame_image, format="rgb24")
            frame.pts = round(t * 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _gradient(width: int, height: int, i: int) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    img = np.stack([x + 0 * y, y + 0 * x, (x + y + 8 * i) % 256], axis=-1)
    img[: height // 4, : width // 4] = 255  # a bright top-left corner shows orientation
    return img.astype(np.uint8)


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        tone = (np.sin(np.arange(samples) / 10) * 0.2).astype(np.float32)[None, :]
        for start in range(0, samples, 1024):
            chunk = tone[:, start : start + 1024]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def truncate(source: Path, dest: Path, fraction: float) -> Path:
    data = source.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def without_index(source: Path, dest: Path) -> Path:
    """An mp4 whose moov box (the index) is gone: what a recorder killed mid-file leaves."""
    data = source.read_bytes()
    at = data.rfind(b"moov") - 4  # the box starts with its 4-byte size
    dest.write_bytes(data[:at])
    return dest


def corrupt_middle(source: Path, dest: Path, seed: int = 0) -> Path:
    """Overwrite a stretch in the middle of the stream with noise; the rest stays decodable."""
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(seed)
    start, length = len(data) * 2 // 5, len(data) // 8
    data[start : start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    dest.write_bytes(bytes(data))
    return dest


def write_frames(
    path: Path,
    images,
    fps: int = 10,
    codec: str = "libx264",
    gop: int | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode RGB ``images`` (an iterable) at ``fps``, frame i at time i / fps; ``gop`` puts a
    key frame exactly every that many frames (x264: no extra ones at scene cuts), as cameras
    do. Any container: MJPEG in .avi (pix_fmt yuvj420p), GIF (rgb8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = None
        for i, image in enumerate(images):
            if stream is None:
                stream = out.add_stream(codec, rate=fps)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = pix_fmt
                if gop:
                    stream.codec_context.gop_size = gop
                    if codec == "libx264":
                        stream.options = {
                            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"
                        }
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def scene(
    seconds: float,
    fps: int = 10,
    size: tuple[int, int] = (192, 108),
    visitor: tuple[float, float] | None = None,
    grain: float = 3.0,
    seed: int = 0,
    backdrop: np.ndarray | None = None,
    figure: np.ndarray | None = None,
):
    """The frames of a fixed camera's scene: a still room (or ``backdrop``) under fresh camera
    grain of ``grain`` grey levels every frame; from ``visitor[0]`` to ``visitor[1]`` seconds a
    visitor stands in it: ``figure`` (a frame of the same size) or a head-and-shoulders blob."""
    rng = np.random.default_rng(seed)
    width, height = size
    room = backdrop if backdrop is not None else _room(width, height)
    person = figure if figure is not None else _with_blob(room)
    for i in range(round(seconds * fps)):
        t = i / fps
        base = person if visitor and visitor[0] <= t < visitor[1] else room
        noise = rng.standard_normal(base.shape, dtype=np.float32) * grain if grain else 0.0
        yield np.clip(base + noise, 0, 255).astype(np.uint8)


def _room(width: int, height: int) -> np.ndarray:
    x = np.linspace(60, 200, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0.8, 1.1, height, dtype=np.float32)[:, None, None]
    room = np.broadcast_to(x * y * np.array([1.0, 0.95, 0.85], np.float32), (height, width, 3))
    room = room.copy()
    room[height // 8 : height // 3, width // 10 : width // 4] = (90, 140, 200)  # a window
    return room.clip(0, 255).astype(np.uint8)


def _with_blob(room: np.ndarray) -> np.ndarray:
    """The room with a dark body and a skin-toned head in the middle (red far above blue,
    which the room never has)."""
    height, width = room.shape[:2]
    person = room.copy()
    cx, head = width // 2, height // 6
    cv2.ellipse(person, (cx, height - head), (2 * head, 2 * head), 0, 180, 360, (40, 40, 60), -1)
    cv2.ellipse(person, (cx, height // 2), (head * 3 // 4, head), 0, 0, 360, (220, 150, 110), -1)
    return person
