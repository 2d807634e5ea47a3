"""The job on Beam's DaskRunner (pipelines/dask_runner.py): the local runner's rows on real clips,
reruns, the summary from Dask's metrics, and the parts of Beam's Dask translation replaced."""

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import apache_beam as beam
import pytest
from conftest import SHARED_DATA, SHIPPED_MODEL, needs_shared_data

from jobs import analyze
from jobs.cli import run as run_cli
from pipelines import dask_runner, runner
from schemas.lock import LOCK_NAME
from schemas.manifest import read_manifest
from schemas.views import connect

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="dask not installed: pip install -e '.[dask]'",
)
SMALL_FACES = "detector: {min_face_px: 12, min_score: 0.9}\nvisitors: {min_face_px: 12}\n"
# What differs between two analyses of the same video by design: ids and timings.
PER_RUN = {"run_id", "analysis_id", "processing_s", "processed_at"}
STAGES = {"decode", "detect", "align", "embed", "infer", "track", "write"}


def table_rows(out: Path, table: str) -> list[tuple]:
    con = connect(str(out))
    columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] not in PER_RUN]
    return con.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY ALL").fetchall()


def analyse(clips: Path, out: Path, *extra: str) -> dict:
    argv = ["--input", str(clips), "--output", str(out), "--config", str(clips / "site.yaml")]
    args, beam_args = analyze.parse_args([*argv, "--no-progress", *extra])
    return analyze.analyse(args, beam_args)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    for gif in sorted((SHARED_DATA / "videos").glob("*.gif")):
        shutil.copy(gif, root / gif.name)
    (root / "site.yaml").write_text(SMALL_FACES)
    return root


@needs_shared_data("videos/classroom.gif")
@pytest.mark.skipif(not SHIPPED_MODEL.exists(), reason="shipped model not built yet")
def test_dask_gives_the_local_runners_rows_and_a_rerun_finds_them_unchanged(clips, tmp_path):
    direct = analyse(clips, tmp_path / "direct", "--workers", "1")
    dask = analyse(clips, tmp_path / "dask", "--runner", "DaskRunner", "--workers", "2")
    assert direct["videos_ok"] == dask["videos_ok"] == 3
    assert direct["visitors"] == dask["visitors"] > 0
    for table in ("videos", "visitors"):
        assert table_rows(tmp_path / "dask", table) == table_rows(tmp_path / "direct", table)
    assert read_manifest(str(tmp_path / "dask")) == read_manifest(str(tmp_path / "direct"))
    # The summary's stage times and counters come from Dask now (Beam's DaskRunner has none).
    assert set(dask["stages_ms"]) == STAGES and dask["stages_ms"]["detect"] > 0
    assert (
        not list((tmp_path / "dask").rglob("*.tmp"))
        and not (tmp_path / "dask" / LOCK_NAME).exists()
    )

    again = analyse(clips, tmp_path / "dask", "--runner", "dask", "--workers", "2")
    assert (again["videos_ok"], again["videos_failed"], again["videos_unchanged"]) == (0, 0, 3)
    assert table_rows(tmp_path / "dask", "videos") == table_rows(tmp_path / "direct", "videos")


def test_dask_options_are_known_to_the_option_check():
    flags = ["--dask_client_address=tcp://10.0.0.5:8786", "--dask_npartitions=64"]
    options = runner.pipeline_options("DaskRunner", 1, flags).get_all_options()
    assert (options["address"], options["npartitions"]) == ("tcp://10.0.0.5:8786", 64)
    assert (
        runner.shows_progress_here("DaskRunner", runner.pipeline_options("dask", 1, flags)) is False
    )
    assert runner.shows_progress_here("DaskRunner", runner.pipeline_options("dask", 1, [])) is True


def test_a_held_lock_stops_a_dask_run_before_its_cluster_starts(clips, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    argv = ["--input", str(clips), "--output", str(out), "--runner", "dask", "--no-progress"]
    assert run_cli(analyze.main, argv) == 2
    assert "another analysis" in capsys.readouterr().err
    assert not (out / "videos").exists()


@pytest.fixture(scope="module")
def scheduler():
    """A cluster of two worker processes the job reaches by --dask_client_address."""
    import dask.distributed as dd

    with dd.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with dd.Client(cluster) as client:
            client.register_plugin(dask_runner._worker_setup(runner._dask_worker_setup, False))
        yield cluster.scheduler_address


class HoldToTheEnd(beam.DoFn):
    """Emits everything in finish_bundle, as BatchElements does with a bundle's last batch."""

    def start_bundle(self):
        self.held = []

    def process(self, element):
        beam.metrics.Metrics.counter("test", "held").inc()
        time.sleep(0.2)  # long enough for both workers to take tasks
        self.held.append((element, os.getpid()))

    def finish_bundle(self):
        for element, pid in self.held:
            yield beam.transforms.window.GlobalWindows.windowed_value((element, pid))


def write_down(element, tens: dict, folder: str):
    (value, pid) = element
    Path(folder, f"{value}-{tens[value]}-{pid}").write_text("")


def dask_pipeline(address: str):
    options = runner.pipeline_options("dask", 1, [f"--dask_client_address={address}"])
    return beam.Pipeline(runner=runner.make_runner("dask", 1, options), options=options)


def test_finish_bundle_output_side_inputs_reshuffle_and_metrics_on_dask(scheduler, tmp_path):
    p = dask_pipeline(scheduler)
    tens = beam.pvalue.AsDict(p | "Tens" >> beam.Create([(i, i * 10) for i in range(6)]))
    _ = (
        p
        | beam.Create(range(6))
        | beam.Reshuffle()
        | beam.ParDo(HoldToTheEnd())
        | beam.Map(write_down, tens, str(tmp_path))
    )
    result = runner.run_pipeline(p)
    written = [name.split("-") for name in os.listdir(tmp_path)]
    assert sorted((int(v), int(t)) for v, t, _ in written) == [(i, i * 10) for i in range(6)]
    assert len({pid for _, _, pid in written}) == 2  # the Reshuffle spread them over both
    (held,) = result.metrics().query(beam.metrics.MetricsFilter().with_name("held"))["counters"]
    assert held.attempted == 6


def test_a_pardo_with_several_outputs_is_refused_on_dask(scheduler):
    p = dask_pipeline(scheduler)
    _ = p | beam.Create([1]) | beam.ParDo(HoldToTheEnd()).with_outputs("other", main="main")
    with pytest.raises(NotImplementedError, match="a ParDo of several outputs on Dask"):
        runner.run_pipeline(p)
