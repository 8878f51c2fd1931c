"""A bounded queue that takes work off the app's thread: what ``LLMMeterSpanProcessor.on_end`` defers.

Turning a finished span into metrics costs far more than the span's own bookkeeping: reading a dozen
attributes, label sets, the counters' sums, and three or four OTel SDK histogram records (tens of
microseconds each, most of it the SDK's attribute checks). None of that needs to happen while the app
waits for its LLM call, only before a metric reader looks. So ``on_end`` appends the span here (one
deque append), and the work runs:

* when a metric collection starts, on the reader's thread, *before* the SDK takes its collection lock
  (:func:`drain_before_collect`), so a reader sees every span that ended before it collected;
* on a daemon thread, once ``wake_at`` items are waiting (started then, never for a quiet app), in
  chunks that release the GIL in between so the app's threads are not held up by a backlog;
* on the app's thread, inline, when ``max_queued`` items are already waiting (backpressure: nothing is
  dropped, and memory stays bounded whatever the call rate);
* at ``close()`` (span processor shutdown and force_flush drain too).

``drain()`` works under a lock, so a drain that finds the queue empty has also waited for any item the
thread had already taken. The thread holds the queue weakly; after a fork the child gets a fresh lock,
starts its own thread, and drops the items queued before the fork (they are the parent's: the parent
counts them).

Fork safety. The OTel SDK runs observable callbacks while it holds its collection lock
(``SynchronousMeasurementConsumer._lock``, opentelemetry-sdk 1.45
``opentelemetry/sdk/metrics/_internal/measurement_consumer.py``), and does not re-create that lock in a
forked child. Draining there (tens of microseconds per span) held it for ~2 % of the time in a busy
process, and a child forked at such a moment inherited it locked: its reader's next collection, at the
latest the one at exit, waited forever. So the drain happens before the SDK's ``collect``, and around a
fork the lock of every MeterProvider drained here is taken by the forking thread (bounded wait) and
released on both sides, so a child never starts with it held. A periodic reader's export lock (held
while exporting, possibly for seconds) is re-created in the child instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

_log = logging.getLogger(__name__)

WAKE_AT = 512  # items queued before the background thread is woken (started on first need)
# Items queued at most (the SDK's BatchSpanProcessor queues as many spans); beyond it the app's thread works inline.
MAX_QUEUED = 2048
CHUNK = 8  # items the background thread processes per GIL hold
POLL_S = 5.0  # how often a started thread looks for work it was not woken for (and for its owner's end)


class DeferredQueue:
    """Items waiting for ``process``; see the module docstring for when they are processed."""

    def __init__(
        self, process: Callable[[Any], None], *, name: str, wake_at: int = WAKE_AT, max_queued: int = MAX_QUEUED
    ) -> None:
        self._process = process
        self._name = name
        self.wake_at = wake_at
        self.max_queued = max_queued
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._inline = False  # after close(), or when no thread could be started
        _LIVE.add(self)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, item: Any) -> None:
        """Queue ``item`` (or process it now, when the queue is full or closed). Never raises."""
        queue = self._queue
        queued = len(queue)
        if self._inline or queued >= self.max_queued:
            self._run(item)
            return
        queue.append(item)
        if queued >= self.wake_at:
            if self._thread is None:
                self._start()
            if not self._wake.is_set():
                self._wake.set()

    def drain(self, chunk: int = 0) -> bool:
        """Process queued items now, on the caller's thread: all of them, or at most ``chunk``. True when the
        queue was emptied. Never raises."""
        pop = self._queue.popleft
        done = 0
        with self._lock:
            while not chunk or done < chunk:
                try:
                    item = pop()
                except IndexError:
                    return True
                self._run(item)
                done += 1
        return False

    def close(self, timeout_s: float = 5.0) -> None:
        """Process inline from now on, drain what is queued, stop the thread."""
        self._inline = True
        self._wake.set()
        self.drain()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _run(self, item: Any) -> None:
        try:
            self._process(item)
        except Exception:
            _log.debug("llmmeter: deferred work failed", exc_info=True)

    def _start(self) -> None:
        with _START_LOCK:
            if self._thread is not None or self._inline:
                return
            thread = threading.Thread(target=_loop, args=(weakref.ref(self),), name=self._name, daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down, or no threads left: work inline from now on
                self._inline = True
                return
            self._thread = thread

    def _after_fork_in_child(self) -> None:
        # Only the forking thread survives a fork: the background thread is gone and the lock may be held.
        # What was queued ended in the parent, which counts it; counted here too it would be counted twice.
        self._queue.clear()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None


def _loop(ref: weakref.ReferenceType[DeferredQueue]) -> None:
    while True:
        owner = ref()
        if owner is None:
            return
        wake = owner._wake
        del owner  # do not keep the queue (and its processor) alive while waiting
        wake.wait(POLL_S)
        owner = ref()
        if owner is None:
            return
        wake.clear()
        while not owner.drain(CHUNK):
            time.sleep(0)  # let the app's threads run between chunks
        if owner._inline:
            return
        del owner


_START_LOCK = threading.Lock()
_LIVE: weakref.WeakSet[DeferredQueue] = weakref.WeakSet()


# --- draining before the SDK collects --------------------------------------------------------------
class _DrainThenCollect:
    """Stands in for an SDK MetricReader's collect callback: drain the queues, then let the SDK collect.

    ``MetricReader.collect()`` calls ``self._collect(self, timeout_millis=...)``, the function its
    MeterProvider gave it (``MeterProvider.__init__`` -> ``reader._set_collect_callback(
    measurement_consumer.collect)``), which takes the collection lock and runs the observable callbacks.
    Draining here, on the same thread just before, counts every span that ended before the collection
    without holding the SDK's lock while doing it.
    """

    __slots__ = ("collect", "queues")

    def __init__(self, collect: Callable[..., Any]) -> None:
        self.collect = collect
        self.queues: weakref.WeakSet[DeferredQueue] = weakref.WeakSet()

    def __call__(self, reader: Any, timeout_millis: float = 10_000) -> Any:
        for queue in list(self.queues):
            queue.drain()
        return self.collect(reader, timeout_millis=timeout_millis)


FORK_LOCK_WAIT_S = 2.0  # how long a fork waits for a collection in progress to finish (then forks anyway)
_PROVIDERS: weakref.WeakSet[Any] = weakref.WeakSet()  # SDK MeterProviders whose readers drain first
_held: list[Any] = []  # the collection locks taken by the forking thread, released after the fork


def drain_before_collect(meter_provider: Any, queue: DeferredQueue) -> bool:
    """Make every reader of an SDK ``MeterProvider`` drain ``queue`` before the SDK collects.

    True when every reader now does (then an observable callback need not drain under the SDK's lock);
    False for anything else (an API proxy, another SDK version), and the caller keeps draining in its
    callback. Idempotent; never raises.
    """
    try:
        readers = getattr(meter_provider, "_metric_readers", None)
        if not readers:
            return False
        for reader in readers:
            collect = getattr(reader, "_collect", None)
            if collect is None:
                return False
            if not isinstance(collect, _DrainThenCollect):
                collect = _DrainThenCollect(collect)
                reader._collect = collect
            collect.queues.add(queue)
        _PROVIDERS.add(meter_provider)
        return True
    except Exception:
        _log.debug("llmmeter: could not hook the metric readers", exc_info=True)
        return False


def _collection_lock(meter_provider: Any) -> Any:
    lock = getattr(getattr(meter_provider, "_measurement_consumer", None), "_lock", None)
    return lock if hasattr(lock, "acquire") and hasattr(lock, "release") else None


def _before_fork() -> None:
    # The SDK's collection locks first, then the queues' (a drain never waits for a collection lock while
    # holding its queue's lock, so this order cannot deadlock). Holding a queue's lock means no thread of
    # this process is inside an SDK record() for llmmeter at the fork, so none of the SDK's aggregation
    # locks is inherited held because of llmmeter either.
    locks = [_collection_lock(provider) for provider in list(_PROVIDERS)]
    locks += [queue._lock for queue in list(_LIVE)]
    for lock in locks:
        try:
            if lock is not None and lock.acquire(timeout=FORK_LOCK_WAIT_S):
                _held.append(lock)
        except Exception:
            pass


def _release_held() -> None:
    while _held:
        try:
            _held.pop().release()
        except Exception:
            pass


def _reset_after_fork() -> None:
    global _START_LOCK
    _release_held()
    _START_LOCK = threading.Lock()
    for queue in list(_LIVE):
        queue._after_fork_in_child()
    # PeriodicExportingMetricReader holds _export_lock while its exporter exports (which can take seconds)
    # and, unlike its thread, does not re-create it in a child: a fork during an export left the child's
    # every later export, the one at exit included, waiting forever. The export was the parent's.
    for provider in list(_PROVIDERS):
        for reader in getattr(provider, "_metric_readers", None) or ():
            if hasattr(getattr(reader, "_export_lock", None), "acquire"):
                reader._export_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_release_held, after_in_child=_reset_after_fork)
