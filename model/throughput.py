"""ONNX Runtime CPU throughput of a face model (torch-free; ``jobs.export`` reports it)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from common.sessions import cpu_session
from schemas.model_file import INPUT_NAME


def throughput(
    onnx_path: str | Path, batch: int, threads: int, seconds: float = 3.0, size: int | None = None
) -> float:
    """Faces/s at a batch size and intra-op thread count (random inputs, after one warm-up run).

    Runs for at least ``seconds``; the figure is the median of per-run rates, robust to other
    processes briefly taking the CPU."""
    sess = cpu_session(onnx_path, threads)
    if size is None:
        size = int(sess.get_inputs()[0].shape[2])
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    sess.run(None, {INPUT_NAME: x})
    rates, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(rates) < 3:
        t = time.perf_counter()
        sess.run(None, {INPUT_NAME: x})
        rates.append(batch / (time.perf_counter() - t))
    return float(np.median(rates))


def benchmark_table(path, batches=(1, 32), threads=(1, 2), seconds: float = 3.0) -> dict:
    """``{"batch=B threads=T": faces/s}`` for ONNX Runtime on the CPU."""
    return {
        f"batch={b} threads={t}": round(throughput(path, b, t, seconds), 1)
        for b in batches
        for t in threads
    }
