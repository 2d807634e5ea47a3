"""Decode only where the scene does something: keyframes while it is empty, everything around
a keyframe that shows change or a face (``decode.gate``).

Most of a kiosk day is an empty scene, and decoding every frame of it is the largest cost of an
analysis. A key frame decodes on its own (no other frame needed), so the key frames alone show
the scene every GOP (a camera's 1-2 s) for a small part of the decoding. ``GopWalker`` goes
through the packets once, in the order the container holds them, and decides each GOP (a key
frame and the packets up to the next) by its two key frames:

- a GOP is decoded in full, at the usual frame picking, when the key frame that opens it or the
  one that closes it is active (``SceneGate``: change against a background learned from quiet
  key frames, or a face the configured detector finds). So an active stretch is decoded with
  the GOP before it (a visitor who walks in just after a quiet key frame keeps their first
  second) and the GOP after its last active key frame;
- a GOP between two quiet key frames is skipped: its key frame was decoded (for the look),
  its other packets never are.

Design: one pass with one GOP of look-behind, not a first pass over key frames followed by
seeks into the active stretches. A GOP that opens on a quiet key frame is held as packets
(compressed: one GOP at 4 Mbit/s and 2 s is 1 MB) until the next key frame is looked at, then
decoded or dropped; a GOP that opens on an active one is decoded as it comes. Without seeking,
what the plain reader handles stays handled the same way: a source that cannot seek (a Beam
stream), a file whose index is missing, timestamps that restart mid-file (a seek by time is
ambiguous there), damage. Every packet is read once and decoded at most once, but for the key
frame of a decoded GOP (looked at, then decoded with its GOP); the frames decoded are those an
ungated run decodes, each GOP from its key frame on a flushed decoder. Skipped frames still pass
through the reader's clock and picking grid by their packet times, so the frames picked inside
decoded stretches are the ungated run's, with the same times and indices. The look costs a key
frame's decoding, a thumbnail and, on quiet key frames, one detector run: on a generated 8-minute
kiosk day (1080p30, 2 s GOPs, visitors a quarter of the time) 240 looks and 182 detector runs,
and the gated read took 29-31 s of CPU against 73-78 s (3,960 frames decoded, not 14,400).

Damage in a GOP the gate skips is never decoded, so never noticed in ``videos.error``; a key
frame that does not decode is decided as active, so damage there is decoded and counted.

Limits, each falling back to decoding (never to losing video):
- ``max_gop_s``: a key frame vouches for the scene until the next one, at most this long. A
  GOP held longer is decoded in full from its key frame on (noted in ``videos.error``): a
  stream with long GOPs, or no key frame after the first, is decoded in full. A passer-by in
  view for less than the key frame interval (so at most ``max_gop_s``) can fall between two
  quiet key frames and be missed; one in view longer is on a key frame. With 2 s GOPs that
  is a visitor seen for 1-2 s (under 1 s, ``visitors.min_frames``, they are never counted).
- nothing closes the last GOP, so it is always decoded (a clip of one GOP is decoded whole).
- packets before the first key frame (a recording that starts mid-GOP), and a key frame that
  does not decode, are decided as active.
- an all-intra stream (MJPEG, an all-I H.264; every packet a key frame) is decoded once,
  ungated: looking at its key frames would be decoding it.
Decoding a GOP from its key frame needs closed GOPs (cameras' and x264's default); the leading
B-frames of an open GOP that follows a skipped one do not decode and are counted as damage.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import cv2
import numpy as np

# The look works on a grey thumbnail this wide (height by the frame's shape): 1080p is averaged
# 20 x 20, which smooths camera grain (sigma 3 to 0.15 grey levels) and compression noise
# away while a visitor's head and body still cover tens of its pixels.
THUMB_WIDTH = 96
# A thumbnail pixel "changed" when it differs from the reference by more than this many grey
# levels (after removing the frames' overall brightness difference, so an exposure step is no
# change): far above grain after averaging, well below a person against a wall.
CHANGE_LEVEL = 12.0
# A quiet key frame moves the background this far towards itself: slow light drifts are
# followed within a few key frames; a person is never blended in (a quiet frame shows none).
BACKGROUND_BLEND = 0.25
# A change that stays (a moved chair, a light switched on) becomes the background after this
# many key frames in a row that show it unchanged and no face: else the gate would decode the
# rest of the day. A visitor who stands still facing away that long is taken into the
# background too, and shows again as change when they move or as a face when they turn.
RELEARN_KEYFRAMES = 3


def thumbnail(image: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    """A small blurred grey float32 picture of an RGB (H x W x 3) or grey (H x W) image."""
    h, w = image.shape[:2]
    size = (width, max(1, round(width * h / w)))
    if image.ndim == 3:  # grey first: the resize then averages a third of the bytes (1.6x faster)
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small.astype(np.float32), (0, 0), 1.0)


def changed_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where two thumbnails differ by more than CHANGE_LEVEL once the overall brightness
    difference is taken out (a bool mask)."""
    diff = a - b
    diff -= float(np.median(diff))
    return np.abs(diff) > CHANGE_LEVEL


def changed_share(a: np.ndarray, b: np.ndarray, where=None) -> float:
    """The share of pixels (of ``where``, a slice or mask, or all) of ``changed_pixels``."""
    changed = changed_pixels(a, b)
    region = changed if where is None else changed[where]
    return float(np.mean(region)) if region.size else 0.0


