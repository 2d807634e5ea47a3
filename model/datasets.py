"""Face records and their images: UTKFace (folder or .tar.gz), a CSV face list, the split, the
uint8 cache. The other labelled face sets (emotion, mask status) are read by
``model.face_sets`` into the same records. Torch-free: training and evaluation both read faces
through here.

* UTKFace names: ``<age>_<gender>_<race>_<datetime>.jpg.chip.jpg``, gender 0 = male, 1 = female,
  race 0 white, 1 black, 2 asian, 3 indian, 4 other. Malformed names are skipped with a warning.
* Manifest: CSV with header ``path,age,gender`` (optional ``race``), paths relative to the CSV.
* Split: a face is in the validation part when a seeded SHA-1 of its file name (or of its
  group, e.g. the photo a face was cut from) falls below ``val_fraction``, so the split depends
  only on the names and the seed, never on file order; a set that comes split (FER-2013's
  folders) keeps its own split.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.messages import first_line
from model.preprocess import DecodeError, decode_rgb, prepare_chip

MAX_AGE = 100
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_UTK = re.compile(r"^(\d+)_([01])_([0-4])_(\d+) ?\.jpg(\.chip\.jpg)?$")


class DataError(ValueError):
    """A user-facing data problem (missing file, unreadable archive, bad manifest)."""


@dataclass(frozen=True)
class FaceRecord:
    """One labelled face image; -1 where its set has no label of that kind."""

    path: str  # member name in the tar, or path relative to the folder / manifest directory
    age: int  # years, clipped to 0..MAX_AGE
    gender: int  # 0 male, 1 female, -1 unknown
    race: int = -1  # UTKFace race group, -1 unknown
    mask: int = -1  # index in schemas.model_file.CLASS_NAMES["mask"]
    emotion: int = -1  # index in schemas.model_file.CLASS_NAMES["emotion"]
    box: tuple[float, float, float, float] | None = None  # the face in a loose crop, pixels
    group: str = ""  # faces of one group (one photo) fall on the same side of the split
    split: str = ""  # "train" or "val" where the set comes split

    @property
    def key(self) -> str:
        return os.path.basename(self.path)


def parse_utkface_name(name: str) -> FaceRecord | None:
    """Labels from a UTKFace file name, or None when the name is malformed."""
    m = _UTK.match(os.path.basename(name))
    if not m:
        return None
    age = min(int(m.group(1)), MAX_AGE)
    return FaceRecord(name, age, int(m.group(2)), int(m.group(3)))


def _is_image(name: str) -> bool:
    base = os.path.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def _records_from_names(names: list[str], origin: str) -> list[FaceRecord]:
    records, bad = [], []
    for name in sorted(names):
        rec = parse_utkface_name(name)
        if rec is None:
            bad.append(os.path.basename(name))
        else:
            records.append(rec)
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(
            f"{origin}: skipped {len(bad)} file(s) with a malformed UTKFace name: {shown}",
            stacklevel=3,
        )
    return records


def is_tar(source: str | Path) -> bool:
    s = str(source)
    return s.endswith((".tar", ".tar.gz", ".tgz"))


def scan_utkface(source: str | Path) -> list[FaceRecord]:
    """Records for every well-named image in a UTKFace folder or tar archive."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"data not found: {source}")
    if source.is_dir():
        names = [str(p.relative_to(source)) for p in sorted(source.rglob("*")) if _is_image(p.name)]
    else:
        try:
            with tarfile.open(source) as tar:
                names = [m.name for m in tar.getmembers() if m.isfile() and _is_image(m.name)]
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"cannot read archive {source}: {first_line(e)}") from e
    if not names:
        raise DataError(f"no images found in {source}")
    return _records_from_names(names, str(source))


def read_face_list(csv_path: str | Path) -> list[FaceRecord]:
    """Records from a ``path,age,gender[,race]`` CSV; paths are relative to the CSV's folder."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"manifest not found: {csv_path}")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        fields = {c.strip().lower() for c in reader.fieldnames or []}
        if not {"path", "age", "gender"} <= fields:
            raise DataError(f"{csv_path}: manifest needs the columns path,age,gender")
        records = []
        for i, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            try:
                age = min(max(int(float(row["age"])), 0), MAX_AGE)
                gender = int(row["gender"]) if row["gender"] != "" else -1
                race = int(row["race"]) if row.get("race", "") != "" else -1
            except ValueError:
                warnings.warn(f"{csv_path}:{i}: bad age/gender, row skipped", stacklevel=2)
                continue
            if gender not in (-1, 0, 1):
                warnings.warn(f"{csv_path}:{i}: gender must be 0 or 1, row skipped", stacklevel=2)
                continue
            records.append(FaceRecord(row["path"], age, gender, race))
    if not records:
        raise DataError(f"{csv_path}: no usable rows")
    return records


def load_records(data: str | Path, manifest: str | Path | None = None) -> list[FaceRecord]:
    """UTKFace records from ``data``, or the manifest's records (``data`` then unused)."""
    if manifest:
        return read_face_list(manifest)
    return scan_utkface(data)


