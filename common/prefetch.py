"""Run an iterator ahead in a background thread: the pipeline's stages overlap this way."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator


class Prefetcher:
    """Run an iterator ahead in a background thread, so its work overlaps the consumer's.

    FFmpeg, OpenCV and ONNX Runtime release the GIL, so on two cores the decoder, the detector
    and the model run at the same time (``AnalyseVideo`` chains two: decoding, then detection).
    ``busy_s`` is the time the thread spent producing items (waiting on an upstream prefetcher
    included); errors raised while producing are re-raised in the consumer.
    """

    _END = object()

    def __init__(self, items: Iterator, depth: int = 4, name: str = "frame-prefetch"):
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                item = next(self._items, self._END)
                self.busy_s += time.perf_counter() - started
                self._put(item)
                if item is self._END:
                    return
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator:
        try:
            while True:
                item = self._queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
