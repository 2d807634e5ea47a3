"""The labelled face sets training and evaluation read, each into ``model.datasets.FaceRecord``s
with the labels it has (-1 for the others).

* **UTKFace** (age, gender, race): a folder or tar of ``<age>_<gender>_<race>_<date>.jpg...``
  (``model.datasets.scan_utkface``), or a CSV face list.
* **Emotion** (FER-2013 layout): ``<root>/<split>/<class>/<file>.jpg`` with the classes of
  ``schemas.model_file.CLASS_NAMES["emotion"]``; the set's own split (``train``, ``val``) is kept.
  Tight grayscale crops of the face.
* **Mask status** (face-mask-dataset-ilc-2021 layout): ``<root>/labels.csv`` with columns
  ``file,label,photo,x1,y1,x2,y2`` (the face's box inside a loose colour crop, the photo it was
  cut from) and the crops under ``<root>/<label>/``; split by photo, so faces of one photo stay
  on one side.
* **Identity pairs** (LFW layout): ``<root>/pairs*.txt`` (View-2 format) and
  ``<root>/<name>/<name>_<i:04d>.jpg``; read by ``read_pairs`` (``model.verification``), the
  records are the images the pairs use.

A row or folder with a label the model does not know is skipped and counted in one warning,
never a crash. Which set a path holds is told by what it contains (``face_set_kind``).
"""

from __future__ import annotations

import csv
import io
import posixpath
import tarfile
import warnings
from pathlib import Path

from common.messages import first_line
from model.datasets import DataError, FaceRecord, read_face_list, scan_utkface
from model.verification import Pair, pair_records, pairs_file, parse_pairs
from schemas.model_file import CLASS_NAMES

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
KINDS = ("utkface", "emotion", "mask")  # the labelled sets training reads


def _names(source: Path) -> list[str]:
    """Every file of a folder (relative paths) or tar archive (member names)."""
    if source.is_dir():
        return [str(p.relative_to(source)) for p in sorted(source.rglob("*")) if p.is_file()]
    try:
        with tarfile.open(source) as tar:
            return [m.name for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cannot read archive {source}: {first_line(e)}") from e


def _read(source: Path, name: str) -> bytes:
    if source.is_dir():
        return (source / name).read_bytes()
    with tarfile.open(source) as tar:
        return tar.extractfile(name).read()


def face_set_kind(source: str | Path, names: list[str] | None = None) -> str:
    """``lfw`` where a pairs file is beside the images, ``mask`` where a ``labels.csv`` is,
    ``emotion`` where images sit in folders named after the emotions (most of them), else
    ``utkface``."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"data not found: {source}")
    names = _names(source) if names is None else names
    if pairs_file(names):
        return "lfw"
    if any(posixpath.basename(n) == "labels.csv" for n in names):
        return "mask"
    emotions = set(CLASS_NAMES["emotion"])
    folders = [posixpath.basename(posixpath.dirname(n)) for n in names if _is_image(n)]
    in_emotion_folders = sum(f in emotions for f in folders)
    return "emotion" if folders and in_emotion_folders * 2 >= len(folders) else "utkface"


def read_face_set(source: str | Path, manifest: str | Path | None = None) -> tuple[str, list]:
    """``(kind, records)`` of the face set at ``source`` (a CSV face list with ``manifest``)."""
    if manifest:
        return "utkface", read_face_list(manifest)
    source = Path(source)
    names = _names(source) if source.exists() else []
    kind = face_set_kind(source, names)
    if kind == "mask":
        return kind, scan_mask_crops(source, names)
    if kind == "emotion":
        return kind, scan_emotion_folders(source, names)
    if kind == "lfw":
        return kind, pair_records(read_pairs(source, names))
    return kind, scan_utkface(source)


def read_pairs(source: str | Path, names: list[str] | None = None) -> list[Pair]:
    """The verification pairs of an identity set (its pairs file) whose images are present;
    pairs with a missing image are skipped and counted in one warning."""
    source = Path(source)
    names = _names(source) if names is None else names
    name = pairs_file(names)
    if name is None:
        raise DataError(f"no pairs*.txt in {source}")
    pairs = parse_pairs(_read(source, name).decode("utf-8", "replace"), posixpath.dirname(name))
    present = set(names)
    kept = [p for p in pairs if p.a in present and p.b in present]
    if len(kept) < len(pairs):
        warnings.warn(
            f"{source}: skipped {len(pairs) - len(kept)} pair(s) with a missing image",
            stacklevel=2,
        )
    if not kept:
        raise DataError(f"no pair of {name} has both images in {source}")
    return kept


def _is_image(name: str) -> bool:
    base = posixpath.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def scan_emotion_folders(source: Path, names: list[str]) -> list[FaceRecord]:
    """Records of ``<split>/<class>/<file>`` images; other folders are skipped and counted."""
    classes = {name: k for k, name in enumerate(CLASS_NAMES["emotion"])}
    records, skipped = [], 0
    for name in names:
        if not _is_image(name):
            continue
        parts = name.split("/")
        label = classes.get(parts[-2]) if len(parts) >= 2 else None
        if label is None:
            skipped += 1
            continue
        split = next((p for p in parts[:-2] if p in ("train", "val")), "")
        records.append(FaceRecord(name, age=-1, gender=-1, emotion=label, split=split))
    if skipped:
        warnings.warn(
            f"{source}: skipped {skipped} image(s) outside the emotion folders", stacklevel=2
        )
    if not records:
        raise DataError(f"no emotion-labelled images in {source}")
    return records


def scan_mask_crops(source: Path, names: list[str]) -> list[FaceRecord]:
    """Records of the crops that ``labels.csv`` lists with a known label and a usable box; the
    other rows are skipped and counted."""
    csv_name = next(n for n in names if posixpath.basename(n) == "labels.csv")
    folder = posixpath.dirname(csv_name)
    present = set(names)
    rows = csv.DictReader(io.StringIO(_read(source, csv_name).decode("utf-8", "replace")))
    records, skipped = [], 0
    for row in rows:
        record = _mask_record(row, folder, present)
        if record is None:
            skipped += 1
        else:
            records.append(record)
    if skipped:
        warnings.warn(
            f"{source}: skipped {skipped} row(s) of labels.csv with an unknown label, a bad "
            "box or no image",
            stacklevel=2,
        )
    if not records:
        raise DataError(f"no usable rows in {csv_name} of {source}")
    return records


def _mask_record(row: dict, folder: str, present: set[str]) -> FaceRecord | None:
    labels = CLASS_NAMES["mask"]
    try:
        box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
        label = labels.index((row.get("label") or "").strip())
        path = posixpath.join(folder, row["file"].strip()) if folder else row["file"].strip()
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    if box[2] <= box[0] or box[3] <= box[1] or path not in present:
        return None
    photo = (row.get("photo") or "").strip() or posixpath.basename(path)
    return FaceRecord(path, age=-1, gender=-1, mask=label, box=box, group=photo)
