"""The pipeline's steps around the decoding (``pipelines.analyse``), wired by
``pipelines.pipeline``.

    SelectVideos   which matched files need analysing (the incremental rule, a side input)
    PublishVideo   track one video's faces, stitch fragments, aggregate visitors, publish
                   every table's rows

Everything a worker needs travels in the DoFns or as side inputs; models are loaded in
``setup`` or by RunInference's handler and paths go through Beam FileSystems, so any runner
can run them.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata
from apache_beam.metrics import Metrics

from common.paths import is_remote
from pipelines import inputs
from pipelines.analyse import NAMESPACE, VideoRecord
from pipelines.settings import RunOptions, Settings
from pipelines.stitching import stitch_tracks, track_group
from pipelines.tracks import track_faces
from pipelines.visitors import aggregate, frames_needed
from schemas import rows
from schemas.publish import publish, remove_video
from schemas.tables import STATUS_FAILED, STATUS_OK

log = logging.getLogger(__name__)


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
        if s.identity.stitch:
            tracks = stitch_tracks(tracks, s.identity.stitch_window_s)
        interval = record.sample_interval_s
        needed = frames_needed(s.visitors, 1.0 / s.decode.fps, interval)
        kept = []
        for track in tracks:
            visitor = aggregate(track, s.visitors, interval, needed, self._classes, s.attention)
            if visitor is not None and record.person_ids:
                person = record.person_ids.get(track_group(track))
                visitor = dataclasses.replace(visitor, person_id=person)
            if visitor is not None:
                kept.append(visitor)
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
