"""Render a synthetic kiosk clip with its ground truth.

A static backdrop (:mod:`simulation.backdrop`), visitors scripted by
:mod:`simulation.choreography` and drawn by :mod:`simulation.figures`, each face a labelled photo
(:mod:`simulation.photos`); the truth is written next to the clip (:mod:`simulation.ground_truth`
has its format). A frame is a copy of the backdrop plus each visitor in view, farther first; it
goes to the encoder as YUV 4:2:0 converted by OpenCV (BT.601, limited range, as FFmpeg's default).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from simulation import SimulationError
from simulation.backdrop import make_background
from simulation.choreography import MAX_SWAY_SCALE, plan_visits, trajectory
from simulation.figures import composite, make_figure
from simulation.ground_truth import clip_truth, dump_truth, truth_path_for, visit_truth
from simulation.photos import FaceMix, FaceSource, LabelledPhoto, sample_faces
from simulation.render_options import DEFAULT_CRF, DEFAULT_PRESET, RenderOptions
from simulation.returns import assign_people, draw_passers, identity_truth, plan_passers

# How clips are drawn (backdrop, figures, choreography), recorded in the truth and in cached clips'
# names: bump it whenever the drawing changes, so that a clip is never scored as if drawn by other
# code (2: the whole face image instead of an oval under a hair cap).
RENDERER = 2


def render_clip(
    out: str | Path,
    faces: FaceSource | FaceMix | list[LabelledPhoto],
    opt: RenderOptions,
    progress=None,
) -> dict:
    """Render the clip to ``out`` and its truth to ``<out>.truth.json``; return the truth.
    ``faces``: a source, several (:class:`simulation.photos.FaceMix`), or the photos themselves.
    ``progress``, when given, is called with 1 after each frame is encoded."""
    opt.validate()
    out = Path(out)
    _check_output(out)
    plans = plan_visits(opt, np.random.default_rng([opt.seed, 2]))
    people = assign_people(plans, opt, np.random.default_rng([opt.seed, 4]))
    passers = plan_passers(plans, opt, np.random.default_rng([opt.seed, 5]))
    cast = _cast(max(people, default=-1) + 1, faces, opt.seed)
    photos = [cast[p] for p in people]
    background = make_background(opt.width, opt.height, np.random.default_rng([opt.seed, 1]))

    times = np.arange(opt.frames, dtype=np.float64) / opt.fps
    sprite_rng = np.random.default_rng([opt.seed, 3])
    tracks, visitors = [], []
    for v, photo in zip(plans, photos, strict=True):
        figure = make_figure(photo.image, v.face_px * MAX_SWAY_SCALE, sprite_rng)
        x, y, side = trajectory(v, times, opt.width)
        tracks.append((figure, x, y, side))
        visitors.append(visit_truth(v, photo, times, x, y, side, opt))
    identity_truth(visitors, plans, people, passers, opt)

    _encode(out, opt, background, tracks, passers, progress)
    truth = clip_truth(out.name, RENDERER, opt, visitors)
    truth_path_for(out).write_text(dump_truth(truth))
    return truth


def _check_output(out: Path) -> None:
    """A video file name, in a folder that exists (created when missing)."""
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov", ".avi"):
        raise SimulationError(f"{out}: use a .mp4, .mkv, .mov or .avi file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimulationError(f"cannot create output folder {out.parent}: {exc.strerror}") from None


def _cast(
    n: int, faces: FaceSource | FaceMix | list[LabelledPhoto], seed: int
) -> list[LabelledPhoto]:
    """``n`` distinct photos, one per person: drawn from a source or sources with ``seed``, or
    a list's first ones."""
    if isinstance(faces, FaceSource):
        return sample_faces(faces, n, seed)
    if isinstance(faces, FaceMix):
        return faces.cast(n, seed)
    if len(faces) < n:
        raise SimulationError(f"need {n} distinct faces, got {len(faces)}")
    return list(faces[:n])


