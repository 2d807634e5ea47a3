"""The analysis as one Apache Beam pipeline: videos in, Parquet tables out.

    match files → select (new/changed, wanted date) → reshuffle
      → AnalyseVideo (decode, detect, align; one DoFn per video, frames never leave it)
      → RunInference (the multi-task face model, batched)
      → group by video with its decode record → PublishVideo (track, aggregate, write)

Everything a worker needs travels in the DoFns (settings, model spec, manifest); models are loaded
in ``setup``/the model handler, paths go through Beam FileSystems. That keeps the same pipeline
runnable on DirectRunner, PortableRunner, Flink, Spark or Dataflow.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from tqdm import tqdm

from common.paths import is_remote
from pipelines import inputs
from pipelines.crops import align_face, frontalness
from pipelines.faces import create_detector
from pipelines.frames import Prefetcher, VideoError, VideoReader
from pipelines.predictions import FaceModelHandler, FacePrediction
from pipelines.settings import Settings
from pipelines.tables import publish, remove_video
from pipelines.tracks import Observation, track_faces
from pipelines.visitors import aggregate, frames_needed
from schemas import STATUS_FAILED, STATUS_OK
from schemas.model_file import ModelSpec

log = logging.getLogger(__name__)
NAMESPACE = "kiosk"


@dataclass(frozen=True)
class RunOptions:
    """What one run of the job was asked to do, beyond the settings."""

    output: str
    run_id: str
    model_version: str
    detector_version: str
    force: bool = False
    reprocess_model_changes: bool = False
    dates: tuple[date, ...] | None = None  # only videos starting on these dates
    since: date | None = None  # only videos starting on or after this date
    progress: bool = False  # progress bar per video (terminal)


@dataclass(frozen=True)
class ManifestEntry:
    """What the output already holds for an input path (its latest ``videos`` row)."""

    size_bytes: int
    mtime: float
    fingerprint: str
    model_version: str
    status: str
    date: date
    camera: str


@dataclass(frozen=True)
class FaceKey:
    """Identity of a face crop on its way through RunInference."""

    video_id: str
    frame_index: int
    t_s: float
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    frontalness: float


@dataclass(frozen=True)
class StreamFacts:
    """What the container says about its video stream, as the videos table keeps it; all None
    for a file that did not open."""

    duration_s: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    rotation: int | None = None
    codec: str | None = None


@dataclass
class VideoRecord:
    """Everything known about one video after decoding, before its faces are tracked."""

    video: inputs.VideoFile
    start_time: datetime
    start_time_source: str
    fingerprint: str
    status: str
    error: str | None
    stream: StreamFacts
    frames_decoded: int
    frames_analysed: int
    faces_detected: int
    seconds: float
    sample_interval_s: float


def needs_analysis(
    video: inputs.VideoFile, entry: ManifestEntry | None, run: RunOptions
) -> tuple[bool, str]:
    """Whether a matched file must be (re)analysed, and why: the incremental rule."""
    if run.force:
        return True, "forced"
    if entry is None:
        return True, "new"
    if entry.status != STATUS_OK:
        return True, "failed before"
    touched = entry.size_bytes != video.size_bytes or abs(entry.mtime - video.mtime) > 1e-3
    # A touched file whose content fingerprint is unchanged (copied, re-synced) is not new work.
    if touched:
        try:
            changed = entry.fingerprint != inputs.fingerprint(video)
        except OSError:  # unreadable now: analysing it records the failure in the videos table
            return True, "unreadable"
        if changed:
            return True, "changed"
    if run.reprocess_model_changes and entry.model_version != run.model_version:
        return True, "model changed"
    return False, "unchanged"


def _date_wanted(day: date, run: RunOptions) -> bool:
    if run.dates is not None and day not in run.dates:
        return False
    return run.since is None or day >= run.since


class SelectVideos(beam.DoFn):
    """Keep the matched files that are videos and need analysis under the incremental rule."""

    def __init__(self, settings: Settings, run: RunOptions, manifest: dict[str, ManifestEntry]):
        self._settings = settings
        self._run = run
        self._manifest = manifest
        self._skipped = Metrics.counter(NAMESPACE, "videos_unchanged")

    def process(self, meta: FileMetadata):
        if not inputs.has_video_extension(meta.path, self._settings.input.extensions):
            return
        video = inputs.video_file(meta.path, meta.size_in_bytes, meta.last_updated_in_seconds)
        wanted, reason = needs_analysis(video, self._manifest.get(video.path), self._run)
        if wanted:
            yield video
        else:
            self._skipped.inc()


class AnalyseVideo(beam.DoFn):
    """Decode one video, detect and align its faces; yields crops and, last, a VideoRecord."""

    RECORDS = "records"

    def __init__(self, settings: Settings, spec: ModelSpec, run: RunOptions):
        self._settings = settings
        self._template = np.asarray(spec.crop_template, np.float32)
        self._size = spec.input_size
        self._run = run
        self._detector = None
        self._timers = {
            name: Metrics.distribution(NAMESPACE, f"{name}_ms")
            for name in ("decode", "detect", "align")
        }
        self._faces = Metrics.counter(NAMESPACE, "faces_detected")
        self._not_dated = Metrics.counter(NAMESPACE, "videos_outside_dates")

    def setup(self):
        d = self._settings.detector
        self._detector = create_detector(d.name, **d.detector_options())

    def process(self, video: inputs.VideoFile):
        started = time.perf_counter()
        interval = 1.0 / self._settings.decode.fps
        pattern, zone = self._settings.input.start_time_pattern, self._settings.input.timezone
        # File name or mtime until the container's creation_time is known: a file that cannot
        # be opened still lands in the right day's partition when its name carries the time.
        first_guess = inputs.start_time(video, pattern, None, zone)
        record = VideoRecord(
            video=video,
            start_time=first_guess[0],
            start_time_source=first_guess[1],
            fingerprint="",
            status=STATUS_OK,
            error=None,
            stream=StreamFacts(),
            frames_decoded=0,
            frames_analysed=0,
            faces_detected=0,
            seconds=0.0,
            sample_interval_s=interval,
        )
        try:
            if video.size_bytes == 0:
                raise VideoError("empty file (0 bytes)")
            record.fingerprint = inputs.fingerprint(video)
            with self._open(video) as reader:
                record.sample_interval_s = reader.sample_interval_s
                record.start_time, record.start_time_source = inputs.start_time(
                    video, pattern, reader.info.creation_time, zone
                )
                if not _date_wanted(record.start_time.date(), self._run):
                    self._not_dated.inc()
                    return
                yield from self._faces_of(video, reader, record)
                record.stream = _stream_facts(reader)
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
        if record.status == STATUS_FAILED:
            if not _date_wanted(record.start_time.date(), self._run):
                # Dated by name or mtime only: outside the run's dates it is not this run's
                # failure (a nightly --since run must not report an old broken file every night).
                self._not_dated.inc()
                return
            log.warning("%s: failed: %s", video.path, record.error)
        yield beam.pvalue.TaggedOutput(self.RECORDS, (video.video_id, record))

    def _open(self, video: inputs.VideoFile) -> VideoReader:
        threads = self._settings.decode.threads
        fps = self._settings.decode.fps
        if not is_remote(video.path):
            return VideoReader(video.path, fps, threads)
        stream = FileSystems.open(video.path, compression_type=CompressionTypes.UNCOMPRESSED)
        return VideoReader(stream, fps, threads)

    def _faces_of(self, video, reader: VideoReader, record: VideoRecord):
        min_score = self._settings.detector.min_score
        expected = int((reader.info.duration_s or 0) * self._settings.decode.fps) or None
        bar = tqdm(
            total=expected,
            desc=video.path.rsplit("/", 1)[-1][:30],
            unit="frame",
            disable=not self._run.progress,
            file=sys.stderr,
            leave=False,
        )
        frames = Prefetcher(reader.frames())
        # Summed over the video, not per frame: one face's alignment takes well under 1 ms.
        detect_s = align_s = 0.0
        try:
            for frame in frames:
                t1 = time.perf_counter()
                faces = [f for f in self._detector.detect(frame.image) if f.score >= min_score]
                detect_s += time.perf_counter() - t1
                for face in faces:
                    t2 = time.perf_counter()
                    crop = align_face(frame.image, face.landmarks, self._template, self._size)
                    key = FaceKey(
                        video_id=video.video_id,
                        frame_index=frame.index,
                        t_s=frame.t_s,
                        box=tuple(float(v) for v in face.box),
                        score=float(face.score),
                        landmarks=np.asarray(face.landmarks, np.float32),
                        frontalness=float(frontalness(face.landmarks)),
                    )
                    align_s += time.perf_counter() - t2
                    # A runner that fuses the next steps runs them (batching, inference) inside
                    # this yield, so the align timer stops before it: infer has its own.
                    yield key, crop
                record.frames_analysed += 1
                record.faces_detected += len(faces)
                self._faces.inc(len(faces))
                bar.update(1)
        finally:  # a video that fails part-way still reports the time it took
            bar.close()
            # Decoding ran in the prefetch thread, overlapping detection; this is its own time.
            self._timers["decode"].update(int(frames.busy_s * 1000))
            self._timers["detect"].update(int(detect_s * 1000))
            self._timers["align"].update(int(align_s * 1000))
        record.frames_decoded = reader.info.frames_decoded


def _stream_facts(reader: VideoReader) -> StreamFacts:
    info = reader.info
    return StreamFacts(
        duration_s=reader.duration_s,
        fps=info.fps,
        width=info.width,
        height=info.height,
        rotation=info.rotation,
        codec=info.codec,
    )


def to_observation(keyed: tuple[FaceKey, FacePrediction]) -> tuple[str, Observation]:
    key, prediction = keyed
    return key.video_id, Observation(
        frame_index=key.frame_index,
        t_s=key.t_s,
        box=key.box,
        score=key.score,
        landmarks=key.landmarks,
        frontalness=key.frontalness,
        age=prediction.age,
        age_probs=prediction.age_probs,
        gender_prob=prediction.gender_prob,
    )


class PublishVideo(beam.DoFn):
    """Track one video's faces, aggregate visitors and publish its rows in every table."""

    def __init__(self, settings: Settings, run: RunOptions, manifest: dict[str, ManifestEntry]):
        self._settings = settings
        self._run = run
        self._manifest = manifest
        self._timers = {n: Metrics.distribution(NAMESPACE, f"{n}_ms") for n in ("track", "write")}
        # The run's summary comes from these counters, so it holds for output on any filesystem.
        self._counts = {
            n: Metrics.counter(NAMESPACE, n)
            for n in ("visitors", "videos_ok", "videos_failed", "video_ms")
        }

    def process(self, element):
        video_id, grouped = element
        record: VideoRecord | None = next(iter(grouped["records"]), None)
        if record is None:  # AnalyseVideo emits faces only for wanted dates, with their record
            log.error("%s: faces without a video record: not published", video_id)
            return
        started = time.perf_counter()
        observations = list(grouped["faces"]) if record.status == STATUS_OK else []
        tracks = track_faces(observations, self._settings.tracker)
        interval = record.sample_interval_s
        needed = frames_needed(self._settings.visitors, 1.0 / self._settings.decode.fps, interval)
        visitors = [aggregate(t, self._settings.visitors, interval, needed) for t in tracks]
        kept = [v for v in visitors if v is not None]
        t_tracked = time.perf_counter()
        self._timers["track"].update(int((t_tracked - started) * 1000))

        analysis_id = uuid.uuid4().hex
        video = record.video
        key = {
            "video_id": video_id,
            "analysis_id": analysis_id,
            "video": video.path,
            "camera": video.camera,
            "date": record.start_time.date(),
        }
        day, camera, out = key["date"], video.camera, self._run.output
        publish(
            out, "visitors", [key | v.row(record.start_time) for v in kept], day, camera, video_id
        )
        if self._settings.output.detections:
            rows = _detection_rows(key, record.start_time, tracks, {v.track_id for v in kept})
            publish(out, "detections", rows, day, camera, video_id)
        row = key | self._video_columns(record, len(tracks), len(kept))
        row["processing_s"] = record.seconds + (time.perf_counter() - started)
        publish(out, "videos", [row], day, camera, video_id)  # last: the commit record
        previous = self._manifest.get(video.path)
        if previous and (previous.date, previous.camera) != (day, camera):
            remove_video(out, previous.date, previous.camera, video_id)  # moved partitions
        self._timers["write"].update(int((time.perf_counter() - t_tracked) * 1000))
        self._counts["visitors"].inc(len(kept))
        if record.status == STATUS_OK:
            self._counts["videos_ok"].inc()
            self._counts["video_ms"].inc(round((row["duration_s"] or 0) * 1000))
        else:
            self._counts["videos_failed"].inc()
        # One plain line per video, printed by whichever worker process published it.
        outcome = (
            f"{len(kept)} visitors" if record.status == STATUS_OK else f"failed: {record.error}"
        )
        print(
            f"{time.strftime('%H:%M:%S')} {video.path}: {outcome} "
            f"({record.frames_analysed} frames, {row['processing_s']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        yield row

    def _video_columns(self, record: VideoRecord, tracks: int, kept: int) -> dict:
        video = record.video
        return {
            "run_id": self._run.run_id,
            "start_time": record.start_time,
            "start_time_source": record.start_time_source,
            "size_bytes": video.size_bytes,
            "mtime": datetime.fromtimestamp(video.mtime, UTC).replace(tzinfo=None),
            "fingerprint": record.fingerprint,
            **dataclasses.asdict(record.stream),
            "frames_decoded": record.frames_decoded,
            "frames_analysed": record.frames_analysed,
            "faces_detected": record.faces_detected,
            "tracks": tracks,
            "visitors": kept,
            "visitors_dropped": tracks - kept,
            "status": record.status,
            "error": record.error,
            # UTC, like mtime: the views keep a video's latest analysis by it, which a local
            # clock gets wrong across a DST fall-back hour or between workers in other zones.
            "processed_at": datetime.now(UTC).replace(tzinfo=None),
            "model_version": self._run.model_version,
            "detector_version": self._run.detector_version,
        }


def _detection_rows(key: dict, start: datetime, tracks, kept_ids: set[int]) -> list[dict]:
    rows = []
    for track in tracks:
        track_id = track.track_id if track.track_id in kept_ids else -1
        for o in track.observations:
            rows.append(
                key
                | {
                    "frame_index": o.frame_index,
                    "t_s": o.t_s,
                    "time": start + timedelta(seconds=o.t_s),
                    "track_id": track_id,
                    "x1": o.box[0],
                    "y1": o.box[1],
                    "x2": o.box[2],
                    "y2": o.box[3],
                    "score": o.score,
                    "landmarks": [float(v) for v in np.asarray(o.landmarks).reshape(-1)],
                    "face_px": o.size,
                    "frontalness": o.frontalness,
                    "age": o.age,
                    "gender_score": o.gender_prob,
                }
            )
    return rows


def build(
    pipeline: beam.Pipeline,
    input_path: str,
    settings: Settings,
    spec: ModelSpec,
    run: RunOptions,
    manifest: dict[str, ManifestEntry],
):
    """Add the analysis to ``pipeline``; returns the PCollection of published ``videos`` rows."""
    m = settings.model
    handler = KeyedModelHandler(
        FaceModelHandler(m.path, threads=m.threads, batch_min=m.batch_min, batch_max=m.batch_max)
    )
    videos = (
        pipeline
        | "Patterns" >> beam.Create(inputs.match_patterns(input_path))
        | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW)
        | "ByPath" >> beam.Map(lambda meta: (meta.path, meta))
        | "Dedup" >> beam.CombinePerKey(lambda metas: next(iter(metas)))
        | "Values" >> beam.Values()
        | "Select" >> beam.ParDo(SelectVideos(settings, run, manifest))
        | "Spread" >> beam.Reshuffle()
    )
    analysed = videos | "Analyse" >> beam.ParDo(AnalyseVideo(settings, spec, run)).with_outputs(
        AnalyseVideo.RECORDS, main="crops"
    )
    faces = (
        analysed.crops
        | "Infer" >> RunInference(handler)
        | "Observations" >> beam.Map(to_observation)
    )
    return (
        {"faces": faces, "records": analysed[AnalyseVideo.RECORDS]}
        | "ByVideo" >> beam.CoGroupByKey()
        | "Publish" >> beam.ParDo(PublishVideo(settings, run, manifest))
    )