class SceneGate:
    """Whether a key frame is active: it shows change against the background model, or a face.

    ``detect(rgb_image)`` returns the faces the configured detector finds (score filter
    applied). It runs on key frames the change test finds quiet and on those about to become
    the background: the change test alone would miss a visitor present since the first key
    frame (taken into the background) or one who changes the thumbnail too little.
    ``min_share`` is ``decode.gate_change``, ``max_gop_s`` ``decode.gate_max_gop_s`` (used by the
    reader's ``GopWalker``).
    """

    def __init__(self, detect: Callable[[np.ndarray], list], min_share: float, max_gop_s: float):
        self._detect = detect
        self._min_share = min_share
        self.max_gop_s = max_gop_s
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._stable_changes = 0
        self.looks = self.detections = 0

    def active(self, frame: av.VideoFrame) -> bool:
        self.looks += 1
        thumb = thumbnail(frame.to_ndarray(format="gray8"))
        previous, self._previous = self._previous, thumb
        if self._background is None:  # nothing learned yet: the detector alone decides
            if self._faces(frame):
                return True
            self._background = thumb.copy()
            return False
        if changed_share(thumb, self._background) > self._min_share:
            stable = changed_share(thumb, previous) <= self._min_share
            self._stable_changes = self._stable_changes + 1 if stable else 0
            if self._stable_changes >= RELEARN_KEYFRAMES and not self._faces(frame):
                self._background, self._stable_changes = thumb.copy(), 0
            return True
        self._stable_changes = 0
        if self._faces(frame):
            return True
        self._background += BACKGROUND_BLEND * (thumb - self._background)
        return False

    def _faces(self, frame: av.VideoFrame) -> bool:
        self.detections += 1
        image = frame.to_ndarray(format="rgb24")
        quarter_turns = round((frame.rotation or 0) / 90) % 4  # upright, as the reader does
        if quarter_turns:
            image = np.ascontiguousarray(np.rot90(image, quarter_turns))
        return bool(self._detect(image))


@dataclass(frozen=True)
class Passed:
    """A frame of the stream the gate let pass undecoded, in presentation order: its packet's
    time (seconds, the stream's clock; None where the packet has none)."""

    time: float | None
    looked: bool = False  # a key frame, decoded for the look


def _seconds(packet: av.Packet) -> float | None:
    return float(packet.pts * packet.time_base) if packet.pts is not None else None


class GopWalker:
    """Walk a stream's packets GOP by GOP, yielding decoded frames of the GOPs to decode and a
    ``Passed`` per frame of those skipped, in presentation order.

    ``decode(packet)`` and ``drain()`` (end of a decoded stretch: the decoder's last frames,
    then a flushed decoder) decode with the reader's decoder, which counts damage; ``look``
    (a key frame packet) says whether it is active, decoding it on that same, idle, decoder.
    ``intra_only``: the codec says every frame is a key frame.
    """

    def __init__(self, packets, decode, drain, look, gop_cap: tuple[float, float], intra_only):
        self._packets = (p for p in packets if p.size)  # empty packets carry no frame
        self._decode, self._drain, self._look = decode, drain, look
        self._max_gop_s, self._rate = gop_cap  # seconds; frames per second, for untimed packets
        self._intra_only = intra_only
        self.long_gops: list[float] = []  # where a GOP outlasted max_gop_s (key frame time)
        self.all_intra = False

    def frames(self) -> Iterator[av.VideoFrame | Passed]:
        head = list(itertools.islice(self._packets, 2))
        if self._intra_only or (len(head) == 2 and all(p.is_keyframe for p in head)):
            self.all_intra = True
            for packet in itertools.chain(head, self._packets):
                yield from self._decode(packet)
            yield from self._drain()
            return
        held: list[av.Packet] = []  # the current GOP's packets, while no decision is made
        decoding = True  # the current GOP is decoded as it comes (before any key frame: yes)
        for packet in itertools.chain(head, self._packets):
            if packet.is_keyframe:
                if decoding:
                    yield from self._drain()
                active = self._look(packet)
                if held:  # a GOP opened quietly: the key frame closing it decides
                    yield from self._decoded(held) if active else self._passed(held)
                held, decoding = ([], True) if active else ([packet], False)
            elif not decoding:
                held.append(packet)
                if self._too_long(held):
                    self.long_gops.append(_seconds(held[0]) or 0.0)
                    yield from self._decoded(held, drain=False)
                    held, decoding = [], True
                continue
            if decoding:
                yield from self._decode(packet)
        # Nothing closes the last GOP: decode it.
        yield from self._decoded(held) if held else self._drain()

    def _decoded(self, packets: list[av.Packet], drain: bool = True) -> Iterator[av.VideoFrame]:
        for packet in packets:
            yield from self._decode(packet)
        if drain:
            yield from self._drain()

    @staticmethod
    def _passed(packets: list[av.Packet]) -> Iterator[Passed]:
        times = [_seconds(p) for p in packets]
        if None not in times:
            times.sort()  # presentation order (B-frames come after the frames they precede)
        yield Passed(times[0], looked=True)
        for t in times[1:]:
            yield Passed(t)

    def _too_long(self, held: list[av.Packet]) -> bool:
        first, last = _seconds(held[0]), _seconds(held[-1])
        if first is None or last is None:
            return len(held) / self._rate > self._max_gop_s
        return last - first > self._max_gop_s
