"""Stage 1, inputs: which files are videos, which need analysing, which camera filmed them, and
when they start.

Paths go through Beam's FileSystems, so local folders and gs://, s3://, hdfs:// prefixes all work.
Camera id: the name of the folder holding the video. Start time, first that applies:
  1. a date-time in the file name (``input.start_time_pattern``, e.g. ``20261122_093000``),
     read as site wall-clock time;
  2. the container's ``creation_time`` tag (UTC), converted to the site time zone;
  3. the file's modification time, converted to the site time zone.
The incremental rule (``needs_analysis``) compares a file with what the output already holds
(``schemas.manifest``).
"""

from __future__ import annotations

import glob
import hashlib
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.manifest import ManifestEntry
from schemas.tables import STATUS_OK, camera_id

FINGERPRINT_BYTES = 1 << 20
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class VideoFile:
    path: str
    size_bytes: int
    mtime: float  # seconds since the epoch
    camera: str
    video_id: str
    problem: str | None = None  # why the entry cannot be read at all (a broken link)


def match_patterns(input_path: str) -> list[str]:
    """Beam match patterns for a file, a folder (recursively), or a glob given by the user. A
    path that exists is taken as it is, even with glob characters in its name (``cam[1]``)."""
    if GLOB_CHARS & set(input_path) and not FileSystems.exists(input_path):
        return [input_path]
    root = _literal(input_path.rstrip("/") or "/")
    if os.path.isdir(input_path):  # a local folder: its files, never the folder itself
        return [f"{root}/**"]
    return [root, f"{root}/**"]


def unreadable_entries(input_path: str, extensions: tuple[str, ...]) -> list[VideoFile]:
    """Local entries with a video extension that Beam's match passes over without a word:
    symbolic links whose target is gone, and entries that cannot be looked at. A recording lost
    to a broken link must show as a failed video, not vanish."""
    if "://" in input_path:
        return []
    if GLOB_CHARS & set(input_path) and not os.path.exists(input_path):
        candidates = glob.glob(input_path, recursive=True)
    elif os.path.isdir(input_path):
        candidates = [os.path.join(d, n) for d, _, names in os.walk(input_path) for n in names]
    else:
        candidates = [input_path]
    out = []
    for path in sorted(candidates):
        if not has_video_extension(path, extensions):
            continue
        problem = _entry_problem(path)
        if problem:
            mtime = os.lstat(path).st_mtime if os.path.lexists(path) else 0.0
            out.append(VideoFile(path, 0, mtime, camera_of(path), video_id(path), problem))
    return out


def _entry_problem(path: str) -> str | None:
    if os.path.islink(path) and not os.path.exists(path):
        return f"broken symbolic link (its target {os.readlink(path)} is gone)"
    try:
        os.stat(path)
    except OSError as e:
        return f"cannot read file: {e.strerror or e}"
    return None


def file_kind_problem(path: str) -> str | None:
    """Why a local path is not a file a video can be read from (a named pipe would block the
    reader forever), or None."""
    if "://" in path:
        return None
    mode = os.stat(path).st_mode
    kinds = (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISDIR, "a folder"),
    )
    kind = next((name for test, name in kinds if test(mode)), None)
    return f"not a regular file ({kind})" if kind else None


def _literal(path: str) -> str:
    """``path`` as a Beam match pattern that matches only itself. Beam's patterns cannot quote;
    a one-character set can (``[][]`` for a bracket: ``[[]`` makes Python's re warn)."""
    return "".join({"[": "[][]", "*": "[*]", "?": "[?]"}.get(c, c) for c in path)


def has_video_extension(path: str, extensions: tuple[str, ...]) -> bool:
    ext = posixpath.splitext(path)[1].lower().lstrip(".")
    return ext in {e.lower() for e in extensions}


def video_id(path: str) -> str:
    """Stable id of an input path: names its files in every table."""
    return hashlib.sha1(path.encode()).hexdigest()[:16]


def camera_of(path: str) -> str:
    """The folder holding the video, as a camera id (``schemas.camera_id``)."""
    return camera_id(posixpath.basename(posixpath.dirname(path.replace("\\", "/"))))


def video_file(path: str, size_bytes: int, mtime: float) -> VideoFile:
    return VideoFile(path, size_bytes, mtime, camera_of(path), video_id(path))


def site_zone(name: str):
    """The site time zone: an IANA name, or None for this machine's local zone."""
    return None if name == "local" else ZoneInfo(name)


def _to_site_time(moment: datetime, zone_name: str) -> datetime:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(site_zone(zone_name)).replace(tzinfo=None)


def time_from_name(path: str, pattern: str) -> datetime | None:
    match = re.search(pattern, posixpath.basename(path))
    if not match:
        return None
    g = match.groupdict()
    try:
        return datetime(*(int(g[k]) for k in ("Y", "m", "d", "H", "M", "S")))
    except (KeyError, ValueError, TypeError):
        return None


def start_time(
    video: VideoFile, pattern: str, creation_time: datetime | None, zone_name: str
) -> tuple[datetime, str]:
    """The video's start as site wall-clock time, and which rule gave it."""
    named = time_from_name(video.path, pattern)
    if named is not None:
        return named, "filename"
    if creation_time is not None and creation_time.year > 1971:
        return _to_site_time(creation_time, zone_name), "metadata"
    return _to_site_time(datetime.fromtimestamp(video.mtime, UTC), zone_name), "mtime"


def read_bytes(path: str) -> bytes:
    """A whole (small) file, local or on any Beam filesystem: model files, never videos. A
    missing file raises FileNotFoundError; others errors are the filesystem's own."""
    if not FileSystems.exists(path):
        raise FileNotFoundError(path)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def fingerprint(video: VideoFile) -> str:
    """Content fingerprint: SHA-256 of the size, the first and the last MiB of the file."""
    digest = hashlib.sha256(str(video.size_bytes).encode())
    with FileSystems.open(video.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        digest.update(f.read(FINGERPRINT_BYTES))
        if video.size_bytes > 2 * FINGERPRINT_BYTES:
            f.seek(video.size_bytes - FINGERPRINT_BYTES)
            digest.update(f.read(FINGERPRINT_BYTES))
    return digest.hexdigest()[:32]


def needs_analysis(
    video: VideoFile, entry: ManifestEntry | None, force: bool, model_version: str | None
) -> tuple[bool, str]:
    """Whether a matched file must be (re)analysed, and why: new, failed before, changed
    content, or (when ``model_version`` is given) analysed by another model; ``force`` always."""
    if force:
        return True, "forced"
    if entry is None:
        return True, "new"
    if entry.status != STATUS_OK:
        return True, "failed before"
    touched = entry.size_bytes != video.size_bytes or abs(entry.mtime - video.mtime) > 1e-3
    # A touched file whose content fingerprint is unchanged (copied, re-synced) is not new work.
    if touched:
        try:
            changed = entry.fingerprint != fingerprint(video)
        except OSError:  # unreadable now: analysing it records the failure in the videos table
            return True, "unreadable"
        if changed:
            return True, "changed"
    if model_version is not None and entry.model_version != model_version:
        return True, "model changed"
    return False, "unchanged"


def date_wanted(day: date, dates: tuple[date, ...] | None, since: date | None) -> bool:
    """Whether a video starting on ``day`` is among the run's dates (None: any)."""
    if dates is not None and day not in dates:
        return False
    return since is None or day >= since