def _encode(
    out: Path, opt: RenderOptions, background: np.ndarray, tracks, passers, progress
) -> None:
    """Draw and encode every frame: ``tracks`` holds (figure, x, y, side) per visitor, one
    value per frame, side NaN where the visitor is out of the scene; ``passers`` walk past in
    front of everyone."""
    container, stream = _open_output(out, opt)
    time_base = stream.codec_context.time_base
    buffers = [np.empty_like(background), np.empty_like(background)]
    grain = Grain(opt) if opt.grain > 0 else None

    def draw(i: int) -> av.VideoFrame:
        frame = buffers[i % 2]
        np.copyto(frame, background)
        present = [tr for tr in tracks if not math.isnan(tr[3][i])]
        present.sort(key=lambda tr: tr[3][i])  # farther (smaller) first
        for figure, x, y, side in present:
            composite(frame, figure, x[i], y[i], side[i])
        if passers:
            draw_passers(frame, passers, i / opt.fps)
        yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
        if grain is not None:
            grain.add(yuv[: opt.height], i)
        vf = av.VideoFrame.from_ndarray(yuv, "yuv420p")
        vf.pts, vf.time_base = i, time_base
        return vf

    # Draw frame i + 1 on a worker thread while the encoder takes frame i (both release the GIL).
    n = opt.frames
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(draw, 0)
            for i in range(n):
                vf = pending.result()
                if i + 1 < n:
                    pending = pool.submit(draw, i + 1)
                container.mux(stream.encode(vf))
                if progress is not None:
                    progress(1)
        container.mux(stream.encode(None))
    finally:
        container.close()


def _open_output(path: Path, opt: RenderOptions):
    try:
        container = av.open(str(path), mode="w")
    except Exception as exc:
        raise SimulationError(f"cannot write {path}: {exc}") from None
    rate = Fraction(opt.fps).limit_denominator(1001)
    stream = container.add_stream(opt.codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = opt.width, opt.height, "yuv420p"
    stream.codec_context.time_base = 1 / rate
    stream.thread_type = "AUTO"
    options = {}
    if opt.gop_s is not None:
        # A camera's fixed GOP: no extra key frames where x264 would see a scene cut.
        keyint = max(1, round(opt.gop_s * opt.fps))
        stream.codec_context.gop_size = keyint
        if opt.codec in DEFAULT_CRF:
            options[f"{opt.codec[3:]}-params"] = f"keyint={keyint}:min-keyint={keyint}:scenecut=0"
    if opt.codec in DEFAULT_CRF:
        if opt.bitrate:
            stream.bit_rate = int(opt.bitrate)
        else:
            options["crf"] = str(opt.crf if opt.crf is not None else DEFAULT_CRF[opt.codec])
        options["preset"] = opt.preset or DEFAULT_PRESET[opt.codec]
        if opt.codec == "libx265":
            options["x265-params"] = ":".join(
                p for p in ("log-level=error", options.get("x265-params")) if p
            )
    else:
        stream.bit_rate = int(opt.bitrate or 0.07 * opt.width * opt.height * opt.fps)
    stream.options = options
    if opt.start_time:
        container.metadata["creation_time"] = opt.start_time
    return container, stream


class Grain:
    """Fresh camera grain on every frame's luma: Gaussian noise of ``opt.grain`` grey levels.

    Drawing 2 million normal numbers a frame would cost more than the encoding, so a few noise
    planes are drawn once (a little larger than the frame) and each frame takes one of them at a
    random offset: no two consecutive frames share their noise, so the encoder cannot predict it
    away, as it cannot a real sensor's. Drawn from its own generator: the scene stays the seed's.
    """

    PLANES, MARGIN = 6, 32

    def __init__(self, opt: RenderOptions):
        rng = np.random.default_rng([opt.seed, 5])
        shape = (opt.height + self.MARGIN, opt.width + self.MARGIN)
        self._pos, self._neg = [], []
        for _ in range(self.PLANES):  # signed noise as two saturating uint8 planes (fast adds)
            noise = np.rint(rng.normal(0.0, opt.grain, shape)).clip(-255, 255)
            self._pos.append(noise.clip(0, None).astype(np.uint8))
            self._neg.append((-noise).clip(0, None).astype(np.uint8))
        self._picks = rng.integers(0, [self.PLANES, self.MARGIN, self.MARGIN], (opt.frames, 3))
        self._size = (opt.height, opt.width)

    def add(self, luma: np.ndarray, i: int) -> None:
        """Add frame ``i``'s grain to ``luma`` (H x W uint8) in place."""
        k, dy, dx = self._picks[i]
        h, w = self._size
        cv2.add(luma, self._pos[k][dy : dy + h, dx : dx + w], dst=luma)
        cv2.subtract(luma, self._neg[k][dy : dy + h, dx : dx + w], dst=luma)
