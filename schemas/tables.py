"""The Parquet tables the analysis writes, defined once.

Every table is Hive-partitioned on disk as ``<table>/date=YYYY-MM-DD/camera=ID/<video_id>.parquet``
and holds one file per analysed video, so a rerun replaces a video's rows as a whole. The partition
values are repeated as ordinary columns (``date`` is derived from ``start_time``) so a single file
is self-describing; DuckDB's ``hive_partitioning`` reads the same values from the path.

Wall-clock times (``start_time`` and friends) are naive timestamps in the site's local time, the
clock a store manager reads; see ``pipelines/inputs.py`` for where a video's start time comes from.
The two bookkeeping times, ``mtime`` and ``processed_at``, are naive UTC.
"""

import re
import unicodedata

import pyarrow as pa

STATUS_OK = "ok"
STATUS_FAILED = "failed"

_TS = pa.timestamp("us")

# Columns every table carries: which video, which analysis of it, where it sits on disk.
_VIDEO_KEY = [
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("analysis_id", pa.string(), nullable=False),
    pa.field("video", pa.string(), nullable=False),
    pa.field("camera", pa.string(), nullable=False),
    pa.field("date", pa.date32(), nullable=False),
]
# A Parquet file under a table's folder that lacks one of these is not one of ours.
KEY_COLUMNS = tuple(f.name for f in _VIDEO_KEY)


def camera_id(name: str) -> str:
    """The ``camera`` value (and partition folder) for a camera folder's name: letters of any
    script (composed one way whatever the filesystem stored), digits, ``.``, ``_`` and ``-``
    kept, anything else ``_``. Readers filtering by camera apply it to what the user typed."""
    return re.sub(r"[^\w.-]", "_", unicodedata.normalize("NFC", name)) or "default"


VIDEOS = pa.schema(
    _VIDEO_KEY
    + [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("start_time", _TS, nullable=False),
        pa.field("start_time_source", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("mtime", _TS, nullable=False),  # file modification time, UTC
        pa.field("fingerprint", pa.string(), nullable=False),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("rotation", pa.int32()),
        pa.field("codec", pa.string()),
        pa.field("frames_decoded", pa.int64(), nullable=False),
        pa.field("frames_analysed", pa.int64(), nullable=False),
        pa.field("faces_detected", pa.int64(), nullable=False),
        pa.field("tracks", pa.int64(), nullable=False),
        pa.field("visitors", pa.int64(), nullable=False),
        pa.field("visitors_dropped", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("processing_s", pa.float64(), nullable=False),
        pa.field("processed_at", _TS, nullable=False),  # when this analysis was written, UTC
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("detector_version", pa.string(), nullable=False),
    ]
)

VISITORS = pa.schema(
    _VIDEO_KEY
    + [
        pa.field("track_id", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("start_time", _TS, nullable=False),
        pa.field("end_time", _TS, nullable=False),
        pa.field("dwell_s", pa.float64(), nullable=False),
        pa.field("frames", pa.int32(), nullable=False),
        pa.field("age", pa.float32(), nullable=False),
        pa.field("age_std", pa.float32(), nullable=False),
        pa.field("age_band", pa.string(), nullable=False),
        pa.field("gender", pa.string(), nullable=False),
        pa.field("gender_score", pa.float32(), nullable=False),
        pa.field("face_px", pa.float32(), nullable=False),
        pa.field("quality", pa.float32(), nullable=False),
    ]
)

DETECTIONS = pa.schema(
    _VIDEO_KEY
    + [
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("t_s", pa.float64(), nullable=False),
        pa.field("time", _TS, nullable=False),
        # -1 where the face belonged to no kept visitor (a track dropped by the thresholds).
        pa.field("track_id", pa.int32(), nullable=False),
        pa.field("x1", pa.float32(), nullable=False),
        pa.field("y1", pa.float32(), nullable=False),
        pa.field("x2", pa.float32(), nullable=False),
        pa.field("y2", pa.float32(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        # Five (x, y) points in frame pixels: eyes, nose, mouth corners.
        pa.field("landmarks", pa.list_(pa.float32(), 10), nullable=False),
        pa.field("face_px", pa.float32(), nullable=False),
        pa.field("frontalness", pa.float32(), nullable=False),
        pa.field("age", pa.float32(), nullable=False),
        pa.field("gender_score", pa.float32(), nullable=False),
    ]
)

TABLES = {"videos": VIDEOS, "visitors": VISITORS, "detections": DETECTIONS}
