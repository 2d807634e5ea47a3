"""Table schemas and the model-file contract, shared by every stage (no heavy imports here)."""

from schemas.tables import (
    DETECTIONS,
    KEY_COLUMNS,
    PARTITION_COLUMNS,
    PARTITIONING,
    STATUS_FAILED,
    STATUS_OK,
    TABLES,
    VIDEOS,
    VISITORS,
    camera_id,
)

__all__ = [
    "DETECTIONS",
    "KEY_COLUMNS",
    "PARTITION_COLUMNS",
    "PARTITIONING",
    "STATUS_FAILED",
    "STATUS_OK",
    "TABLES",
    "VIDEOS",
    "VISITORS",
    "camera_id",
]
