"""The simulator's identity cases (returning visitors, passers-by hiding a face) and how scoring
counts fragments and people."""

import numpy as np
from test_simulation import TINY, faces_csv  # noqa: F401  (the fixture)

from simulation.choreography import ScriptedVisit
from simulation.clip_maker import render_clip
from simulation.photos import open_faces
from simulation.render_options import RenderOptions
from simulation.returns import HIDDEN_S, assign_people, plan_passers
from simulation.scoring import count_fragments, count_people


def _visit(i: int, t0: float, linger: float = 10.0) -> ScriptedVisit:
    return ScriptedVisit(i, 0, t0, 1.0, linger, 1.0, 100.0, 200.0, 150.0, "left", "right", 0.6, 0.9)


def test_returning_visits_reuse_an_earlier_face_only_after_the_gap():
    plans = [_visit(1, 0), _visit(2, 5), _visit(3, 100), _visit(4, 200)]
    opt = RenderOptions(returns=1.0, return_gap_s=60.0, visitors_max=1)
    people = assign_people(plans, opt, np.random.default_rng(0))
    assert people[0] == 0 and people[1] == 1  # visit 2 starts before anyone is 60 s gone
    assert people[2] in (0, 1) and people[3] in (0, 1)
    none = assign_people(plans, RenderOptions(), np.random.default_rng(0))
    assert none == [0, 1, 2, 3]


def test_passers_by_hide_long_lingers_for_three_to_five_seconds():
    plans = [_visit(1, 0, linger=20), _visit(2, 30, linger=5)]
    passers = plan_passers(plans, RenderOptions(passers=1.0), np.random.default_rng(0))
    assert [p.visit_id for p in passers] == [1]  # 5 s is too short a linger
    (p,) = passers
    a, b = p.hidden
    assert HIDDEN_S[0] <= b - a <= HIDDEN_S[1] and 1.0 < a < b < 21.0
    # the body covers the face's centre at mid-crossing and has left it by the end
    assert abs(p.x(p.t_mid) - p.x_face) < 1e-9
    assert abs(p.x(b) - p.x_face) >= (p.width + 100.0) / 2 - 1e-6


def test_a_clip_with_returns_and_passers_says_so_in_its_truth(tmp_path, faces_csv):  # noqa: F811
    opt = RenderOptions(**dict(TINY, duration_s=30.0, linger_s=(9.0, 10.0), gap_s=(0.2, 0.5)))
    opt.returns, opt.return_gap_s, opt.passers = 1.0, 0.1, 1.0
    truth = render_clip(tmp_path / "c.mp4", open_faces(faces_csv), opt)
    visitors = truth["visitors"]
    assert all("person" in v for v in visitors)
    assert len({v["person"] for v in visitors}) < len(visitors)  # someone came back
    returned = [v for v in visitors if v["person"] != v["id"]]
    first = {v["id"]: v["face"] for v in visitors}
    assert all(v["face"] == first[v["person"]] for v in returned)  # with the same face
    assert any("hidden" in v for v in visitors)
    assert truth["clip"]["options"]["passers"] == 1.0


def test_fragments_are_unmatched_rows_inside_a_matched_visit():
    true = [{"enter_s": 0, "leave_s": 10, "appear_s": 0, "disappear_s": 11},
            {"enter_s": 20, "leave_s": 30, "appear_s": 19, "disappear_s": 31}]  # fmt: skip
    pred = [{"start_s": 0, "end_s": 4}, {"start_s": 6, "end_s": 10},
            {"start_s": 40, "end_s": 45}]  # fmt: skip
    matching = [(0, 0, 0.4)]  # truth 1 matched to the first row; truth 2 missed
    assert count_fragments(true, pred, matching) == 1  # the second row; the third is spurious


def test_people_are_counted_by_person_id_and_rows_without_one_count_alone():
    assert count_people([{"person_id": None}, {"person_id": None}]) is None
    rows = [{"person_id": "a"}, {"person_id": "a"}, {"person_id": "b"}, {"person_id": None}]
    assert count_people(rows) == 3
