"""Accuracy on real video: the shipped model on the three annotated clips of the development data.

The clips (Intel IoT DevKit sample videos, CC BY 4.0) are 480x270 GIFs with small faces, so this
test runs with a site config for small faces, as a user would for a wide-angle camera.
"""

import json
import shutil

import pytest
from conftest import SHARED_DATA, SHIPPED_MODEL, needs_shared_data

from jobs import analyze
from schemas.views import connect

SMALL_FACES = """
detector: {min_face_px: 12}
visitors: {min_face_px: 12}
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


def test_real_clips_visitor_counts_fall_in_the_annotated_range(analysed):
    truth = json.loads((SHARED_DATA / "videos" / "truth.json").read_text())
    found = visitors_by_clip(analysed)
    for clip, expected in annotated(truth):
        lo, hi = expected["visitors"]
        got = found.get(clip, [])
        assert lo <= len(got) <= hi, f"{clip}: {len(got)} visitors, expected {lo}-{hi}: {got}"


def matched_people(truth: dict, found: dict) -> list[tuple[str, dict, dict | None]]:
    """Each annotated person with the visitor of the right gender and age range that stands
    for them (one visitor per person), or None."""
    result = []
    for clip, expected in annotated(truth):
        unmatched = list(found.get(clip, []))
        for person in expected["people"]:
            a, b = person["age"]
            match = next(
                (v for v in unmatched if v["gender"] == person["gender"] and a <= v["age"] <= b),
                None,
            )
            if match:
                unmatched.remove(match)
            result.append((clip, person, match))
    return result


def test_real_clips_demographics(analysed):
    """Each annotated person is matched by a visitor of the right gender and an age in the
    annotated range: 7 of 7 since resnet18x3-ft1-g2-80px-20261126. The hard one is the woman on
    the right of face-demographics-walking-and-pause.gif (short pulled-back hair, glasses, washed
    out against a white wall): read as a woman of 46.3 by resnet18x3-mtm-80px-20261205 (47.9
    with detector.refresh), near the top of her annotated 28-50. Files shipped before 2026-11-26
    read her as an older man (docs/experiments/2026-11-26-choosing-among-trained-networks.md),
    so a model change that loses her fails here on purpose."""
    truth = json.loads((SHARED_DATA / "videos" / "truth.json").read_text())
    people = matched_people(truth, visitors_by_clip(analysed))
    missed = [(clip, person) for clip, person, match in people if match is None]
    assert len(people) == 7
    assert not missed, f"missed: {missed}"


def annotated(truth: dict):
    return [(clip, expected) for clip, expected in truth.items() if not clip.startswith("_")]
