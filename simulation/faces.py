"""Labelled face images for synthetic clips.

Two kinds of source, both opened with :func:`open_faces`:

- **UTKFace** chips, straight from the release ``.tar.gz`` (read in place, never unpacked to
  disk) or from a folder, named ``<age>_<gender>_<race>_<datetime>.jpg.chip.jpg`` with gender
  0 = male and 1 = female. Files whose name does not follow the pattern (the release has a few)
  are skipped.
- **Any images plus a CSV** with the header ``path,age,gender``: ``path`` relative to the CSV's
  folder (or absolute), ``age`` in years, ``gender`` ``male``/``female`` (also ``m``/``f``, or
  ``0``/``1`` as in UTKFace). Pass the CSV itself, or a folder that holds exactly one ``.csv``.

UTKFace has no person identities: each chip counts as one person. :func:`sample_faces` draws ``n``
distinct entries with a seeded generator, so the same seed gives the same people.
"""

from __future__ import annotations

import csv
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from simulation import SimulationError

UTK_NAME = re.compile(r"^(\d{1,3})_([01])_(\d)_(\d+)\s*\.jpg(?:\.chip\.jpg)?$")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
GENDERS = {
    "male": "male",
    "m": "male",
    "0": "male",
    "female": "female",
    "f": "female",
    "1": "female",
}


@dataclass(frozen=True)
class FaceRecord:
    """One labelled image, not yet loaded: ``key`` names it inside its source."""

    key: str
    age: int
    gender: str  # 'male' or 'female'


@dataclass(frozen=True)
class Face:
    key: str
    age: int
    gender: str
    image: np.ndarray  # BGR uint8, HxWx3


def parse_utkface_name(name: str) -> FaceRecord | None:
    """``FaceRecord`` for a UTKFace file name (any folder prefix), ``None`` if malformed."""
    base = name.rsplit("/", 1)[-1]
    m = UTK_NAME.match(base)
    if not m:
        return None
    age = int(m.group(1))
    if not 0 < age <= 120:
        return None
    return FaceRecord(key=name, age=age, gender="male" if m.group(2) == "0" else "female")


def _decode(data: bytes, key: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise SimulationError(f"cannot decode face image {key}")
    return img


class FaceSource:
    """A list of labelled faces plus a way to load their pixels."""

    description = "faces"

    def __init__(self, records: list[FaceRecord]):
        if not records:
            raise SimulationError(f"no labelled face images found in {self.description}")
        self.records = sorted(records, key=lambda r: r.key)

    def __len__(self) -> int:
        return len(self.records)

    def load_many(self, records: list[FaceRecord]) -> list[Face]:
        return [Face(r.key, r.age, r.gender, self._load(r.key)) for r in records]

    def _load(self, key: str) -> np.ndarray:
        raise NotImplementedError


class FolderSource(FaceSource):
    def __init__(self, root: Path, records: list[FaceRecord], description: str):
        self.root = root
        self.description = description
        super().__init__(records)

    def _load(self, key: str) -> np.ndarray:
        path = Path(key) if Path(key).is_absolute() else self.root / key
        try:
            return _decode(path.read_bytes(), key)
        except OSError as exc:
            raise SimulationError(f"cannot read face image {path}: {exc.strerror}") from None


class TarSource(FaceSource):
    def __init__(self, path: Path):
        self.path = path
        self.description = str(path)
        try:
            with tarfile.open(path, "r:*") as tar:
                self._members = {m.name: m for m in tar.getmembers() if m.isfile()}
        except (OSError, tarfile.TarError) as exc:
            raise SimulationError(f"cannot read archive {path}: {exc}") from None
        records = [r for r in map(parse_utkface_name, self._members) if r is not None]
        super().__init__(records)

    def load_many(self, records: list[FaceRecord]) -> list[Face]:
        # Read in archive order: a gzip stream only seeks forward cheaply.
        order = sorted(records, key=lambda r: self._members[r.key].offset)
        images = {}
        with tarfile.open(self.path, "r:*") as tar:
            for r in order:
                f = tar.extractfile(self._members[r.key])
                images[r.key] = _decode(f.read(), r.key)
        return [Face(r.key, r.age, r.gender, images[r.key]) for r in records]


def _parse_gender(value: str, where: str) -> str:
    g = GENDERS.get(value.strip().lower())
    if g is None:
        raise SimulationError(f"{where}: gender must be male/female (or m/f, 0/1), got {value!r}")
    return g


def _csv_source(csv_path: Path) -> FolderSource:
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"path", "age", "gender"} - set(reader.fieldnames or [])
            if missing:
                gone = ", ".join(sorted(missing))
                raise SimulationError(
                    f"{csv_path}: needs a header path,age,gender (missing {gone})"
                )
            records = []
            for line, row in enumerate(reader, start=2):
                where = f"{csv_path}:{line}"
                try:
                    age = round(float(row["age"]))
                except (TypeError, ValueError):
                    raise SimulationError(f"{where}: age must be a number") from None
                records.append(FaceRecord(row["path"], age, _parse_gender(row["gender"], where)))
    except OSError as exc:
        raise SimulationError(f"cannot read {csv_path}: {exc.strerror}") from None
    return FolderSource(csv_path.parent, records, str(csv_path))


def open_faces(path: str | Path) -> FaceSource:
    """Open a UTKFace ``.tar.gz``/folder, or a ``path,age,gender`` CSV (or a folder holding one)."""
    p = Path(path)
    if not p.exists():
        raise SimulationError(f"face source not found: {p}")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return _csv_source(p)
        if tarfile.is_tarfile(p):
            return TarSource(p)
        raise SimulationError(f"{p}: expected a .tar.gz of UTKFace chips, a folder or a .csv")
    csvs = sorted(p.glob("*.csv"))
    if len(csvs) == 1:
        return _csv_source(csvs[0])
    if len(csvs) > 1:
        raise SimulationError(f"{p} holds several CSV files; pass the one to use")
    records = []
    for f in sorted(p.rglob("*")):
        if f.suffix.lower() in IMAGE_SUFFIXES:
            r = parse_utkface_name(f.name)
            if r is not None:
                records.append(FaceRecord(str(f.relative_to(p)), r.age, r.gender))
    return FolderSource(p, records, str(p))


def sample_faces(source: FaceSource, n: int, seed: int) -> list[Face]:
    """``n`` distinct labelled faces drawn with ``seed``; an error if the source has fewer."""
    if n > len(source):
        raise SimulationError(
            f"need {n} distinct faces but {source.description} has only {len(source)}"
        )
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(source), size=n, replace=False)
    return source.load_many([source.records[i] for i in picks])
