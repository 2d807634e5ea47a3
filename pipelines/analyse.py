"""The pipeline's decoding step: one video's frames → faces, crops and sightings.

    AnalyseVideo   decode, detect and align one video's faces: batches of crops with their
                   sightings, then the video's record (frames never leave the step)

It has one output carrying two kinds of element (``FaceBatch`` and the keyed ``VideoRecord``),
split downstream by two filters, and it batches the crops itself, emitting each batch in
``process``, and RunInference takes each batch as it is (pre-batched: Beam's BatchElements would
hold a bundle's last batch until ``finish_bundle``). Beam's own Dask translation (2.77) hands a
multi-output ParDo's whole output to every consumer and drops what a step emits in
``finish_bundle``, so the portable shape is one output and no ``finish_bundle`` work
(``pipelines.dask_runner`` runs Dask with its own ParDo translation as well). The record counts
the faces sent, so a video whose predictions do not all come back is failed, never published
short. Face embeddings (``pipelines.identity``) are made and dropped here, where the frames are:
only appearance-group numbers and person ids travel on.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.utils import shared
from tqdm import tqdm

from common.paths import is_remote
from common.prefetch import Prefetcher
from pipelines import inputs
from pipelines.cadence import DetectorCadence
from pipelines.crops import Sighting, align_face, frontalness
from pipelines.embeddings import FaceEmbedder
from pipelines.faces import create_detector
from pipelines.frames import VideoError, VideoInfo, VideoReader
from pipelines.gate import SceneGate
from pipelines.identity import NO_GROUP, PersonRegistry, VideoIdentity
from pipelines.pose import head_pose
from pipelines.settings import RunOptions, Settings
from pipelines.tracks import Observation
from schemas.tables import STATUS_FAILED, STATUS_OK

log = logging.getLogger(__name__)
NAMESPACE = "kiosk"


@dataclass(frozen=True)
class FaceBatch:
    """Aligned crops of one video on their way to the model: ``crops[i]`` is
    ``sightings[i]``'s face."""

    video_id: str
    sightings: tuple[Sighting, ...]
    crops: np.ndarray  # uint8 (N, S, S, 3)


@dataclass
class VideoRecord:
    """Everything known about one video after decoding, before its faces are tracked."""

    video: inputs.VideoFile
    start_time: datetime
    start_time_source: str
    sample_interval_s: float  # seconds of video each analysed frame stands for
    fingerprint: str = ""
    status: str = STATUS_OK
    error: str | None = None
    stream: VideoInfo | None = None  # None for a file that did not open
    frames_decoded: int = 0
    frames_skipped: int = 0  # never decoded: the gate passed them by (decode.gate)
    frames_analysed: int = 0
    faces_detected: int = 0  # faces sent to the model; as many predictions must come back
    seconds: float = 0.0
    # identity.enabled: each appearance group's random person id (``pipelines.identity``).
    person_ids: dict[int, str] = field(default_factory=dict)


