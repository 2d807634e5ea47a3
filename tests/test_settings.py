"""Site config files: merged over config/analyze.yaml, typed by the settings dataclasses and
range-checked, so a bad value stops the job with one line before any video is read."""

import pytest

from common.config import ConfigError as SettingsError
from pipelines.settings import load_settings


def site(tmp_path, text):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_site_values_override_defaults_and_keep_the_rest(tmp_path):
    defaults = load_settings()
    s = load_settings(site(tmp_path, "decode: {fps: 2}\nvisitors: {age_bands: [18, 35, 55]}\n"))
    assert s.decode.fps == 2 and s.decode.threads == defaults.decode.threads
    assert s.visitors.age_bands == (18, 35, 55)
    assert s.detector == defaults.detector


@pytest.mark.parametrize(
    "text, message",
    [
        ("detector: {min_face_px: big}", "'detector.min_face_px' must be a whole number"),
        ("detector: {thresholds: 0.5}", "'detector.thresholds' must be a list (a number each)"),
        ("detector: {thresholds: [0.6, 0.7]}", "detector.thresholds: three numbers"),
        ("detector: {model: 3}", "'detector.model' must be text or null"),
        ("decode: {fps: 0}", "decode.fps must be positive"),
        ("decode: {fps: .inf}", "decode.fps must be positive"),
        ("detector: {max_side: 16}", "detector.max_side must be at least 32"),
        ("input: {timezone: Mars/Olympus}", "unknown time zone 'Mars/Olympus'"),
        ("input: {start_time_pattern: '('}", "not a usable regex"),
        ("input: {start_time_pattern: '(?P<Y>\\d{4})'}", "lacks the named groups (?P<m>...)"),
        ("input: {extensions: mp4}", "'input.extensions' must be a list (text each)"),
        ("input: {extensions: []}", "at least one file extension"),
        ("model: {threads: many}", "'model.threads' must be a whole number"),
        ("model: {batch_min: 8, batch_max: 4}", "batch_min <= batch_max"),
        ("runner: {workers: 0}", "runner.workers must be at least 1"),
        ("output: {detections: 1}", "'output.detections' must be true or false"),
        ("visitors: {age_bands: [30, 20]}", "increasing band edges"),
        ("visitors: {age_bands: [0, 20]}", "increasing band edges"),
        ("tracker: {max_size_ratio: 0.5}", "max_size_ratio must be at least 1"),
        ("tracker: {min_iuo: 0.3}", "unknown setting 'tracker.min_iuo'"),
        ("attention: {max_yaw_deg: 0}", "attention.max_yaw_deg must be above 0, at most 90"),
        ("attention: {max_pitch_deg: 95}", "attention.max_pitch_deg must be above 0, at most 90"),
        ("attention: {min_watch_s: 0}", "attention.min_watch_s must be a positive number"),
        ("attention: {camera_hfov_deg: 180}", "camera_hfov_deg must be between 10 and 170"),
    ],
)
def test_bad_site_values_are_refused_with_what_to_fix(tmp_path, text, message):
    with pytest.raises(SettingsError) as err:
        load_settings(site(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_optional_values_accept_null(tmp_path):
    s = load_settings(site(tmp_path, "detector: {max_side: null}\nmodel: {threads: 0}"))
    assert s.detector.max_side is None and s.model.threads == 0
    assert s.detector.detector_options()["max_side"] is None


def test_numbers_accept_whole_numbers_but_not_booleans(tmp_path):
    assert (
        load_settings(site(tmp_path, "visitors: {min_face_px: 40.5}")).visitors.min_face_px == 40.5
    )
    assert load_settings(site(tmp_path, "tracker: {max_gap_s: 3}")).tracker.max_gap_s == 3
    with pytest.raises(SettingsError, match="must be a number"):
        load_settings(site(tmp_path, "tracker: {max_gap_s: true}"))
