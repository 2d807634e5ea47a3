"""The Parquet tables the analysis writes, defined once.

Every table is Hive-partitioned on disk as ``<table>/date=YYYY-MM-DD/camera=ID/<video_id>.parquet``
and holds one file per analysed video, so a rerun replaces a video's rows as a whole. ``date``
(the day of the video's ``start_time``) and ``camera`` live in the folder names only, the standard
Hive layout that Spark writes: with a column both in the files and in the path, pyarrow, pandas
and Polars refuse the folder ("Unable to merge: Field date has incompatible types"). The schemas
below are the files' columns; ``PARTITIONING`` is the path's.

Each reader guesses the path's types from the folder names unless told them. Read plainly, a
folder ``output/visitors`` gives (tests/test_storage_readers.py checks every line):

- DuckDB ``read_parquet('output/visitors/**/*.parquet')``: ``date`` DATE, ``camera`` VARCHAR,
  but BIGINT when every camera folder is named by a number;
- pyarrow ``ds.dataset(path, partitioning="hive")``: both strings, ``camera`` int32 likewise;
- pandas ``pd.read_parquet(path)``: both categoricals of strings, of numbers for such cameras;
- Polars ``pl.read_parquet(path)``: ``date`` Date, ``camera`` String, Int64 likewise.

The exact types, ``date`` a date and ``camera`` always text:

- DuckDB: ``hive_partitioning = true, hive_types = {'date': DATE, 'camera': VARCHAR}``;
- pyarrow: ``partitioning=ds.partitioning(PARTITIONING, flavor="hive")``;
- pandas: the same ``partitioning=`` argument: ``date`` holds ``datetime.date`` objects, or
  ``date32[pyarrow]`` with ``dtype_backend="pyarrow"``;
- Polars: ``hive_schema={"date": pl.Date, "camera": pl.String}``.

``schemas.views`` reads through DuckDB with the exact types, and is the only reader of a folder
that also holds files written before this layout (they repeat ``date`` and ``camera`` and store
the two UTC times naive): the others refuse such a mix.

Wall-clock times (``start_time``, ``end_time``, ``time``) are naive timestamps on purpose: the
site's local time, the clock a store manager reads (9:00 is opening time whatever the offset that
day); see ``pipelines/inputs.py`` for where a video's start time comes from. The two bookkeeping
times, ``mtime`` and ``processed_at``, are instants: ``timestamp[us, tz=UTC]``, which every reader
maps to its zone-aware type.
"""

import re
import unicodedata

import pyarrow as pa

from schemas.model_file import CLASS_NAMES

STATUS_OK = "ok"
STATUS_FAILED = "failed"

_TS = pa.timestamp("us")  # site-local wall clock, no zone
_UTC = pa.timestamp("us", tz="UTC")

# Columns every table's files carry: which video, which analysis of it.
_VIDEO_KEY = [
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("analysis_id", pa.string(), nullable=False),
    pa.field("video", pa.string(), nullable=False),
]
# A Parquet file under a table's folder that lacks one of these is not one of ours.
KEY_COLUMNS = tuple(f.name for f in _VIDEO_KEY)

# The folder levels, outermost first: ``date=YYYY-MM-DD/camera=ID``. ``camera`` is text even
# where a folder is named ``1``.
PARTITIONING = pa.schema([pa.field("date", pa.date32()), pa.field("camera", pa.string())])
PARTITION_COLUMNS = tuple(PARTITIONING.names)


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
        pa.field("mtime", _UTC, nullable=False),  # file modification time, UTC
        pa.field("fingerprint", pa.string(), nullable=False),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("rotation", pa.int32()),
        pa.field("codec", pa.string()),
        # Decoding work: a key frame the gate looked at and then decoded with its active stretch
        # counts twice.
        pa.field("frames_decoded", pa.int64(), nullable=False),
        # Frames never decoded: decode.gate passed them by (an empty scene between quiet key
        # frames), or the decoder dropped them as non-reference (decode.skip_nonref).
        pa.field("frames_skipped", pa.int64(), nullable=False),
        pa.field("frames_analysed", pa.int64(), nullable=False),
        pa.field("faces_detected", pa.int64(), nullable=False),
        pa.field("tracks", pa.int64(), nullable=False),
        pa.field("visitors", pa.int64(), nullable=False),
        pa.field("visitors_dropped", pa.int64(), nullable=False),
        # The visitors who faced the camera for attention.min_watch_s or longer, and the others
        # (watchers + passers_by = visitors); null in files written before attention was read.
        pa.field("watchers", pa.int64()),
        pa.field("passers_by", pa.int64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("processing_s", pa.float64(), nullable=False),
        pa.field("processed_at", _UTC, nullable=False),  # when this analysis was written, UTC
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("detector_version", pa.string(), nullable=False),
    ]
)

# One probability per emotion the model reads, by name.
EMOTION_SCORES = pa.struct([pa.field(name, pa.float32()) for name in CLASS_NAMES["emotion"]])

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
        # Mask status and emotion, where the model has those heads (null otherwise): the class
        # of the quality-weighted mean probabilities over the visitor's frames, with that
        # class's probability; the emotions' mean probabilities; the share of the frames whose
        # most likely emotion is happy.
        pa.field("mask", pa.string()),
        pa.field("mask_score", pa.float32()),
        pa.field("emotion", pa.string()),
        pa.field("emotion_scores", EMOTION_SCORES),
        pa.field("happy_share", pa.float32()),
        # Seconds facing the camera (analysed frames whose head pose is within attention's
        # yaw and pitch limits, one frame interval each, as dwell_s counts them), and whether
        # that reaches attention.min_watch_s; null in files written before attention was read.
        pa.field("attention_s", pa.float64()),
        pa.field("watcher", pa.bool_()),
        # Tracker fragments joined into this visit by face similarity (1: none; identity.stitch),
        # and, where identity.enabled, a random per-day person id shared by one person's visits
        # in one run (never derived from the face); null in older files / when not enabled.
        pa.field("fragments", pa.int32()),
        pa.field("person_id", pa.string()),
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
        # The frame's most likely mask status and emotion, with their probabilities (null where
        # the model lacks the head).
        pa.field("mask", pa.string()),
        pa.field("mask_score", pa.float32()),
        pa.field("emotion", pa.string()),
        pa.field("emotion_score", pa.float32()),
        # Head pose, degrees relative to the line of sight (pipelines/pose.py): yaw > 0 turned
        # towards the image's right, pitch > 0 tilted up; null where the landmarks gave none.
        pa.field("yaw", pa.float32()),
        pa.field("pitch", pa.float32()),
    ]
)

TABLES = {"videos": VIDEOS, "visitors": VISITORS, "detections": DETECTIONS}


def with_partitions(schema: pa.Schema) -> pa.Schema:
    """A table as readers see it: the files' columns with the path's ``camera`` and ``date``
    after the key, where they stood when the files held them."""
    fields = [*schema]
    at = len(_VIDEO_KEY)
    partitions = [PARTITIONING.field(n).with_nullable(False) for n in ("camera", "date")]
    return pa.schema(fields[:at] + partitions + fields[at:])
