"""Bend 7 of ``pipelines.runner``: the job on Dask, Beam's DaskRunner with four parts replaced.

Checked against Apache Beam 2.77.0 with dask and distributed 2026.8.0. Beam's Dask translation
(``apache_beam/runners/dask``) has four defects this module works around, each by replacing
one part of it, so each can go when Beam fixes it:

a. **ParDo output is collected before ``finish_bundle``**, so what a step emits there is lost
   (RunInference's BatchElements flushes its last batch there), and a multi-output ParDo's
   whole output reaches every consumer. ParDos run here (``_bundle``): output taken after
   ``finish_bundle``, a ParDo with several outputs refused, and each task gets a DoFn of its
   own (Beam's shares one between the tasks of a worker's threads).
b. **Side inputs are computed inside each task**, a nested computation per task that waits on
   the cluster from a worker thread and can starve a cluster whose threads all wait. Here each
   side input is computed once, as an input of the tasks that read it.
c. **Reshuffle is dropped**, so every element stays in the partition of the Create it came from:
   this pipeline's one pattern is one partition, and one worker analyses every video. Here a
   Reshuffle is materialised in the driver and spread one element per partition (at most
   ``--dask_npartitions``, default 256, or ``--dask_partition_size`` each). Right for this
   pipeline's file records; a pipeline reshuffling bulk data would need another translation.
d. **No metrics**: each task here logs its Beam counters to the scheduler as an event, and the
   result sums them (attempted values: Dask reruns the tasks of a worker it lost).

The cluster is a local one of ``workers`` processes unless ``--dask_client_address`` or
``--dask_scheduler_file`` names one; the job closes its client (and a local cluster) when the
run ends. Like ``pipelines.runner``, this module imports Beam and Dask inside its functions.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid

MAX_PARTITIONS = 256  # a Reshuffle's partitions without --dask_npartitions (c)


def make_runner(workers: int, verbose: bool, setup_worker):
    """Beam's DaskRunner with this module's translation; a local cluster's worker processes
    call ``setup_worker(verbose)`` first."""
    import dask
    import dask.distributed as dd
    from apache_beam.runners.dask import dask_runner, overrides

    class Runner(dask_runner.DaskRunner):
        def run_pipeline(self, pipeline, options):
            config = options.view_as(dask_runner.DaskOptions).get_all_options(
                drop_default=True, current_only=True
            )
            bag_kwargs = dask_runner.DaskOptions._extract_bag_kwargs(config)
            cluster = None
            if not config.get("address") and not config.get("scheduler_file"):
                cluster = _local_cluster(workers, verbose)
                config["address"] = cluster
            client = dd.Client(**config)
            topic = f"beam-metrics-{uuid.uuid4().hex}"  # this run's, on a scheduler of many
            try:
                if cluster is not None:
                    client.register_plugin(_worker_setup(setup_worker, verbose))
                pipeline.replace_all(overrides.dask_overrides())
                visitor = _visitor(client, bag_kwargs, topic)
                pipeline.visit(visitor)  # runs what comes before a Reshuffle (c)
                # The last step's bag depends on all the others (as Beam's DaskRunner has it).
                futures = client.compute(dask.optimize(list(visitor.bags.values())[-1]))
            except BaseException:
                _close(client, cluster)
                raise
            return _result(client, cluster, futures, topic)

    return Runner()


def _local_cluster(workers: int, verbose: bool):
    """``workers`` single-threaded processes on this machine, no dashboard. Their Dask notes are
    set before they import Dask, which would set them to show."""
    import dask
    import dask.distributed as dd

    level = "info" if verbose else "warning"
    env = {"distributed.nanny.pre-spawn-environ.DASK_LOGGING__DISTRIBUTED": level}
    with dask.config.set(env):
        return dd.LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)


def _worker_setup(setup_worker, verbose: bool):
    """A local cluster's worker processes: the job's set-up (logging, Ctrl-C), and leaving
    through ``os._exit`` once their work is done (as ``pipelines.runner``'s own workers do):
    their interpreter's exit prints DuckDB's leaked objects (the job's module, imported again
    as their main one, holds them) and is slow enough on a busy machine for Dask to kill
    them."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class WorkerSetup(WorkerPlugin):
        name = "kiosk-worker-setup"

        def setup(self, worker):
            import atexit

            setup_worker(verbose)
            atexit.register(_exit_now)

    return WorkerSetup()


def _exit_now() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _close(client, cluster) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


def _visitor(client, bag_kwargs: dict, topic: str):
    """Beam's Dask translation with ParDo (a, b, d) and Reshuffle (c) replaced."""
    import apache_beam as beam
    import dask
    import dask.bag as db
    from apache_beam.internal import pickler
    from apache_beam.runners.dask import dask_runner, overrides

    def pardo(node, bags):
        if len(node.outputs) > 1:
            raise NotImplementedError(f"{node.full_label}: a ParDo of several outputs on Dask")
        args, kwargs = node.transform.raw_side_inputs
        sides = [(type(s), s._view_options(), s._window_mapping_fn) for s in node.side_inputs]
        windowfn = node.inputs[0].windowing.windowfn
        spec = pickler.dumps((node.transform.fn, node.full_label, windowfn, args, kwargs, sides))
        values = [dask.delayed(list)(bags[s.pvalue.producer]) for s in node.side_inputs]
        return bags[node.inputs[0].producer].map_partitions(_bundle, spec, topic, *values)

    def reshuffle(bag):
        elements = client.compute(bag).result()
        if bag_kwargs.get("partition_size"):
            return db.from_sequence(elements, partition_size=bag_kwargs["partition_size"])
        limit = bag_kwargs.get("npartitions") or MAX_PARTITIONS
        return db.from_sequence(elements, npartitions=max(1, min(len(elements), limit)))

    class Visitor(type(dask_runner.DaskRunner.to_dask_bag_visitor(bag_kwargs))):
        def visit_transform(self, node) -> None:
            if type(node.transform) is beam.ParDo:  # subclasses stay Beam's (GroupByKey's)
                self.bags[node] = pardo(node, self.bags)
            elif type(node.transform) is overrides._Reshuffle:
                self.bags[node] = reshuffle(self.bags[node.inputs[0].producer])
            else:
                super().visit_transform(node)

    return Visitor()


def _bundle(items, spec: bytes, topic: str, *side_values) -> list:
    """One ParDo over one Dask partition, in a worker: a DoFn of its own, the output taken after
    ``finish_bundle``, its counters logged to the scheduler (a, b, d)."""
    items = list(items)
    if not items:  # most partitions after a spread Reshuffle: no set-up for nothing
        return []
    from apache_beam.internal import pickler
    from apache_beam.runners import common
    from apache_beam.runners.dask.transform_evaluator import OneReceiver, get_windowed_value
    from apache_beam.transforms.core import DoFn
    from apache_beam.transforms.sideinputs import SideInputMap

    fn, label, windowfn, args, kwargs, sides = pickler.loads(spec)
    out = OneReceiver()
    handler = common._OutputHandler(windowfn, out[None], out, None, None, False, False)
    side_inputs = [
        SideInputMap(view, options, [get_windowed_value(v, mapping) for v in values])
        for (view, options, mapping), values in zip(sides, side_values, strict=True)
    ]
    invoker = common.DoFnInvoker.create_invoker(
        common.DoFnSignature(fn),
        handler,
        common.DoFnContext(label, state=None),
        side_inputs,
        list(args),
        kwargs,
        user_state_context=None,
        bundle_finalizer_param=DoFn.BundleFinalizerParam(),
    )
    with _metrics_logged(label, topic):
        invoker.invoke_setup()
        invoker.invoke_start_bundle()
        for item in items:
            invoker.invoke_process(get_windowed_value(item, windowfn))
        invoker.invoke_finish_bundle()
        invoker.invoke_teardown()
    return [v.value for v in out.values]


@contextlib.contextmanager
def _metrics_logged(label: str, topic: str):
    """The Beam metrics of the code inside, logged under ``topic`` on the scheduler (d)."""
    from apache_beam.metrics.execution import MetricsContainer
    from apache_beam.runners.worker import statesampler
    from apache_beam.utils.counters import CounterFactory
    from distributed import get_worker

    container, sampler = MetricsContainer(label), statesampler.StateSampler("", CounterFactory())
    statesampler.set_current_tracker(sampler)
    try:
        with sampler.scoped_state(label, "process", metrics_container=container):
            yield
    finally:
        statesampler.set_current_tracker(None)
    done = container.get_cumulative()
    counters = [[k.step, k.metric.namespace, k.metric.name, v] for k, v in done.counters.items()]
    dists = [
        [k.step, k.metric.namespace, k.metric.name, d.sum, d.count, d.min, d.max]
        for k, d in done.distributions.items()
    ]
    get_worker().log_event(topic, {"counters": counters, "distributions": dists})


def _result(client, cluster, futures, topic: str):
    """Beam's Dask result, with the run's metrics (d), closing the client (and a local
    cluster) at the end."""
    from apache_beam.runners.dask import dask_runner

    class Result(dask_runner.DaskRunnerResult):
        _metrics = None

        def wait_until_finish(self, duration=None):
            try:
                state = super().wait_until_finish(duration)
                self._metrics = _metric_results(client.get_events(topic))
                return state
            finally:
                _close(client, cluster)

        def metrics(self):
            return self._metrics

    return Result(client, futures)


def _metric_results(events):
    """Beam's MetricResults of the tasks' logged metrics, summed (attempted only)."""
    from apache_beam.metrics.cells import DistributionData, DistributionResult
    from apache_beam.metrics.execution import MetricKey, MetricResult
    from apache_beam.metrics.metric import MetricResults
    from apache_beam.metrics.metricbase import MetricName

    counters, dists = {}, {}
    for _, event in events:
        for step, namespace, name, value in event.get("counters", []):
            key = MetricKey(step, MetricName(namespace, name))
            counters[key] = counters.get(key, 0) + value
        for step, namespace, name, *data in event.get("distributions", []):
            key, add = MetricKey(step, MetricName(namespace, name)), DistributionData(*data)
            dists[key] = dists[key].combine(add) if key in dists else add

    class Results(MetricResults):
        def query(self, filter=None):
            return {
                self.COUNTERS: [
                    MetricResult(k, None, v) for k, v in counters.items() if self.matches(filter, k)
                ],
                self.DISTRIBUTIONS: [
                    MetricResult(k, None, DistributionResult(d))
                    for k, d in dists.items()
                    if self.matches(filter, k)
                ],
                self.GAUGES: [],
            }

    return Results()
