"""The pipeline's steps that are this project's own (``pipelines.pipeline`` wires them).

    SelectVideos   which matched files need analysing (the incremental rule, a side input)
    AnalyseVideo   decode, detect and align one video's faces: batches of crops with their
                   sightings, then the video's record (frames never leave the step)
    PublishVideo   track one video's faces, aggregate visitors, publish every table's rows

AnalyseVideo has one output carrying two kinds of element (``FaceBatch`` and the keyed
``VideoRecord``), split downstream by two filters, and it batches the crops itself, emitting
each batch in ``process``, and RunInference takes each batch as it is (pre-batched: Beam's
BatchElements would hold a bundle's last batch until ``finish_bundle``). Beam's own Dask
translation (2.77) hands a multi-output ParDo's whole output to every consumer and drops what
a step emits in ``finish_bundle``, so the portable shape is one output and no
``finish_bundle`` work (``pipelines.dask_runner`` runs Dask with its own ParDo translation as
well). The record counts the faces sent, so a video whose predictions do not all come back is
failed, never published short.

Everything a worker needs travels in the DoFns or as side inputs; models are loaded in
``setup`` or by RunInference's handler and paths go through Beam FileSystems, so any runner
can run them.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from tqdm import tqdm

from common.paths import is_remote
from pipelines import inputs
from pipelines.cadence import DetectorCadence
from pipelines.crops import Sighting, align_face, frontalness
from pipelines.faces import create_detector
from pipelines.frames import Prefetcher, VideoError, VideoInfo, VideoReader
from pipelines.gate import SceneGate
from pipelines.pose import head_pose
from pipelines.settings import RunOptions, Settings
from pipelines.tracks import Observation, track_faces
from pipelines.visitors import aggregate, frames_needed
from schemas import rows
from schemas.publish import publish, remove_video
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


class SelectVideos(beam.DoFn):
    """Keep the matched files that are videos and need analysis under the incremental rule;
    the manifest (input path → ``schemas.manifest.ManifestEntry``) comes as a side input."""

    def __init__(self, settings: Settings, run: RunOptions):
        self._settings = settings
        self._run = run
        self._skipped = Metrics.counter(NAMESPACE, "videos_unchanged")

    def process(self, meta: FileMetadata, manifest: dict):
        if not inputs.has_video_extension(meta.path, self._settings.input.extensions):
            return
        video = inputs.video_file(meta.path, meta.size_in_bytes, meta.last_updated_in_seconds)
        run = self._run
        model = run.model_version if run.reprocess_model_changes else None
        wanted, _ = inputs.needs_analysis(video, manifest.get(video.path), run.force, model)
        if wanted:
            yield video
        else:
            self._skipped.inc()


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
            for name in ("decode", "detect", "align")
        }
        self._faces = Metrics.counter(NAMESPACE, "faces_detected")
        self._counts = {
            name: Metrics.counter(NAMESPACE, name)
            for name in ("frames_skipped", "detector_runs", "detections_carried")
        }
        self._not_dated = Metrics.counter(NAMESPACE, "videos_outside_dates")

    def setup(self):
        d = self._settings.detector
        self._detector = create_detector(d.name, **d.detector_options())
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
        if not is_remote(video.path):
            return VideoReader(video.path, decode.fps, decode.threads, gate)
        stream = FileSystems.open(video.path, compression_type=CompressionTypes.UNCOMPRESSED)
        return VideoReader(stream, decode.fps, decode.threads, gate)

    def _gate_faces(self, image: np.ndarray) -> list:
        min_score = self._settings.detector.min_score
        return [f for f in self._gate_detector.detect(image) if f.score >= min_score]

    def _detect(self, image: np.ndarray) -> list:
        min_score = self._settings.detector.min_score
        return [f for f in self._detector.detect(image) if f.score >= min_score]

    def _faces_of(self, video, reader: VideoReader, record: VideoRecord):
        expected = int((reader.info.duration_s or 0) * self._settings.decode.fps) or None
        name = video.path.rsplit("/", 1)[-1][:30]
        bar = tqdm(
            total=expected,
            desc=name,
            unit="frame",
            disable=not self._run.progress,
            file=sys.stderr,
            leave=False,
        )
        frames = Prefetcher(reader.frames())
        d = self._settings.detector
        look = DetectorCadence(d.cadence, d.cadence_change)
        # Summed over the video, not per frame: one face's alignment takes well under 1 ms.
        detect_s = align_s = 0.0
        batch: list[tuple[Sighting, np.ndarray]] = []
        try:
            for frame in frames:
                t1 = time.perf_counter()
                faces, _ = look.faces(frame.image, self._detect)
                t2 = time.perf_counter()
                batch += self._aligned(video.video_id, frame, faces)
                detect_s, align_s = detect_s + t2 - t1, align_s + time.perf_counter() - t2
                record.frames_analysed += 1
                record.faces_detected += len(faces)
                self._faces.inc(len(faces))
                bar.update(1)
                if len(batch) >= self._batch_size:
                    # A runner that fuses the next steps runs them (inference) inside this
                    # yield: the timers above stop before it; infer has its own.
                    yield _face_batch(video.video_id, batch)
                    batch = []
            if batch:
                yield _face_batch(video.video_id, batch)
        finally:  # a video that fails part-way still reports the time it took
            bar.close()
            # Decoding ran in the prefetch thread, overlapping detection; this is its own time.
            self._timers["decode"].update(int(frames.busy_s * 1000))
            self._timers["detect"].update(int(detect_s * 1000))
            self._timers["align"].update(int(align_s * 1000))
            self._counts["detector_runs"].inc(look.runs)
            self._counts["detections_carried"].inc(look.carried)
        record.frames_decoded = reader.info.frames_decoded
        record.frames_skipped = reader.info.frames_skipped
        self._counts["frames_skipped"].inc(reader.info.frames_skipped)

    def _aligned(self, video_id: str, frame, faces) -> list[tuple[Sighting, np.ndarray]]:
        """Each face's sighting with its crop aligned from this frame (a carried face's too)."""
        aligned = []
        size, hfov = frame.image.shape[1::-1], self._settings.attention.camera_hfov_deg
        for face in faces:
            crop = align_face(frame.image, face.landmarks, self._template, self._size)
            front = float(frontalness(face.landmarks))
            yaw, pitch = head_pose(face.landmarks, size, hfov) or (None, None)
            sighting = Sighting(video_id, frame.index, frame.t_s, face, front, yaw, pitch)
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


class PublishVideo(beam.DoFn):
    """Track one video's faces, aggregate visitors and publish its rows in every table; the
    manifest comes as a side input (a video that moved partitions leaves its old files)."""

    def __init__(self, settings: Settings, run: RunOptions, classes: dict):
        self._settings = settings
        self._run = run
        self._classes = classes  # the model's class names by head (ModelSpec.heads)
        self._timers = {n: Metrics.distribution(NAMESPACE, f"{n}_ms") for n in ("track", "write")}
        # The run's summary comes from these counters where the output is not local.
        self._counts = {
            n: Metrics.counter(NAMESPACE, n)
            for n in ("visitors", "videos_ok", "videos_failed", "video_ms")
        }

    def process(self, element, manifest: dict):
        video_id, grouped = element
        record: VideoRecord | None = next(iter(grouped["records"]), None)
        if record is None:  # AnalyseVideo emits faces only for wanted dates, with their record
            log.error("%s: faces without a video record: not published", video_id)
            return
        started = time.perf_counter()
        observations = list(grouped["faces"]) if record.status == STATUS_OK else []
        if len(observations) != record.faces_detected and record.status == STATUS_OK:
            record.status = STATUS_FAILED
            record.error = (
                f"{len(observations)} of {record.faces_detected} face predictions came back "
                "from the model: not published short"
            )
            observations = []
        s = self._settings
        tracks = track_faces(observations, s.tracker)
        interval = record.sample_interval_s
        needed = frames_needed(s.visitors, 1.0 / s.decode.fps, interval)
        visitors = [
            aggregate(t, s.visitors, interval, needed, self._classes, s.attention) for t in tracks
        ]
        kept = [v for v in visitors if v is not None]
        t_tracked = time.perf_counter()
        self._timers["track"].update(int((t_tracked - started) * 1000))
        video = record.video
        day = record.start_time.date()
        key = rows.VideoKey(video_id, uuid.uuid4().hex, video.path, video.camera, day)
        row = self._publish(key, record, tracks, kept, started)
        previous = manifest.get(record.video.path)
        if previous and (previous.date, previous.camera) != (key.date, key.camera):
            remove_video(self._run.output, previous.date, previous.camera, video_id)
        self._timers["write"].update(int((time.perf_counter() - t_tracked) * 1000))
        self._count(record, row, len(kept))
        yield row

    def _publish(self, key: rows.VideoKey, record: VideoRecord, tracks, kept, started) -> dict:
        """Every table's file for the video; the ``videos`` row last, as the commit record
        (its processing time counts from ``started``, this step's start, on top of decoding)."""
        out, day, camera, name = self._run.output, key.date, key.camera, key.video_id
        publish(out, "visitors", rows.visitor_rows(key, kept, record.start_time), day, camera, name)
        if self._settings.output.detections:
            kept_ids = {v.track_id for v in kept}
            detections = rows.detection_rows(
                key, record.start_time, tracks, kept_ids, self._classes
            )
            publish(out, "detections", detections, day, camera, name)
        row = rows.video_row(
            key,
            record,
            len(tracks),
            len(kept),
            watchers=sum(v.watcher for v in kept),
            run_id=self._run.run_id,
            model_version=self._run.model_version,
            detector_version=self._run.detector_version,
            processing_s=record.seconds + (time.perf_counter() - started),
        )
        publish(out, "videos", [row], day, camera, name)
        return row

    def _count(self, record: VideoRecord, row: dict, visitors: int) -> None:
        self._counts["visitors"].inc(visitors)
        if record.status == STATUS_OK:
            self._counts["videos_ok"].inc()
            self._counts["video_ms"].inc(round((row["duration_s"] or 0) * 1000))
            outcome = f"{visitors} visitors"
        else:
            self._counts["videos_failed"].inc()
            # Each failure is reported once: the job's summary lists local outputs' failures
            # with their reasons; for other outputs it has only counters, so the reason is here.
            outcome = f"failed: {record.error}" if is_remote(self._run.output) else "failed"
        # One plain line per video, printed by whichever worker process published it: one
        # write with its newline (print writes the two apart), so workers' lines never interleave.
        sys.stderr.write(
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} {record.video.path}: {outcome} "
            f"({record.frames_analysed} frames, {row['processing_s']:.1f} s)\n"
        )
        sys.stderr.flush()
