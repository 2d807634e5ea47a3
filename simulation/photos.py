"""Labelled face photos for synthetic clips: the people who visit the kiosk.

The labels come from :mod:`model.datasets`, so simulation reads faces exactly as training does.
Two kinds of source, both opened with :func:`open_faces`:

- **UTKFace** chips, straight from the release ``.tar.gz`` (read in place, never unpacked to
  disk) or from a folder, named ``<age>_<gender>_<race>_<datetime>.jpg.chip.jpg`` with gender
  0 = male and 1 = female. Files whose name does not follow the pattern (the release has a few)
  are skipped with a warning; ages above ``model.datasets.MAX_AGE`` count as that age.
- **Any images plus a CSV** in the training manifest's format: header ``path,age,gender``
  (optional ``race``), ``path`` relative to the CSV's folder (or absolute), ``age`` in years,
  ``gender`` ``0`` = male or ``1`` = female as in UTKFace (words such as ``male`` are not read;
  such rows are skipped with a warning). Rows with an empty gender cannot give a truth label and
  are skipped. Pass the CSV itself, or a folder that holds exactly one ``.csv``.

UTKFace has no person identities: each chip counts as one person. :func:`sample_faces` draws ``n``
distinct entries with a seeded generator, so the same seed gives the same people.
"""

from __future__ import annotations

import copy
import csv
import tarfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from common.messages import first_line
from model.datasets import DataError, FaceRecord, is_val, read_face_list, scan_utkface
from model.preprocess import DecodeError, decode_rgb
from simulation import SimulationError

GENDER_NAMES = ("male", "female")  # model.datasets' 0 and 1
TRAIN_CONFIG = Path(__file__).resolve().parents[1] / "config" / "train.yaml"


@dataclass(frozen=True)
class LabelledPhoto:
    """One face photo with its age and gender label, as drawn into a clip."""

    key: str  # the image's path inside its source (tar member, or path under the folder / CSV)
    age: int
    gender: str  # 'male' or 'female'
    image: np.ndarray  # BGR uint8, HxWx3


def _photo(record: FaceRecord, data: bytes) -> LabelledPhoto:
    try:
        image = cv2.cvtColor(decode_rgb(data), cv2.COLOR_RGB2BGR)
    except DecodeError:
        raise SimulationError(f"cannot decode face image {record.path}") from None
    return LabelledPhoto(record.path, record.age, GENDER_NAMES[record.gender], image)


class FaceSource:
    """Labelled faces (``records``: :class:`model.datasets.FaceRecord`) plus their pixels."""

    description = "faces"

    def __init__(self, records: list[FaceRecord]):
        records = [r for r in records if r.gender in (0, 1)]
        if not records:
            raise SimulationError(f"no labelled face images found in {self.description}")
        self.records = sorted(records, key=lambda r: r.path)

    def __len__(self) -> int:
        return len(self.records)

    def load_many(self, records: list[FaceRecord]) -> list[LabelledPhoto]:
        raise NotImplementedError


class FolderSource(FaceSource):
    def __init__(self, root: Path, records: list[FaceRecord], description: str):
        self.root = root
        self.description = description
        super().__init__(records)

    def load_many(self, records: list[FaceRecord]) -> list[LabelledPhoto]:
        faces = []
        for r in records:
            path = self.root / r.path  # an absolute r.path stays as it is
            try:
                faces.append(_photo(r, path.read_bytes()))
            except OSError as exc:
                raise SimulationError(f"cannot read face image {path}: {exc.strerror}") from None
        return faces


class TarSource(FaceSource):
    def __init__(self, path: Path):
        self.path = path
        self.description = str(path)
        super().__init__(_wrap(scan_utkface, path))

    def load_many(self, records: list[FaceRecord]) -> list[LabelledPhoto]:
        # One forward pass in archive order (a gzip stream only reads forward cheaply), stopping
        # once every wanted member has been read.
        wanted = {r.path: r for r in records}
        faces = {}
        try:
            with tarfile.open(self.path, "r|*") as tar:
                for member in tar:
                    r = wanted.get(member.name)
                    if r is not None and member.isfile() and r.path not in faces:
                        faces[r.path] = _photo(r, tar.extractfile(member).read())
                        if len(faces) == len(wanted):
                            break
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise SimulationError(f"cannot read archive {self.path}: {exc}") from None
        missing = [p for p in wanted if p not in faces]
        if missing:
            raise SimulationError(f"{self.path}: face image {missing[0]} not found in the archive")
        return [faces[r.path] for r in records]


def _wrap(read, path: Path, hint: str = "") -> list[FaceRecord]:
    """``read(path)`` with a :class:`model.datasets.DataError` as a one-line SimulationError."""
    try:
        return read(path)
    except DataError as exc:
        raise SimulationError(first_line(exc) + hint) from None
    except OSError as exc:
        raise SimulationError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SimulationError(f"cannot read {path}: {exc}") from None


def _csv_source(csv_path: Path) -> FolderSource:
    hint = " (faces CSV: path,age,gender with gender 0 = male, 1 = female)"
    return FolderSource(csv_path.parent, _wrap(read_face_list, csv_path, hint), str(csv_path))


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
    return FolderSource(p, _wrap(scan_utkface, p), str(p))


def sample_faces(source: FaceSource, n: int, seed: int) -> list[LabelledPhoto]:
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


def held_out(source: FaceSource, config: str | Path = TRAIN_CONFIG) -> FaceSource:
    """Keep only the faces in the validation split of a training config (default
    ``config/train.yaml``, the shipped model's): faces a model trained with it never saw, so a
    clip rendered from them measures the model, not its memory of the training set."""
    try:
        split = yaml.safe_load(Path(config).read_text())["data"]
        seed, fraction = int(split["split_seed"]), float(split["val_fraction"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise SimulationError(
            f"cannot read the validation split from {config}: {first_line(exc)}"
        ) from None
    kept = copy.copy(source)
    kept.records = [r for r in source.records if is_val(r.key, seed, fraction)]
    if not kept.records:
        raise SimulationError(f"no faces of {source.description} are in the validation split")
    return kept
