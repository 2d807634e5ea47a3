"""The faces a training run reads: one or more labelled face sets in one array, with their labels,
split and the order each epoch draws them in.

Each set brings the labels it has (``model.face_sets``): UTKFace age, gender and race; FER-2013
emotion; the mask crops mask status; -1 elsewhere, so each head's loss counts only the faces
labelled for it (``model.losses.MultiTaskLoss``). UTKFace chips are prepared as they always were
(centre crop, resize); the other sets are aligned onto the crop template estimated from the
UTKFace training chips, as the video pipeline aligns faces (``model.alignment``), and cached.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model import datasets
from model.alignment import Aligner, chip_detector, crop_template, relative_landmarks
from model.face_sets import KINDS, read_face_set
from model.train_config import TrainConfig

TEMPLATE_CHIPS = 400  # as jobs.export estimates the shipped file's template


@dataclass
class Faces:
    """The decoded faces of a run (uint8 N x S x S x 3), their labels, set and split."""

    images: torch.Tensor
    labels: dict[str, np.ndarray]
    targets: dict[str, torch.Tensor]  # the labels of the network's heads
    kind: np.ndarray  # index in model.face_sets.KINDS of each face's set
    paths: list[str]  # each face's file in its set
    train: np.ndarray  # indices of the readable training faces
    val: np.ndarray


@dataclass
class FaceSet:
    """One set's records, images and split, before the sets are put together."""

    kind: str
    records: list
    images: np.ndarray
    ok: np.ndarray
    train: list
    val: list


def load_faces(cfg: TrainConfig, data: list[str], manifest: str | None, log) -> Faces:
    """Every set in ``data`` (the first may be replaced by a CSV face list, ``manifest``),
    decoded at the input size from the cache when there, split, in one array."""
    d = cfg.data
    read = [read_face_set(path, manifest if i == 0 else None) for i, path in enumerate(data)]
    for path, (kind, _) in zip(data, read, strict=True):
        if kind not in KINDS:  # an identity pairs set is for evaluation only
            raise datasets.DataError(f"{path} is a {kind} pairs set, not a training set")
    sets: list[FaceSet] = []
    chips = None  # (root, training records) of the UTKFace set: where the template comes from
    template = None
    for path, (kind, records) in zip(data, read, strict=True):
        t0 = time.time()
        seed, fraction = d.split_seed, d.val_fraction if kind == "utkface" else d.group_val_fraction
        train, val = datasets.split_records(records, seed, fraction)
        root = datasets.image_root(path, manifest if kind == "utkface" else None)
        if kind == "utkface":
            images, ok = datasets.cached_images(records, root, d.input_size, d.crop, d.cache_dir)
            chips = chips or (root, train)
        else:
            if chips is None:
                raise datasets.DataError(
                    f"{path}: give the UTKFace set first: the other sets are aligned onto the "
                    "crop template of its chips"
                )
            template = template if template is not None else _template(*chips, cfg)
            images, ok = _aligned(records, root, template, cfg)
        sets.append(FaceSet(kind, records, images, ok, train, val))
        log(f"{kind}: {len(records)} faces at {d.input_size}px in {time.time() - t0:.1f}s")
    return _together(sets, cfg)


def _template(root: Path, train: list, cfg: TrainConfig) -> np.ndarray:
    d = cfg.data
    return crop_template(root, train, TEMPLATE_CHIPS, d.input_size, d.crop)[0]


def _aligned(records, root: Path, template: np.ndarray, cfg: TrainConfig):
    """A loose or tight crop set aligned onto ``template`` (cached: the detector's landmarks
    are the slow part)."""
    detector = chip_detector()
    key = hashlib.sha1(np.asarray(template, np.float64).round(4).tobytes()).hexdigest()[:12]
    prepare = _LazyAligner(records, root, template, cfg.data.input_size, detector)
    size, cache = cfg.data.input_size, cfg.data.cache_dir
    name = f"aligned-{key}-{detector.version}"
    return datasets.cached_images(records, root, size, 1.0, cache, prepare, prepare_key=name)


