"""The HTML report for the person who reads it (issue 22, items 7 and 10): the summary report and
its wording, the per-camera comparison, plain captions, the trend and comparison shown only when
they apply, the model's licence and accuracy, and the page rendered in headless Chromium.

The data is tests/test_reports.py's hand-made output folder (two days, two cameras, seven
visitors, one failed video, model version ``m1``).
"""

from __future__ import annotations

import html
import re
import shutil
from datetime import date
from pathlib import Path

import pytest
from test_reports import D1, D2, cli, make_output, run_one

from reports import catalog
from reports.model_facts import (
    SHIPPED_ACCURACY,
    SHIPPED_MODEL,
    ShippedModel,
    model_note,
    shipped_model,
)
from reports.summary import band_text, duration_text, headline, summary_facts

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    return make_output(tmp_path_factory.mktemp("page") / "output")


def page(output: Path, tmp_path: Path, *args: str) -> str:
    out = tmp_path / "html"
    assert cli("--data", output, "--format", "html", "--out", out, *args) == 0
    return (out / "report.html").read_text(encoding="utf-8")


def texts(page_html: str, pattern: str) -> list[str]:
    """The text of every element the pattern captures, tags stripped and entities decoded."""
    return [html.unescape(re.sub(r"<[^>]+>", "", m)) for m in re.findall(pattern, page_html, re.S)]


# -- the summary and camera reports ------------------------------------------------------------

FULL_SUMMARY = {
    "period_from": D1,
    "period_to": D2,
    "days": 2,
    "cameras": ["cam1", "cam2"],
    "visitors": 7,
    "median_dwell_s": 12.0,  # of 1, 3, 7, 12, 45, 200, 700
    "female_pct": 42.9,  # 3 of 7
    "male_pct": 57.1,
    "busiest_hour": 9,  # 09:10 and 09:40 on day 1, 09:00 on day 2
    "busiest_hour_visitors": 3,
    "largest_age_band": "20-29",  # 2 visitors, tied with 60+: the first band wins
    "largest_age_band_visitors": 2,
    "videos": 4,
    "videos_failed": 1,
    "model_versions": ["m1"],
}


def test_summary_report(output):
    assert run_one(output, "summary") == [FULL_SUMMARY]


def test_summary_report_filtered_and_empty(output):
    (cam2,) = run_one(output, "summary", camera="cam2")
    assert cam2 | {"period_from": None} == FULL_SUMMARY | {
        "period_from": None,
        "cameras": ["cam2"],
        "visitors": 2,
        "median_dwell_s": 103.5,  # of 7 and 200
        "female_pct": 50.0,
        "male_pct": 50.0,
        "busiest_hour": 14,
        "busiest_hour_visitors": 2,
        "largest_age_band": "20-29",  # 29.9 and 61.0: one each, the first band wins
        "largest_age_band_visitors": 1,
        "videos": 2,
    }
    (quiet,) = run_one(output, "summary", camera="cam2", **{"from": D2, "to": D2})
    assert quiet == {
        "period_from": D2,
        "period_to": D2,
        "days": 1,
        "cameras": ["cam2"],
        "visitors": 0,
        "median_dwell_s": None,
        "female_pct": None,
        "male_pct": None,
        "busiest_hour": None,
        "busiest_hour_visitors": None,
        "largest_age_band": None,
        "largest_age_band_visitors": None,
        "videos": 1,
        "videos_failed": 1,
        "model_versions": [],  # its one video failed
    }


def test_cameras_report(output):
    assert run_one(output, "cameras") == [
        {
            "camera": "cam1",
            "visitors": 5,
            "median_dwell_s": 12.0,  # of 3, 12, 45, 1, 700
            "female_pct": 40.0,
            "videos": 2,
            "videos_failed": 0,
        },
        {
            "camera": "cam2",
            "visitors": 2,
            "median_dwell_s": 103.5,
            "female_pct": 50.0,
            "videos": 2,
            "videos_failed": 1,
        },
    ]


def test_summary_in_words():
    assert headline(FULL_SUMMARY) == "7 visitors at 2 cameras."
    assert summary_facts(FULL_SUMMARY) == [
        ("Period", "1 May 2024 to 2 May 2024 (2 days with video)"),
        ("Cameras", "cam1, cam2"),
        ("Visitors", "7"),
        ("Median time at the kiosk", "12 s"),
        ("Women / men", "43 % / 57 %"),
        ("Busiest hour", "09:00\u201310:00 (3 visitors)"),
        ("Largest age group", "20 to 29 years (2 visitors)"),
        ("Failed videos", "1 of 4"),
    ]
    empty = {"period_from": None, "period_to": None, "days": 0, "visitors": 0, "videos": 0}
    assert headline(empty) == "No visitors in this period: no video was analysed."
    assert summary_facts(empty) == [
        ("Period", "no videos yet"),
        ("Cameras", "none"),
        ("Visitors", "0"),
        ("Failed videos", "no videos"),
    ]
    one_day = {"period_from": D2, "period_to": D2, "days": 1, "visitors": 0, "videos": 1}
    assert headline(one_day) == "No visitors in this period (1 video analysed)."
    assert summary_facts(one_day)[0] == ("Period", "2 May 2024 (1 day with video)")
    asked = {"period_from": date(2024, 6, 1), "period_to": None, "days": 0}
    assert summary_facts(asked)[0] == ("Period", "from 1 June 2024 (0 days with video)")


