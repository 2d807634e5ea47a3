"""Labelled face photos for synthetic clips: the people who visit the kiosk.

The labels come from :mod:`model.datasets` and :mod:`model.face_sets`, so simulation reads faces
exactly as training does. The sources, all opened with :func:`open_faces`:

- **UTKFace** chips, straight from the release ``.tar.gz`` (read in place, never unpacked to
  disk) or from a folder, named ``<age>_<gender>_<race>_<datetime>.jpg.chip.jpg`` with gender
  0 = male and 1 = female. Files whose name does not follow the pattern (the release has a few)
  are skipped with a warning; ages above ``model.datasets.MAX_AGE`` count as that age.
- **Any images plus a CSV** in the training manifest's format: header ``path,age,gender``
  (optional ``race``), ``path`` relative to the CSV's folder (or absolute), ``age`` in years,
  ``gender`` ``0`` = male or ``1`` = female as in UTKFace (words such as ``male`` are not read;
  such rows are skipped with a warning). Rows with an empty gender cannot give a truth label and
  are skipped. Pass the CSV itself, or a folder that holds exactly one ``.csv``.
- **An emotion set** (FER-2013 layout, ``<split>/<class>/<file>.jpg``) and **a mask set**
  (``labels.csv`` with ``file,label,photo,x1,y1,x2,y2`` beside loose crops), in a folder or a
  ``.tar.gz``, told apart by what they hold (``model.face_sets.face_set_kind``). Their faces carry
  an emotion or a mask status and no age or gender; they are shaped like a UTKFace chip
  (:mod:`simulation.face_crops`).

UTKFace has no person identities: each chip counts as one person. :func:`sample_faces` draws ``n``
distinct entries with a seeded generator, so the same seed gives the same people.
"""

from __future__ import annotations

import copy
import csv
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import yaml

from common.messages import first_line
from model.datasets import DataError, FaceRecord, read_face_list, scan_utkface, split_records
from model.face_sets import face_set_kind, read_face_set
from model.preprocess import DecodeError, decode_rgb
from schemas.model_file import CLASS_NAMES
from simulation import SimulationError
from simulation.face_crops import shape_face

GENDER_NAMES = ("male", "female")  # model.datasets' 0 and 1
TRAIN_CONFIG = Path(__file__).resolve().parents[1] / "config" / "train.yaml"


@dataclass(frozen=True)
class LabelledPhoto:
    """One face photo with its labels, as drawn into a clip: age and gender, or (None for those)
    a mask status or an emotion."""

    key: str  # the image's path inside its source (tar member, or path under the folder / CSV)
    age: int | None
    gender: str | None  # 'male' or 'female'
    image: np.ndarray  # BGR uint8, HxWx3
    mask: str | None = None  # a name of schemas.model_file.CLASS_NAMES["mask"]
    emotion: str | None = None  # a name of CLASS_NAMES["emotion"]
    source: str | None = None  # the face source, named where a clip draws from several


def _photo(record: FaceRecord, data: bytes, kind: str) -> LabelledPhoto:
    try:
        image = cv2.cvtColor(decode_rgb(data), cv2.COLOR_RGB2BGR)
    except DecodeError:
        raise SimulationError(f"cannot decode face image {record.path}") from None
    return LabelledPhoto(
        record.path,
        record.age if record.age >= 0 else None,
        GENDER_NAMES[record.gender] if record.gender in (0, 1) else None,
        shape_face(kind, record, image),
        mask=CLASS_NAMES["mask"][record.mask] if record.mask >= 0 else None,
        emotion=CLASS_NAMES["emotion"][record.emotion] if record.emotion >= 0 else None,
    )


def _labelled(record: FaceRecord, kind: str) -> bool:
    """Whether the face has the label its set is read for (a mask crop needs its face box)."""
    if kind == "emotion":
        return record.emotion >= 0
    if kind == "mask":
        return record.mask >= 0 and record.box is not None
    return record.gender in (0, 1)


class FaceSource:
    """Labelled faces (``records``: :class:`model.datasets.FaceRecord`) plus their pixels;
    ``kind``: the set's kind in ``model.face_sets.KINDS`` (a CSV face list reads as UTKFace)."""

    description = "faces"
    kind = "utkface"

    def __init__(self, records: list[FaceRecord]):
        records = [r for r in records if _labelled(r, self.kind)]
        if not records:
            raise SimulationError(f"no labelled face images found in {self.description}")
        self.records = sorted(records, key=lambda r: r.path)

    def __len__(self) -> int:
        return len(self.records)

    def load_many(self, records: list[FaceRecord]) -> list[LabelledPhoto]:
        raise NotImplementedError