class _LazyAligner:
    """An ``Aligner`` whose fallback landmarks are learned on first use, so a cached set costs
    no detection at all."""

    def __init__(self, records, root, template, size, detector):
        self._args = (records, root, template, size, detector)
        self._aligner = None

    def __call__(self, rgb, record):
        if self._aligner is None:
            records, root, template, size, detector = self._args
            relative = relative_landmarks(records, root, detector)
            self._aligner = Aligner(template, size, detector, relative)
        return self._aligner(rgb, record)


def _together(sets: list[FaceSet], cfg: TrainConfig) -> Faces:
    """The sets as one array; the labels of the heads the network has become its targets."""
    images = np.concatenate([s.images for s in sets])
    records = [r for s in sets for r in s.records]
    ok = np.concatenate([s.ok for s in sets])
    kind = np.concatenate([np.full(len(s.records), KINDS.index(s.kind)) for s in sets])
    index = {id(r): i for i, r in enumerate(records)}
    train = np.array([index[id(r)] for s in sets for r in s.train if ok[index[id(r)]]], np.int64)
    val = np.array([index[id(r)] for s in sets for r in s.val if ok[index[id(r)]]], np.int64)
    if len(train) == 0:
        raise datasets.DataError("no training faces")
    labels = datasets.labels_array(records)
    targets = {k: torch.from_numpy(v) for k, v in labels.items() if k in cfg.model.heads}
    paths = [r.path for r in records]
    return Faces(torch.from_numpy(images), labels, targets, kind, paths, train, val)


def write_split(path: Path, faces: Faces) -> None:
    """Which faces are train and val, by set, for the run folder."""
    split = {}
    for part, idx in (("train", faces.train), ("val", faces.val)):
        split[part] = {
            kind: [faces.paths[i] for i in idx if faces.kind[i] == k]
            for k, kind in enumerate(KINDS)
        }
    path.write_text(json.dumps(split, indent=0))


def sample_weights(ages: np.ndarray, bin_years: int, power: float) -> np.ndarray:
    """Per-face weights ``count(age bin) ** -power`` for class-balanced sampling."""
    bins = ages // bin_years
    counts = np.bincount(bins)
    w = counts[bins].astype(np.float64) ** -power
    return w / w.sum()


def steps_per_epoch(faces: Faces, cfg: TrainConfig) -> int:
    return max(1, _epoch_size(faces, cfg) // cfg.train.batch_size)


def _epoch_size(faces: Faces, cfg: TrainConfig) -> int:
    """Faces one epoch draws: each set's training faces times its ``sampling.repeats``."""
    sizes = np.bincount(faces.kind[faces.train], minlength=len(KINDS))
    return int(round(sum(n * _repeat(cfg, kind) for kind, n in zip(KINDS, sizes, strict=True))))


def _repeat(cfg: TrainConfig, kind: str) -> float:
    return float(cfg.sampling.repeats.get(kind, 1.0))


def epoch_batches(faces: Faces, cfg: TrainConfig, gen: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches of face indices: a shuffle (each set drawn ``sampling.repeats``
    times over), or class-balanced draws over age bins."""
    bs, steps = cfg.train.batch_size, steps_per_epoch(faces, cfg)
    train = torch.from_numpy(faces.train)
    if cfg.sampling.balanced:
        ages = faces.labels["age"][faces.train]
        weights = sample_weights(ages, cfg.sampling.bin_years, cfg.sampling.power)
        order = torch.multinomial(torch.from_numpy(weights), steps * bs, True, generator=gen)
        return list(train[order].split(bs)[:steps])
    if all(_repeat(cfg, k) == 1.0 for k in KINDS):
        order = torch.randperm(len(faces.train), generator=gen)  # the single-set draw as ever
        return list(train[order].split(bs)[:steps])
    kinds = torch.from_numpy(faces.kind[faces.train])
    pool = torch.cat(
        [_drawn(train[kinds == k], _repeat(cfg, kind), gen) for k, kind in enumerate(KINDS)]
    )
    order = torch.randperm(len(pool), generator=gen)
    return list(pool[order].split(bs)[:steps])


def _drawn(indices: torch.Tensor, repeat: float, gen: torch.Generator) -> torch.Tensor:
    """``indices`` repeated ``repeat`` times over: whole copies, then a random part."""
    whole = int(repeat)
    part = int(round((repeat - whole) * len(indices)))
    extra = indices[torch.randperm(len(indices), generator=gen)[:part]]
    return torch.cat([indices.repeat(whole), extra])
