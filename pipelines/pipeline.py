"""The analysis as one Apache Beam pipeline: videos in, Parquet tables out.

    match files → select (new or changed; the manifest as a side input) → reshuffle
      → AnalyseVideo (decode, detect, align; one video per call, frames never leave it)
          ├ face batches → RunInference (the multi-task face model) → observations
          └ the video's record
      → group by video → PublishVideo (track, aggregate, write)

``build`` adds the steps to a pipeline; ``jobs.analyze`` creates the pipeline with the runner
(``pipelines.runner``) and runs it. The same pipeline runs on any Beam runner.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from pipelines import inputs
from pipelines.analyse import (
    AnalyseVideo,
    batch_for_model,
    is_face_batch,
    is_record,
    to_observations,
)
from pipelines.predictions import FaceModelHandler
from pipelines.settings import RunOptions, Settings
from pipelines.steps import PublishVideo, SelectVideos
from schemas.manifest import ManifestEntry
from schemas.model_file import ModelSpec


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
    # Pre-batched (AnalyseVideo batches the crops): Beam's BatchElements would hold each bundle's
    # last example until finish_bundle, whose output Beam 2.77's Dask runner drops.
    handler = KeyedModelHandler(FaceModelHandler(m.path, threads=m.threads)).with_no_batching()
    known = beam.pvalue.AsDict(pipeline | "Manifest" >> beam.Create(sorted(manifest.items())))
    videos = (
        pipeline
        | "Patterns" >> beam.Create(inputs.match_patterns(input_path))
        | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW)
        | "ByPath" >> beam.Map(lambda meta: (meta.path, meta))
        | "Dedup" >> beam.CombinePerKey(lambda metas: next(iter(metas)))
        | "Values" >> beam.Values()
        | "Select" >> beam.ParDo(SelectVideos(settings, run), known)
    )
    # Entries Beam's match passes over (broken links): each becomes a failed video.
    unreadable = inputs.unreadable_entries(input_path, settings.input.extensions)
    videos = (
        (videos, pipeline | "Unreadable" >> beam.Create(unreadable))
        | "AllVideos" >> beam.Flatten()
        | "Spread" >> beam.Reshuffle()
    )
    analyse = AnalyseVideo(settings, spec.crop_template, spec.input_size, run, m.batch_max)
    analysed = videos | "Analyse" >> beam.ParDo(analyse)
    records = analysed | "Records" >> beam.Filter(is_record)
    faces = (
        analysed
        | "FaceBatches" >> beam.Filter(is_face_batch)
        | "ForModel" >> beam.Map(batch_for_model)
        | "Infer" >> RunInference(handler)
        | "Observations" >> beam.FlatMapTuple(to_observations)
    )
    return (
        {"faces": faces, "records": records}
        | "ByVideo" >> beam.CoGroupByKey()
        | "Publish" >> beam.ParDo(PublishVideo(settings, run, spec.heads), known)
    )