def test_durations_and_bands_in_words():
    assert [duration_text(s) for s in (12.0, 7.5, 350.5, 3725.0)] == [
        "12 s",
        "7.5 s",
        "5 min 51 s",
        "1 h 2 min",
    ]
    assert [band_text(b) for b in ("<30", "30-59", "60+")] == [
        "under 30 years",
        "30 to 59 years",
        "60 years and over",
    ]


def test_text_formats_show_the_summary_down_the_page(output, capsys):
    assert cli("--data", output, "--report", "summary") == 0
    out = capsys.readouterr().out
    assert re.search(r"^visitors\s+7$", out, re.M)
    assert re.search(r"^cameras\s+cam1, cam2$", out, re.M)
    assert cli("--data", output, "--report", "summary", "--format", "markdown") == 0
    assert "| largest_age_band | 20-29 |" in capsys.readouterr().out
    assert cli("--data", output, "--report", "summary", "--format", "csv") == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("2024-05-01,2024-05-02,2,")


# -- the settings the page reads --------------------------------------------------------------


def test_caption_setting_continues_on_indented_lines(tmp_path):
    path = tmp_path / "mine.sql"
    path.write_text(
        "-- Mine\n--\n-- For developers: reads `videos`.\n"
        "-- @caption: What the chart shows,\n--   and how to read it.\n"
        "-- @chart: line x=date y=n xlabel=day_of_visit min_x=3 panels\n"
        "SELECT 1 AS n\n"
    )
    report = catalog.load_report(path)
    assert report.caption == "What the chart shows, and how to read it."
    assert report.description == "For developers: reads `videos`."
    assert report.chart == catalog.Chart(
        "line", "date", ("n",), None, None, "day of visit", 3, True
    )
    for spec in ("bar x=a y=b min_x=two", "bar x=a y=b wide", "bar x=a y=b colour=red"):
        path.write_text(f"-- Mine\n-- @chart: {spec}\nSELECT 1\n")
        with pytest.raises(catalog.ReportError, match="bad @chart"):
            catalog.load_report(path)


SQL_WORDS = re.compile(r"\$|`|\bSELECT\b|\bNULL\b|_macros|\.sql\b|\w_\w|@\w+:")


def test_every_shipped_report_has_a_plain_caption():
    for report in catalog.list_reports():
        assert "caption" in report.settings, report.name
        assert not SQL_WORDS.search(report.caption), (report.name, report.caption)


# -- the page -----------------------------------------------------------------------------------


def test_page_opens_with_the_summary_then_charts_then_tables(output, tmp_path):
    got = page(output, tmp_path)
    at = {k: got.index(k) for k in ('id="summary-block"', "<figure", 'id="tables"')}
    assert at['id="summary-block"'] < at["<figure"] < at['id="tables"']
    assert got.index('id="model"') < at["<figure"]
    assert texts(got, r'<p class="headline">(.*?)</p>') == ["7 visitors at 2 cameras."]
    facts = dict(zip(texts(got, r"<dt>(.*?)</dt>"), texts(got, r"<dd>(.*?)</dd>"), strict=True))
    assert facts == dict(summary_facts(FULL_SUMMARY))
    figures = re.findall(r'<figure id="chart-(\w+)">', got)
    assert figures == [
        "daily_summary",
        "cameras",
        "visitors_by_hour",
        "age_gender",
        "age_gender_broad",
        "mask_by_group",
        "mood_by_hour",
        "mood_by_age_band",
        "attention_by_hour",
        "attention_by_age_gender",
        "unique_people",
        "dwell_distribution",
        "attention_distribution",
        "data_quality",
    ]
    captions = texts(got, r"<figcaption>(.*?)</figcaption>")
    captions += texts(got, r'<p class="desc">(.*?)</p>')
    assert len(captions) == 14 + 16  # every chart, every table
    assert all(c and not SQL_WORDS.search(c) for c in captions), captions
    for report in catalog.list_reports():
        assert f'<section id="{report.name}">' in got  # the detailed tables stay
        assert html.escape(report.summary, quote=True) not in got  # the developers' text
    assert '<th title="median_dwell_s">median dwell (s)</th>' in got


def test_page_states_the_model_licence_and_accuracy(output, tmp_path):
    note = " ".join(texts(page(output, tmp_path), r'<div class="about" id="model">(.*?)</div>'))
    assert "non-commercial research use only" in note
    assert "off by 4.59 years on average" in note and "gender right 94.2 %" in note
    assert f"shipped model file (version {SHIPPED_ACCURACY.version})" in note
    assert "Model that analysed the videos of this period: m1." in note
    assert "These figures are not those of m1" in note


