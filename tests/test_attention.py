"""Attention end to end: the job's visitors, videos and detections tables on the real head-pose
clip, where the woman turns away and back, and on a generated kiosk clip of frontal faces.

The turn times are those annotated by eye in tests/test_pose.py (frame by frame; see there).
"""

from __future__ import annotations

import pytest
from conftest import SHIPPED_MODEL, UTKFACE, needs_shared_data
from test_pose import CLIP, FACING, TURNED_LEFT, TURNED_RIGHT, within

from jobs import analyze
from pipelines.settings import load_settings
from pipelines.visitors import facing
from schemas.views import connect
from simulation.clip_maker import render_clip
from simulation.photos import held_out, open_faces
from simulation.render_options import RenderOptions

ATTENTION = load_settings().attention
# The clip's face is small (480x270) and it lasts 1.9 s: every frame is analysed (12.5 fps).
CLIP_SITE = """
decode: {fps: 12.5}
detector: {name: yunet, min_face_px: 12}  # the landmarks the turn times were read with
visitors: {min_face_px: 12}
"""

needs_model = pytest.mark.skipif(not SHIPPED_MODEL.exists(), reason="shipped model not built yet")


def analyse(inputs, out, *extra: str) -> None:
    argv = ["--input", str(inputs), "--output", str(out), "--workers", "1", "--no-progress"]
    assert analyze.main([*argv, *extra]) == 0


@needs_model
@needs_shared_data("videos/head-pose-face-detection-female.gif")
def test_attention_drops_while_she_turns_away(tmp_path):
    """Measured with the default limits (yaw 20, pitch 25): no frame of the far turn faces the
    camera, one of the four of the smaller turn does (the last, at 19.6 degrees), every frame
    annotated as facing does; 13 of 23 frames face, attention 1.04 s of 1.91 s dwell."""
    root = tmp_path / "clip"
    root.mkdir()
    (root / CLIP.name).write_bytes(CLIP.read_bytes())
    (tmp_path / "site.yaml").write_text(CLIP_SITE)
    out = tmp_path / "out"
    analyse(root, out, "--config", str(tmp_path / "site.yaml"), "--detections")
    con = connect(str(out))
    frames = con.execute("SELECT t_s, yaw, pitch FROM detections ORDER BY t_s").fetchall()
    assert len(frames) == 23

    def share(spans) -> float:
        chosen = [facing(y, p, ATTENTION) for t, y, p in frames if any(within(t, s) for s in spans)]
        return sum(chosen) / len(chosen)

    assert share([TURNED_LEFT]) == 0.0
    assert share([TURNED_RIGHT]) <= 0.25
    assert share(FACING) == 1.0
    ((dwell, attention, watcher),) = con.execute(
        "SELECT dwell_s, attention_s, watcher FROM visitors"
    ).fetchall()
    facing_frames = sum(facing(y, p, ATTENTION) for _, y, p in frames)
    assert attention == pytest.approx(facing_frames * 0.08, abs=1e-6)  # 1 / 12.5 s each
    assert 0.4 * dwell < attention < 0.7 * dwell and watcher
    assert con.execute("SELECT watchers, passers_by FROM videos").fetchall() == [(1, 0)]


@needs_model
@needs_shared_data("UTKFace-dev.tar.gz")
def test_frontal_visitors_of_a_generated_clip_attend_all_their_stay(tmp_path):
    """The generated clip of test_simulated_clip.py (60 s, 8 visitors whose faces are frontal
    photos, walking in, lingering, walking out). Measured before track stitching: attention /
    dwell 0.98-1.00 per visitor (a frame or two lost to a photo's own pose or a garbled
    landmark), every visitor a watcher; with stitching, dwell also covers the gaps between a
    visitor's fragments (attention / dwell 0.93-1.00), so attention is compared with the time
    seen. With YuNet's landmarks, which the pose was measured on; MTCNN's (the default
    detector) read some of these visitors as turned away (lowest share 0.35): a known limit."""
    clip = tmp_path / "kiosk" / "20261122_100000.mp4"
    options = RenderOptions(width=960, height=540, fps=25, duration_s=60, seed=11, visitors_max=3)
    render_clip(clip, held_out(open_faces(UTKFACE)), options)
    out = tmp_path / "out"
    (tmp_path / "site.yaml").write_text("detector: {name: yunet, min_face_px: 40}\n")
    analyse(clip, out, "--config", str(tmp_path / "site.yaml"))
    con = connect(str(out))
    visitors = [
        (dwell, attention, watcher, frames * 0.2)  # seconds seen: analysed frames at 5 fps
        for dwell, attention, watcher, frames in con.execute(
            "SELECT dwell_s, attention_s, watcher, frames FROM visitors"
        ).fetchall()
    ]
    assert len(visitors) == 8
    # Of the time each visitor was seen (analysed frames at 5 fps), attention is nearly all.
    ratios = [attention / seen for _, attention, _, seen in visitors]
    assert min(ratios) >= 0.95, ratios
    total = sum(v[1] for v in visitors) / sum(v[3] for v in visitors)
    assert total >= 0.98, total
    # Dwell also spans the moments a stitched visitor's face was lost between two fragments
    # (walking in or out, turned): counted as presence, not as attention.
    assert min(attention / dwell for dwell, attention, *_ in visitors) >= 0.9
    assert all(watcher for _, _, watcher, _ in visitors)
    assert con.execute("SELECT watchers, passers_by FROM videos").fetchall() == [(8, 0)]
