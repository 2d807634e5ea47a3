"""Faces → appearance groups and pseudonymous person ids, without keeping a face.

Where a video's frames are decoded (``pipelines.analyse.AnalyseVideo``), ``VideoIdentity`` embeds
a sample of its faces (``pipelines.embeddings``) and sorts them online into appearance groups:
a face joins the group whose mean embedding it resembles most when the cosine similarity
reaches ``identity.same_person``, else it starts a group. Only the group's number travels on,
with the face's sighting; the tracker's fragments that share a group are stitched later
(``pipelines.stitching``). The embeddings die with the video's analysis.

Cross-video identity is opt-in (``identity.enabled``): ``PersonRegistry`` keeps, per day, one
mean embedding per person seen in this process during this run and hands each video's groups a
person id: a random hex string, not derived from the face, that means nothing after the run.
The registry is process memory (Beam's ``Shared`` handle), so person ids link the videos one
process analyses: the job allows it only on the in-process DirectRunner with one worker.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import date

import numpy as np

from common.geometry import box_size
from pipelines.crops import align_faces
from pipelines.embeddings import FaceEmbedder
from pipelines.settings import IdentitySettings

NO_GROUP = -1  # a face that was not embedded (off the sampling cadence, turned or small)


class AppearanceGroups:
    """Online grouping of unit embeddings by cosine similarity to each group's mean."""

    def __init__(self, same_person: float):
        self.same_person = same_person
        self._sums: list[np.ndarray] = []
        self.sizes: list[int] = []

    def __len__(self) -> int:
        return len(self._sums)

    def centroid(self, group: int) -> np.ndarray:
        s = self._sums[group]
        return s / max(float(np.linalg.norm(s)), 1e-12)

    def assign(self, embedding: np.ndarray, taken: set[int] | frozenset = frozenset()) -> int:
        """The embedding's group: the most similar one at or above ``same_person`` that is not
        ``taken`` (by another face of the same frame: two faces at once are two people), else a
        new one."""
        free = [g for g in range(len(self)) if g not in taken]
        if free:
            sims = np.stack([self.centroid(g) for g in free]) @ embedding
            k = int(np.argmax(sims))
            best = free[k]
            if sims[k] >= self.same_person:
                self._sums[best] = self._sums[best] + embedding
                self.sizes[best] += 1
                return best
        self._sums.append(embedding.astype(np.float64))
        self.sizes.append(1)
        return len(self._sums) - 1


class VideoIdentity:
    """One video's embedding sampler and appearance groups: ``groups(image, t_s, faces,
    fronts)`` gives each face's group, or ``NO_GROUP`` where it is not sampled."""

    def __init__(self, embedder: FaceEmbedder, settings: IdentitySettings):
        self._embedder = embedder
        self._settings = settings
        self._next_t = -np.inf
        self.groups_of = AppearanceGroups(settings.same_person)
        self.embedded = 0
        self.busy_s = 0.0  # aligning and embedding, for the run's stage timings

    def groups(self, image: np.ndarray, t_s: float, faces, fronts) -> list[int]:
        s = self._settings
        out = [NO_GROUP] * len(faces)
        if t_s < self._next_t:
            return out
        picked = [
            i
            for i, (face, front) in enumerate(zip(faces, fronts, strict=True))
            if front >= s.min_frontalness and box_size(face.box) >= s.min_face_px
        ]
        if not picked:
            return out  # try the next frame: the cadence waits for a usable face
        started = time.perf_counter()
        e = self._embedder
        crops = align_faces(image, [faces[i].landmarks for i in picked], e.template, e.size)
        taken: set[int] = set()
        for i, embedding in zip(picked, e.embed(np.asarray(crops)), strict=True):
            out[i] = self.groups_of.assign(embedding, taken)
            taken.add(out[i])
        self.embedded += len(picked)
        self.busy_s += time.perf_counter() - started
        self._next_t = t_s + s.sample_every_s
        return out


class PersonRegistry:
    """Per day, the people seen so far in this run (a mean embedding each) and their random
    ids. Thread-safe: a worker process may analyse videos in several threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._days: dict[date, tuple[list[str], list[np.ndarray]]] = {}

    def person_ids(self, day: date, groups: AppearanceGroups, same_person: float) -> dict[int, str]:
        """A person id for each of a video's groups: that of the day's most similar person at
        or above ``same_person`` (each person at most once per video), else a new one."""
        with self._lock:
            ids, sums = self._days.setdefault(day, ([], []))
            taken: set[int] = set()
            out = {}
            order = sorted(range(len(groups)), key=lambda g: -groups.sizes[g])
            for g in order:
                c = groups.centroid(g)
                sims = [float(c @ (v / np.linalg.norm(v))) for v in sums]
                free = [k for k in range(len(sums)) if k not in taken]
                best = max(free, key=lambda k: sims[k], default=None)
                if best is not None and sims[best] >= same_person:
                    sums[best] = sums[best] + c * groups.sizes[g]
                else:
                    ids.append(uuid.uuid4().hex[:16])
                    sums.append(c * groups.sizes[g])
                    best = len(ids) - 1
                taken.add(best)
                out[g] = ids[best]
            return out
