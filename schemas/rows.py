"""The rows of each table, built in one place from what the pipeline's stages produce.

The stages' records are passed in as they are (a visitor, a track, a video's record): each
builder picks the columns its table holds, and ``schemas.publish`` refuses a row whose columns do
not match the schema exactly, so a new column is added in ``schemas.tables`` and here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np


@dataclass(frozen=True)
class VideoKey:
    """Which video, which analysis of it, which partition (``schemas.publish``'s folder)."""

    video_id: str
    analysis_id: str
    video: str  # the input path
    camera: str
    date: date

    def columns(self) -> dict:
        """Every row's key columns; ``camera`` and ``date`` name the folder, not columns."""
        return {"video_id": self.video_id, "analysis_id": self.analysis_id, "video": self.video}


def visitor_rows(key: VideoKey, visitors, video_start: datetime) -> list[dict]:
    """``visitors`` rows: each visitor (``pipelines.visitors.Visitor``) with its wall-clock
    start and end."""
    rows = []
    for visitor in visitors:
        row = key.columns() | dataclasses.asdict(visitor)
        row["start_time"] = video_start + timedelta(seconds=visitor.start_s)
        row["end_time"] = video_start + timedelta(seconds=visitor.end_s)
        rows.append(row)
    return rows


def detection_rows(
    key: VideoKey, video_start: datetime, tracks, kept_ids: set[int], classes=None
) -> list[dict]:
    """``detections`` rows: every face of every track (``pipelines.tracks.Track``); faces of a
    track that made no visitor get track_id -1. ``classes``: the model's class names by head,
    for the frame's mask status and emotion."""
    rows = []
    for track in tracks:
        track_id = track.track_id if track.track_id in kept_ids else -1
        for o in track.observations:
            rows.append(
                key.columns()
                | {
                    "frame_index": o.frame_index,
                    "t_s": o.t_s,
                    "time": video_start + timedelta(seconds=o.t_s),
                    "track_id": track_id,
                    **dict(zip(("x1", "y1", "x2", "y2"), o.box, strict=True)),
                    "score": o.score,
                    "landmarks": [float(v) for v in np.asarray(o.landmarks).reshape(-1)],
                    "face_px": o.size,
                    "frontalness": o.frontalness,
                    "age": o.age,
                    "gender_score": o.gender_prob,
                    **_frame_classes(o.extra, classes or {}),
                    "yaw": o.yaw,
                    "pitch": o.pitch,
                }
            )
    return rows


def _frame_classes(extra: dict, classes: dict) -> dict:
    """The frame's most likely mask status and emotion with their probabilities; None where the
    model lacks the head."""
    out = {"mask": None, "mask_score": None, "emotion": None, "emotion_score": None}
    for head, score in (("mask", "mask_score"), ("emotion", "emotion_score")):
        probs, names = extra.get(head), classes.get(head)
        if probs is not None and names:
            best = int(np.argmax(probs))
            out[head], out[score] = names[best], float(probs[best])
    return out


def video_row(
    key: VideoKey,
    record,
    tracks: int,
    visitors: int,
    *,
    watchers: int,
    run_id: str,
    model_version: str,
    detector_version: str,
    processing_s: float,
) -> dict:
    """The ``videos`` row, the video's commit record: what the file is, what decoding found
    (``record``: ``pipelines.analyse.VideoRecord``), the counts (``watchers`` of the ``visitors``)
    and the run's bookkeeping."""
    stream = record.stream
    return key.columns() | {
        "run_id": run_id,
        "start_time": record.start_time,
        "start_time_source": record.start_time_source,
        "size_bytes": record.video.size_bytes,
        "mtime": datetime.fromtimestamp(record.video.mtime, UTC),
        "fingerprint": record.fingerprint,
        "duration_s": stream.video_duration_s() if stream else None,
        "fps": stream.fps if stream else None,
        "width": stream.width if stream else None,
        "height": stream.height if stream else None,
        "rotation": stream.rotation if stream else None,
        "codec": stream.codec if stream else None,
        "frames_decoded": record.frames_decoded,
        "frames_skipped": record.frames_skipped,
        "frames_analysed": record.frames_analysed,
        "faces_detected": record.faces_detected,
        "tracks": tracks,
        "visitors": visitors,
        "visitors_dropped": tracks - visitors,
        "watchers": watchers,
        "passers_by": visitors - watchers,
        "status": record.status,
        "error": record.error,
        "processing_s": processing_s,
        # UTC, like mtime: the views keep a video's latest analysis by it, which a local clock
        # gets wrong across a DST fall-back hour or between workers in other zones.
        "processed_at": datetime.now(UTC),
        "model_version": model_version,
        "detector_version": detector_version,
    }