def image_root(data: str | Path, manifest: str | Path | None = None) -> Path:
    return Path(manifest).resolve().parent if manifest else Path(data)


def is_val(key: str, seed: int, val_fraction: float) -> bool:
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def split_records(
    records: list[FaceRecord], seed: int, val_fraction: float
) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """(train, val): the set's own split where it has one, else a seeded stable hash of each
    face's group or file name."""
    train, val = [], []
    for r in records:
        in_val = r.split == "val" if r.split else is_val(r.group or r.key, seed, val_fraction)
        (val if in_val else train).append(r)
    return train, val


def select_split(
    records: list[FaceRecord], split: str, seed: int, val_fraction: float
) -> list[FaceRecord]:
    if split == "all":
        return records
    train, val = split_records(records, seed, val_fraction)
    return {"train": train, "val": val}[split]


def write_split(path: str | Path, train: list[FaceRecord], val: list[FaceRecord], **info) -> None:
    payload = {**info, "train": [r.path for r in train], "val": [r.path for r in val]}
    Path(path).write_text(json.dumps(payload, indent=0))


def load_images(
    records: list[FaceRecord],
    root: str | Path,
    size: int,
    crop: float = 1.0,
    prepare=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and prepare every record -> (uint8 [N, size, size, 3], bool ok[N]).

    ``prepare(rgb, record) -> size x size x 3 uint8`` replaces ``prepare_chip(rgb, size, crop)``
    when given (``model.alignment`` aligns loose crops through it). Reads a tar archive in one
    sequential pass; unreadable images are left black with ``ok`` False and counted in one
    warning.
    """
    root = Path(root)
    out = np.zeros((len(records), size, size, 3), np.uint8)
    ok = np.zeros(len(records), bool)
    index = {r.path: i for i, r in enumerate(records)}
    unreadable: list[str] = []

    def put(i: int, data: bytes, name: str) -> None:
        try:
            rgb = decode_rgb(data)
            out[i] = prepare(rgb, records[i]) if prepare else prepare_chip(rgb, size, crop)
            ok[i] = True
        except DecodeError:
            unreadable.append(name)

    if root.is_file() and is_tar(root):
        try:
            with tarfile.open(root, "r|*") as tar:
                for member in tar:
                    i = index.get(member.name)
                    if i is not None and member.isfile():
                        put(i, tar.extractfile(member).read(), member.name)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"cannot read archive {root}: {first_line(e)}") from e
    else:
        for r, i in index.items():
            p = root / r
            if p.is_file():
                put(i, p.read_bytes(), str(p))
            else:
                unreadable.append(str(p))
    if unreadable:
        shown = ", ".join(os.path.basename(n) for n in unreadable[:3])
        warnings.warn(f"skipped {len(unreadable)} unreadable image(s): {shown}", stacklevel=2)
    return out, ok


LABELS = ("age", "gender", "race", "mask", "emotion")


def labels_array(records: list[FaceRecord]) -> dict[str, np.ndarray]:
    return {k: np.array([getattr(r, k) for r in records], np.int64) for k in LABELS}


def cached_images(
    records: list[FaceRecord],
    root: str | Path,
    size: int,
    crop: float,
    cache_dir: str | Path | None = "cache",
    prepare=None,
    prepare_key: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """``load_images`` memoised in ``cache_dir`` (keyed by source, its mtime/size, records, size,
    crop and ``prepare_key``, which names what ``prepare`` does); ``cache_dir=None``: no cache."""
    if cache_dir is None:
        return load_images(records, root, size, crop, prepare)
    root = Path(root)
    h = hashlib.sha1()
    h.update(f"{root.resolve()}|{size}|{crop}|{prepare_key}|v1".encode())
    if root.is_file():
        st = root.stat()
        h.update(f"{st.st_mtime_ns}|{st.st_size}".encode())
    for r in records:
        h.update(r.path.encode() + b"\0")
        if not root.is_file():
            p = root / r.path
            st = p.stat() if p.is_file() else None
            h.update(f"{st and st.st_mtime_ns}|{st and st.st_size}".encode())
    path = Path(cache_dir) / f"faces-{size}-{h.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["images"], z["ok"]
    images, ok = load_images(records, root, size, crop, prepare)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, ok=ok)
    os.replace(tmp, path)
    return images, ok
