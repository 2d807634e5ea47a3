"""decode.gate: key frames only while the scene is empty, every frame around activity
(pipelines/gate.py), on small generated clips with fixed GOPs, as cameras write them."""

import math
from pathlib import Path

import av
import numpy as np
import pytest
from videos import corrupt_middle, scene, write_clip, write_frames

from pipelines.faces import create_detector
from pipelines.frames import VideoReader
from pipelines.gate import SceneGate

DEMO = Path(__file__).resolve().parents[1] / "demo" / "kiosk_20240501_100000.mp4"


def never(image):  # a detector that finds no face: the change test alone decides
    return []


def read(path, gate=None, fps=5.0):
    with VideoReader(str(path), fps=fps, threads=2, gate=gate) as reader:
        frames = list(reader.frames())
    return reader.info, frames


def gated(path, detect=never, max_gop_s=4.0, fps=5.0):
    return read(path, SceneGate(detect, min_share=0.004, max_gop_s=max_gop_s), fps)


def times(frames) -> list[float]:
    return [round(f.t_s, 3) for f in frames]


def same_frames(a, b) -> bool:
    """The same pictures at the same indices and times."""
    return [(f.index, round(f.t_s, 6)) for f in a] == [
        (f.index, round(f.t_s, 6)) for f in b
    ] and all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))


def plain_decode(path, fps):
    """Today's reading, written out independently: every frame decoded, the first frame at or
    after each step of the 1/fps grid picked."""
    step, next_t, picked = 1.0 / fps, 0.0, []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if frame.time + 1e-6 >= next_t:
                picked.append((index, round(frame.time, 6), frame.to_ndarray(format="rgb24")))
                next_t = (math.floor(frame.time / step + 1e-6) + 1) * step
    return picked


def test_quiet_stretches_are_skipped_and_a_visitor_is_analysed_from_the_gop_before(tmp_path):
    """1 s GOPs; the visitor comes at 3.1 s, just after the quiet key frame at 3.0, and leaves at
    5.5 s: the key frames at 4 and 5 s are active, so 3.0-6.0 s is decoded (the GOP before the
    first active key frame, the GOP after the last), plus the last GOP, which nothing closes."""
    clip = write_frames(tmp_path / "visit.mp4", scene(8, visitor=(3.1, 5.5)), fps=10, gop=10)
    info, frames = gated(clip)
    whole_info, whole = read(clip)
    assert times(frames) == [round(3.0 + 0.2 * i, 3) for i in range(15)] + [7.0, 7.2, 7.4, 7.6, 7.8]
    assert times(frames)[1] == 3.2  # the visitor's first picked frame (3.1 s is not on the grid)
    by_index = {f.index: f for f in whole}
    assert all(np.array_equal(f.image, by_index[f.index].image) for f in frames)
    # 8 key frames looked at; GOPs 3, 4, 5 and 7 decoded (their key frames a second time).
    assert (info.frames_decoded, info.frames_skipped) == (8 + 40, 80 - 40 - 4)
    assert (whole_info.frames_decoded, whole_info.frames_skipped) == (80, 0)
    assert info.warnings == [] and info.last_t_s == whole_info.last_t_s == pytest.approx(7.9)


def test_camera_grain_alone_wakes_nothing(tmp_path):
    clip = write_frames(tmp_path / "empty.mp4", scene(6, grain=6.0), fps=10, gop=10)
    info, frames = gated(clip)
    assert times(frames) == [5.0, 5.2, 5.4, 5.6, 5.8]  # the last GOP only
    assert (info.frames_decoded, info.frames_skipped) == (6 + 10, 45)


def test_a_face_the_background_already_holds_is_found_by_the_detector(tmp_path):
    """A visitor present from the first frame is in the first key frame, which the change test
    has nothing to compare with: the detector finds the face. Frames from the demo clip (a real
    face) at 640x360; the visitor leaves at 2.5 s."""
    with av.open(str(DEMO)) as container:
        shots = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0))}
    empty, visitor = shots[0], shots[150]
    frames = scene(6, size=(640, 360), visitor=(0, 2.5), backdrop=empty, figure=visitor)
    clip = write_frames(tmp_path / "present.mp4", frames, fps=10, gop=10)
    detector = create_detector("mtcnn", min_face_px=40, max_side=640)
    gate = SceneGate(lambda image: detector.detect(image), min_share=0.004, max_gop_s=4.0)
    info, picked = read(clip, gate)
    # Key frames 0, 1, 2 show the face; 3 and 4 are quiet: 0-3 s and the last GOP decoded.
    assert times(picked) == [round(0.2 * i, 3) for i in range(15)] + [5.0, 5.2, 5.4, 5.6, 5.8]
    assert gate.detections >= 4 and info.frames_skipped == 18
    assert [bool(detector.detect(f.image)) for f in picked[:15]] == [True] * 13 + [False] * 2