@pytest.mark.parametrize(
    "args, trend, cameras",
    [
        ((), True, True),
        (("--from", "2024-05-01", "--to", "2024-05-01"), False, True),
        (("--camera", "cam1"), True, False),
        (("--camera", "cam1", "--to", "2024-05-01"), False, False),
    ],
)
def test_trend_and_camera_comparison_only_when_they_apply(output, tmp_path, args, trend, cameras):
    got = page(output, tmp_path, *args)
    assert ('id="chart-daily_summary"' in got) is trend
    assert ('id="chart-cameras"' in got) is cameras
    assert 'id="chart-visitors_by_hour"' in got
    assert '<section id="daily_summary">' in got and '<section id="cameras">' in got


def test_empty_page_says_so(tmp_path):
    (tmp_path / "output").mkdir()
    got = page(tmp_path / "output", tmp_path)
    assert texts(got, r'<p class="headline">(.*?)</p>') == [
        "No visitors in this period: no video was analysed."
    ]
    assert "No charts: there were no visitors in this period." in got
    assert "<figure" not in got and "non-commercial research use only" in got


def test_page_without_the_summary_report_still_states_the_licence(output, tmp_path):
    got = page(output, tmp_path, "--report", "failed_videos")
    assert '<p class="headline">' not in got and "No charts: no report chosen draws one." in got
    assert "non-commercial research use only" in got and "4.59 years" in got


# -- the model's figures: one place, checked against the file and the card ----------------------


def test_accuracy_figures_are_the_shipped_files():
    """SHIPPED_ACCURACY is keyed by the version in the shipped file's metadata and holds the
    model card's figures: a new model file without new figures fails here, not on the page."""
    shipped = shipped_model()
    assert shipped.version == SHIPPED_ACCURACY.version
    assert "non-commercial research use only" in shipped.licence
    card = (ROOT / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert f"**`{SHIPPED_ACCURACY.version}`**" in card  # the version the card describes
    # The page speaks of the INT8 copy the pipeline runs; the card states its figures beside
    # those of the FP32 file.
    int8 = re.search(r"INT8\s+copy: age MAE ([\d.]+) years, gender ([\d.]+) %", card)
    assert (round(float(int8.group(1)), 2), round(float(int8.group(2)), 1)) == (4.59, 94.2)
    assert (SHIPPED_ACCURACY.age_mae_years, SHIPPED_ACCURACY.gender_accuracy_pct) == (4.59, 94.2)
    assert (
        "2,063 validation faces" in card
        and "2,063 validation faces" in SHIPPED_ACCURACY.measured_on
    )


def test_model_note_says_which_figures_apply():
    shipped = ShippedModel(SHIPPED_ACCURACY.version, "Non-commercial research use only.")
    same = model_note([SHIPPED_ACCURACY.version], shipped)
    assert f"{SHIPPED_ACCURACY.version} (the model file shipped with this software)." in same[1]
    assert not any("not those of" in p for p in same)
    assert same[-1] == "Licence, as the model file states it: Non-commercial research use only."
    mixed = model_note(["old-1", SHIPPED_ACCURACY.version], shipped)
    assert mixed[1].startswith("Models that analysed") and "not those of old-1:" in mixed[3]
    assert len(model_note(None, shipped)) == 3  # no versions known: what, accuracy, licence
    other = model_note(["new-2"], ShippedModel("new-2", "x"))
    assert "No accuracy figures are recorded for the shipped model file (version new-2)" in other[2]
    assert not any("4.62" in p for p in other)


def test_unreadable_model_file_still_states_the_licence(tmp_path):
    missing = shipped_model(tmp_path / "none.onnx")
    assert missing.version is None and "non-commercial research use only" in missing.licence
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    assert shipped_model(tmp_path / "bad.onnx").version is None
    assert SHIPPED_MODEL.is_file()


# -- in a real browser ------------------------------------------------------------------------


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)"
)
def test_page_renders_in_headless_chromium(output, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    path = tmp_path / "html" / "report.html"
    page(output, tmp_path)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            tab = browser.new_page(viewport={"width": 1100, "height": 900})
            problems: list[str] = []
            tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: problems.append(str(e)))
            tab.goto(path.as_uri())
            summary = tab.locator("#summary-block")
            assert summary.is_visible()
            assert "7 visitors at 2 cameras." in summary.inner_text()
            assert tab.locator("#model").is_visible()
            images = tab.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
            assert images == [True] * 14
            # Wide tables scroll in their own box: the page itself never scrolls sideways.
            assert tab.evaluate("document.documentElement.scrollWidth") <= 1100
            tab.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            assert problems == []
        finally:
            browser.close()
    assert (tmp_path / "page.png").read_bytes().startswith(b"\x89PNG")
