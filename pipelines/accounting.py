"""A run's figures: videos ok and failed, visitors, seconds of video, time per stage.

Where the output is local they come from the ``videos`` rows the run committed (exact, with the
failed videos' reasons); elsewhere from Beam's counters, which every runner reports but some only
as attempted (a retried task counts twice).
"""

from __future__ import annotations

import logging

from common.paths import is_remote
from schemas.views import run_counts

log = logging.getLogger(__name__)


def summarise(
    input_path: str, output: str, run_id: str, wall_s: float, result, tables: list[str]
) -> dict:
    """The run summary the job prints (and its JSON line); ``result`` None for a run that
    crashed (no metrics: the counts come from the committed rows alone)."""
    counters, stages_ms = beam_metrics(result) if result is not None else ({}, {})
    if not is_remote(output):
        counts = run_counts(output, run_id)
    else:
        counts = {
            "videos_ok": counters.get("videos_ok", 0),
            "videos_failed": counters.get("videos_failed", 0),
            "visitors": counters.get("visitors", 0),
            "video_seconds": counters.get("video_ms", 0) / 1000,
            "failed": [],
        }
    video_s = counts["video_seconds"]
    notes = _notes(counts)
    return {
        "run_id": run_id,
        "videos_ok": counts["videos_ok"],
        "videos_failed": counts["videos_failed"],
        "videos_unchanged": counters.get("videos_unchanged", 0),
        "videos_outside_dates": counters.get("videos_outside_dates", 0),
        "visitors": counts["visitors"],
        "video_seconds": round(video_s, 1),
        "wall_seconds": round(wall_s, 1),
        "video_seconds_per_second": round(video_s / wall_s, 2) if wall_s else None,
        "input": input_path,
        "output": output,
        "tables": tables,
        "stages_ms": stages_ms,
        "failed": counts["failed"],
        "notes": notes,
    }


def _notes(counts: dict) -> list[str]:
    """What a reader of the summary should check: start times guessed from file dates (a copy
    or a restore resets them) and several videos that all count as one camera (the camera is
    the folder a video sits in)."""
    notes = []
    videos = counts["videos_ok"] + counts["videos_failed"]
    if counts.get("start_times_from_mtime"):
        notes.append(
            f"{counts['start_times_from_mtime']} of {videos} videos have no date-time in their "
            "name or container: their start times are the files' modification times, which a "
            "copy can change (set input.start_time_pattern to read them from the names)"
        )
    if videos > 1 and len(counts.get("cameras", [])) == 1:
        notes.append(
            f"all {videos} videos sit in one folder, so they count as one camera "
            f"({counts['cameras'][0]}): put each camera's videos in a folder named for it"
        )
    return notes


def beam_metrics(result) -> tuple[dict, dict]:
    """Counters by name and stage milliseconds from Beam's metrics, committed where the runner
    reports them, else attempted."""
    counters, stages_ms = {}, {}
    try:
        metrics = result.metrics().query()
    except Exception as e:  # a runner without metrics support must not fail a finished night
        log.warning("the runner reports no metrics (%s): stage times and skip counts are 0", e)
        return counters, stages_ms

    def value(m):
        return m.committed if m.committed is not None else m.attempted

    for c in metrics["counters"]:
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + (value(c) or 0)
    for d in metrics["distributions"]:
        name, total = d.key.metric.name, getattr(value(d), "sum", 0) or 0
        if name.endswith("_ms"):
            stages_ms[name[:-3]] = stages_ms.get(name[:-3], 0) + total
        elif name == "inference_batch_latency_micro_secs":
            stages_ms["infer"] = stages_ms.get("infer", 0) + total // 1000
    return counters, stages_ms