def test_a_long_gop_stream_is_decoded_in_full_and_noted(tmp_path):
    clip = write_frames(tmp_path / "long.mp4", scene(12), fps=10, gop=60)  # key frames 6 s apart
    info, frames = gated(clip, max_gop_s=4.0)
    _, whole = read(clip)
    assert same_frames(frames, whole) and len(frames) == 60
    assert info.frames_skipped == 0 and info.frames_decoded == 120 + 2  # and two looks
    assert info.warnings == [  # both GOPs: the last one too is held until it outlasts the cap
        "key frames over decode.gate_max_gop_s = 4 s apart (2 times, first at 0.0 s): decoded "
        "in full there"
    ]
    # Under a longer cap the key frames vouch: the first GOP (quiet on both sides) is skipped.
    info, frames = gated(clip, max_gop_s=8.0)
    assert times(frames)[0] == 6.0 and info.frames_skipped == 59 and info.warnings == []


@pytest.mark.parametrize("name, codec", [("one_key.mp4", "libx264"), ("one_key.gif", "gif")])
def test_a_stream_without_key_frames_after_the_first_is_decoded_in_full(tmp_path, name, codec):
    pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
    clip = write_frames(tmp_path / name, scene(6), fps=10, gop=1000, codec=codec, pix_fmt=pix_fmt)
    info, frames = gated(clip)
    _, whole = read(clip)
    assert same_frames(frames, whole) and len(frames) == 30
    assert info.frames_skipped == 0 and info.frames_decoded == 60 + 1
    assert info.warnings == [
        "key frames over decode.gate_max_gop_s = 4 s apart (1 time, first at 0.0 s): decoded in "
        "full there"
    ]


def test_an_all_intra_stream_is_decoded_once(tmp_path):
    clip = write_frames(
        tmp_path / "cam.avi", scene(4, visitor=(1, 2)), codec="mjpeg", pix_fmt="yuvj420p"
    )
    info, frames = gated(clip)
    whole_info, whole = read(clip)
    assert same_frames(frames, whole) and len(frames) == 20
    assert info.frames_decoded == whole_info.frames_decoded == 40 and info.frames_skipped == 0


def test_the_gate_off_reads_exactly_as_before(tmp_path):
    clip = write_frames(tmp_path / "visit.mp4", scene(6, visitor=(2.1, 3.5)), fps=10, gop=10)
    info, frames = read(clip, gate=None)
    expected = plain_decode(clip, 5.0)
    assert [(f.index, round(f.t_s, 6)) for f in frames] == [(i, t) for i, t, _ in expected]
    assert all(np.array_equal(f.image, e[2]) for f, e in zip(frames, expected, strict=True))
    assert (info.frames_decoded, info.frames_skipped) == (60, 0)


def test_gated_reads_keep_rotation_restarts_and_damage_handling(tmp_path):
    phone = write_clip(tmp_path / "phone.mp4", seconds=1, fps=10, rotation=90)
    info, frames = gated(phone)
    assert info.rotation == 90 and frames[0].image.shape == (160, 120, 3)
    part = write_frames(tmp_path / "part.ts", scene(3), fps=10, gop=10).read_bytes()
    (tmp_path / "joined.ts").write_bytes(part + part)  # timestamps start again at 0
    info, frames = gated(tmp_path / "joined.ts")
    _, whole = read(tmp_path / "joined.ts")
    assert times(frames) == [5.0, 5.2, 5.4, 5.6, 5.8]  # quiet: the last GOP, at its true time
    assert info.warnings == read(tmp_path / "joined.ts")[0].warnings
    assert "timestamps restart 1 time" in info.warnings[0]
    # A moving picture: every key frame is active, so the damage lies in decoded GOPs. (Damage
    # in a GOP the gate skips is never decoded, so never noticed.)
    clean = write_clip(tmp_path / "clean.mp4", seconds=4, fps=25, size=(320, 240), gop=25)
    broken = corrupt_middle(clean, tmp_path / "broken.mp4")
    info, frames = gated(broken)
    whole_info, whole = read(broken)
    assert same_frames(frames, whole) and frames[-1].t_s > 3.0
    assert info.corrupt_packets == whole_info.corrupt_packets > 0
    assert info.warnings == whole_info.warnings