class AnalyseVideo(beam.DoFn):
    """Decode one video, detect and align its faces; yields ``FaceBatch``es of up to
    ``batch_size`` faces and, last, the video's record keyed by its video_id."""

    def __init__(
        self, settings: Settings, template, input_size: int, run: RunOptions, batch_size: int
    ):
        self._settings = settings
        self._template = np.asarray(template, np.float32)
        self._size = input_size
        self._run = run
        self._batch_size = batch_size
        self._detector = None
        self._gate_detector = None
        self._timers = {
            name: Metrics.distribution(NAMESPACE, f"{name}_ms")
            for name in ("decode", "detect", "align", "embed")
        }
        self._faces = Metrics.counter(NAMESPACE, "faces_detected")
        self._embedded = Metrics.counter(NAMESPACE, "faces_embedded")
        self._counts = {
            name: Metrics.counter(NAMESPACE, name)
            for name in (
                "frames_skipped",
                "detector_runs",
                "detections_refreshed",
                "detections_partial",
                "detections_carried",
            )
        }
        self._not_dated = Metrics.counter(NAMESPACE, "videos_outside_dates")
        self._embedder = None
        self._registry = None
        # One registry per worker process, shared by its threads (identity.enabled only).
        self._registry_handle = shared.Shared()

    def setup(self):
        d = self._settings.detector
        self._detector = create_detector(d.name, **d.detector_options())
        identity = self._settings.identity
        if identity.embeds:
            self._embedder = FaceEmbedder(identity.model, max(1, self._settings.model.threads))
        if identity.enabled:
            self._registry = self._registry_handle.acquire(PersonRegistry, tag="persons")
        if self._settings.decode.gate:  # its own: the gate looks in the decoding thread
            self._gate_detector = create_detector(d.name, **d.detector_options())

    def process(self, video: inputs.VideoFile):
        started = time.perf_counter()
        record = self._first_record(video)
        try:
            problem = video.problem or inputs.file_kind_problem(video.path)
            if problem:
                raise VideoError(problem)
            if video.size_bytes == 0:
                raise VideoError("empty file (0 bytes)")
            record.fingerprint = inputs.fingerprint(video)
            with self._open(video) as reader:
                if not self._dated(record, video, reader):
                    return
                yield from self._faces_of(video, reader, record)
                record.stream = reader.info
                if reader.info.warnings:
                    record.error = "; ".join(reader.info.warnings)
        except VideoError as e:
            record.status, record.error = STATUS_FAILED, str(e)
        except OSError as e:  # unreadable: permissions, vanished file, I/O error
            record.status, record.error = STATUS_FAILED, f"cannot read file: {e.strerror or e}"
        except Exception as e:  # one bad file must never stop the night
            log.exception("analysing %s failed", video.path)
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            record.status, record.error = STATUS_FAILED, f"{type(e).__name__}: {reason}"[:300]
        record.seconds = time.perf_counter() - started
        if record.status == STATUS_FAILED and not self._wanted_day(record.start_time):
            # Dated by name or mtime only: outside the run's dates it is not this run's
            # failure (a nightly --since run must not report an old broken file every night).
            self._not_dated.inc()
            return
        yield video.video_id, record

    def _first_record(self, video: inputs.VideoFile) -> VideoRecord:
        """The record before the file is opened: dated by its name or mtime, so a file that
        cannot be opened still lands in the right day's partition when its name has the time."""
        s = self._settings
        start, source = inputs.start_time(video, s.input.start_time_pattern, None, s.input.timezone)
        return VideoRecord(video, start, source, sample_interval_s=1.0 / s.decode.fps)

    def _dated(self, record: VideoRecord, video, reader: VideoReader) -> bool:
        """Date the record by the container's creation time where the name has none; False
        (counted) when the video starts outside the run's dates."""
        s = self._settings.input
        record.sample_interval_s = reader.sample_interval_s
        record.start_time, record.start_time_source = inputs.start_time(
            video, s.start_time_pattern, reader.info.creation_time, s.timezone
        )
        if self._wanted_day(record.start_time):
            return True
        self._not_dated.inc()
        return False

    def _wanted_day(self, start: datetime) -> bool:
        return inputs.date_wanted(start.date(), self._run.dates, self._run.since)

    def _open(self, video: inputs.VideoFile) -> VideoReader:
        decode = self._settings.decode
        gate = None
        if decode.gate:
            gate = SceneGate(self._gate_faces, decode.gate_change, decode.gate_max_gop_s)
        source = video.path
        if is_remote(video.path):
            source = FileSystems.open(video.path, compression_type=CompressionTypes.UNCOMPRESSED)
        return VideoReader(source, decode.fps, decode.threads, gate, decode.skip_nonref)

    def _confident(self, faces: list) -> list:
        """The faces scoring at least ``detector.min_score``."""
        return [f for f in faces if f.score >= self._settings.detector.min_score]

    def _gate_faces(self, image: np.ndarray) -> list:
        return self._confident(self._gate_detector.detect(image))

    def _detect(self, image: np.ndarray) -> list:
        return self._confident(self._detector.detect(image))

    def _refresh(self, image: np.ndarray, faces: list) -> list | None:
        """The faces followed into ``image``; None (detect instead) if any fell below the score."""
        found = self._detector.refresh(image, faces)
        return found if found is not None and self._confident(found) == found else None

    def _progress(self, video, reader: VideoReader) -> tqdm:
        expected = int((reader.info.duration_s or 0) * self._settings.decode.fps) or None
        name = video.path.rsplit("/", 1)[-1][:30]
        options = dict(unit="frame", disable=not self._run.progress, file=sys.stderr, leave=False)
        return tqdm(total=expected, desc=name, **options)

    def _faces_of(self, video, reader: VideoReader, record: VideoRecord):
        bar = self._progress(video, reader)
        d = self._settings.detector
        look = DetectorCadence(d.cadence, d.cadence_change)
        frames = Prefetcher(look.thumbnails(reader.frames()))
        # Detection runs in a thread of its own, between decoding and this one (alignment,
        # embedding and, where the runner fuses it, inference): on a busy scene all three
        # stages keep both cores busy.
        refresh = self._refresh if d.refresh and hasattr(self._detector, "refresh") else None
        detected = Prefetcher(look.detected(frames, self._detect, refresh), name="detect")
        align_s = 0.0  # summed over the video: one face's alignment takes well under 1 ms
        identity = (
            VideoIdentity(self._embedder, self._settings.identity) if self._embedder else None
        )
        batch: list[tuple[Sighting, np.ndarray]] = []
        try:
            for frame, faces in detected:
                started = time.perf_counter()
                batch += self._aligned(video.video_id, frame, faces, identity)
                align_s += time.perf_counter() - started
                record.frames_analysed += 1
                record.faces_detected += len(faces)
                self._faces.inc(len(faces))
                bar.update(1)
                if len(batch) >= self._batch_size:
                    # A runner that fuses the next steps runs them (inference) inside this
                    # yield: the timer above stops before it; infer has its own.
                    yield _face_batch(video.video_id, batch)
                    batch = []
            if batch:
                yield _face_batch(video.video_id, batch)
        finally:  # a video that fails part-way still reports the time it took
            bar.close()
            detected.close()  # first: its thread may be waiting for the decoder's next frame
            frames.close()
            # Each stage's own time in its own thread (decoding's excludes waiting for room
            # and includes the look's thumbnails, made in its thread).
            self._timers["decode"].update(int(frames.busy_s * 1000))
            self._timers["detect"].update(int(look.busy_s * 1000))
            embed_s = identity.busy_s if identity is not None else 0.0  # timed on its own
            self._timers["align"].update(int((align_s - embed_s) * 1000))
            self._counts["detector_runs"].inc(look.runs)
            self._counts["detections_refreshed"].inc(look.refreshed)
            self._counts["detections_partial"].inc(look.partial)
            self._counts["detections_carried"].inc(look.carried)
        if identity is not None:
            self._embedded.inc(identity.embedded)
            self._timers["embed"].update(int(identity.busy_s * 1000))
            if self._registry is not None:
                day = record.start_time.date()
                same = self._settings.identity.same_person_day
                record.person_ids = self._registry.person_ids(day, identity.groups_of, same)
        record.frames_decoded = reader.info.frames_decoded
        record.frames_skipped = reader.info.frames_skipped
        self._counts["frames_skipped"].inc(reader.info.frames_skipped)

    def _aligned(
        self, video_id: str, frame, faces, identity: VideoIdentity | None
    ) -> list[tuple[Sighting, np.ndarray]]:
        """Each face's sighting with its crop aligned from this frame (a carried face's too)
        and, where sampled, its appearance group."""
        aligned = []
        size, hfov = frame.image.shape[1::-1], self._settings.attention.camera_hfov_deg
        fronts = [float(frontalness(face.landmarks)) for face in faces]
        groups = identity.groups(frame.image, frame.t_s, faces, fronts) if identity else None
        for k, (face, front) in enumerate(zip(faces, fronts, strict=True)):
            crop = align_face(frame.image, face.landmarks, self._template, self._size)
            yaw, pitch = head_pose(face.landmarks, size, hfov) or (None, None)
            group = groups[k] if groups else NO_GROUP
            sighting = Sighting(video_id, frame.index, frame.t_s, face, front, yaw, pitch, group)
            aligned.append((sighting, crop))
        return aligned


def _face_batch(video_id: str, faces: list[tuple[Sighting, np.ndarray]]) -> FaceBatch:
    return FaceBatch(video_id, tuple(s for s, _ in faces), np.stack([c for _, c in faces]))


def is_face_batch(element) -> bool:
    return isinstance(element, FaceBatch)


def is_record(element) -> bool:
    return not isinstance(element, FaceBatch)


def batch_for_model(batch: FaceBatch) -> list[tuple[tuple[Sighting, ...], np.ndarray]]:
    """What the pre-batched RunInference takes: a batch of one (key, example), the sightings
    and their crops (one model call per FaceBatch)."""
    return [(batch.sightings, batch.crops)]


def to_observations(sightings: tuple[Sighting, ...], predictions) -> list[tuple[str, Observation]]:
    """Each face with the model's answer, keyed by video for the grouping. Predictions that did
    not come back leave their faces out here; PublishVideo counts them and fails the video."""
    pairs = zip(sightings, predictions, strict=False)
    return [(s.video_id, Observation(s, p)) for s, p in pairs]