class FolderSource(FaceSource):
    def __init__(
        self, root: Path, records: list[FaceRecord], description: str, kind: str = "utkface"
    ):
        self.root = root
        self.description = description
        self.kind = kind
        super().__init__(records)

    def load_many(self, records: list[FaceRecord]) -> list[LabelledPhoto]:
        faces = []
        for r in records:
            path = self.root / r.path  # an absolute r.path stays as it is
            try:
                faces.append(_photo(r, path.read_bytes(), self.kind))
            except OSError as exc:
                raise SimulationError(f"cannot read face image {path}: {exc.strerror}") from None
        return faces


class TarSource(FaceSource):
    def __init__(self, path: Path, records: list[FaceRecord] | None = None, kind: str = "utkface"):
        self.path = path
        self.description = str(path)
        self.kind = kind
        super().__init__(_wrap(scan_utkface, path) if records is None else records)

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
                        faces[r.path] = _photo(r, tar.extractfile(member).read(), self.kind)
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


def _is_mask_labels(csv_path: Path) -> bool:
    """Whether a CSV is a mask set's ``labels.csv`` (``file,label,...``), not a face list."""
    try:
        with open(csv_path, newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # read as a face list, which says what is wrong with it
    return {"file", "label"} <= {c.strip().lower() for c in header}


def _set_source(p: Path) -> FaceSource:
    """A folder or tar archive of UTKFace chips, an emotion set or a mask set."""
    kind = _wrap(face_set_kind, p)
    if kind == "utkface":
        return TarSource(p) if p.is_file() else FolderSource(p, _wrap(scan_utkface, p), str(p))
    _, records = _wrap(read_face_set, p)
    return TarSource(p, records, kind) if p.is_file() else FolderSource(p, records, str(p), kind)


def open_faces(path: str | Path) -> FaceSource:
    """Open a UTKFace ``.tar.gz``/folder, a ``path,age,gender`` CSV (or a folder holding one),
    or an emotion or mask set (folder or ``.tar.gz``; a mask set also by its ``labels.csv``)."""
    p = Path(path)
    if not p.exists():
        raise SimulationError(f"face source not found: {p}")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return _set_source(p.parent) if _is_mask_labels(p) else _csv_source(p)
        if tarfile.is_tarfile(p):
            return _set_source(p)
        raise SimulationError(
            f"{p}: expected a .tar.gz of UTKFace chips or of a face set, a folder or a .csv"
        )
    csvs = sorted(p.glob("*.csv"))
    if len(csvs) == 1 and not _is_mask_labels(csvs[0]):
        return _csv_source(csvs[0])
    if len(csvs) > 1:
        raise SimulationError(f"{p} holds several CSV files; pass the one to use")
    return _set_source(p)


def sample_faces(source: FaceSource, n: int, seed: int | list[int]) -> list[LabelledPhoto]:
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
    clip rendered from them measures the model, not its memory of the training set. The split
    is training's (``model.datasets.split_records``): a set's own ``val`` part where it comes
    split (FER-2013), else a seeded hash of the face's group (a mask crop's photo) or file name,
    with ``data.val_fraction`` for UTKFace and ``data.group_val_fraction`` for the other sets."""
    name = "val_fraction" if source.kind == "utkface" else "group_val_fraction"
    try:
        split = yaml.safe_load(Path(config).read_text())["data"]
        seed, fraction = int(split["split_seed"]), float(split[name])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise SimulationError(
            f"cannot read the validation split from {config}: {first_line(exc)}"
        ) from None
    kept = copy.copy(source)
    kept.records = split_records(source.records, seed, fraction)[1]
    if not kept.records:
        raise SimulationError(f"no faces of {source.description} are in the validation split")
    return kept


class FaceMix:
    """Several face sources for one clip: each visitor is drawn from one of them, the sources
    taking equal shares (within one visitor) in a seeded order, so a clip of UTKFace, emotion
    and mask faces scores each kind of label on about as many visitors. One source alone is
    drawn exactly as :func:`sample_faces` draws it, so such a clip is the one it always was."""

    def __init__(self, sources: list[FaceSource]):
        if not sources:
            raise SimulationError("no face source given")
        self.sources = list(sources)

    def cast(self, n: int, seed: int) -> list[LabelledPhoto]:
        """``n`` faces, distinct within each source; each names its source when there are
        several (the truth's ``source``)."""
        if len(self.sources) == 1:
            return sample_faces(self.sources[0], n, seed)
        k = len(self.sources)
        which = np.random.default_rng([seed, 4]).permutation(np.arange(n) % k)
        photos: list[LabelledPhoto | None] = [None] * n
        for j, source in enumerate(self.sources):
            slots = np.flatnonzero(which == j)
            drawn = sample_faces(source, len(slots), [seed, 5, j])
            for slot, photo in zip(slots, drawn, strict=True):
                photos[slot] = replace(photo, source=source.description)
        return photos
