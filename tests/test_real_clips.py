"""Accuracy on real video: the shipped model on the three annotated clips of the development data.

The clips (Intel IoT DevKit sample videos, CC BY 4.0) are 480x270 GIFs with small faces, so this
test runs with a site config for small faces, as a user would for a wide-angle camera.
"""

import json
import shutil

import pytest
from conftest import SHARED_DATA, SHIPPED_MODEL, needs_shared_data

from jobs import analyze
from reports.views import connect

SMALL_FACES = """
detector: {min_face_px: 16, min_score: 0.9}
visitors: {min_face_px: 18}
"""

pytestmark = [
    needs_shared_data("videos/truth.json"),
    pytest.mark.skipif(not SHIPPED_MODEL.exists(), reason="shipped model not built yet"),
]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    for gif in (SHARED_DATA / "videos").glob("*.gif"):
        shutil.copy(gif, root / gif.name)
    (root / "site.yaml").write_text(SMALL_FACES)
    out = root / "out"
    code = analyze.main(
        [
            "--input",
            str(root),
            "--output",
            str(out),
            "--config",
            str(root / "site.yaml"),
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def visitors_by_clip(out):
    rows = (
        connect(str(out))
        .execute("SELECT regexp_extract(video, '[^/]+$'), age, gender, dwell_s FROM visitors")
        .fetchall()
    )
    clips = {}
    for clip, age, gender, dwell in rows:
        clips.setdefault(clip, []).append({"age": age, "gender": gender, "dwell_s": dwell})
    return clips


def test_real_clips_visitor_counts_and_demographics(analysed):
    truth = json.loads((SHARED_DATA / "videos" / "truth.json").read_text())
    found = visitors_by_clip(analysed)
    for clip, expected in truth.items():
        if clip.startswith("_"):
            continue
        got = found.get(clip, [])
        lo, hi = expected["visitors"]
        assert lo <= len(got) <= hi, f"{clip}: {len(got)} visitors, expected {lo}-{hi}: {got}"
        unmatched = list(got)
        for person in expected["people"]:
            a, b = person["age"]
            match = next(
                (v for v in unmatched if v["gender"] == person["gender"] and a <= v["age"] <= b),
                None,
            )
            assert match, f"{clip}: nobody matches {person} among {unmatched}"
            unmatched.remove(match)
