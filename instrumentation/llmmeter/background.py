"""One bounded background worker that finishes calls whose token counts must be estimated.

Tokenizing a long output (a stream that reported no usage) takes real CPU: 50 MB of text held an app
267-789 ms after its last chunk when it ran on the app's thread. The app does not need the count; the
span, the metrics and the guards do. So :class:`LLMCall <llmmeter.call.LLMCall>` hands such a call here
once the texts are captured, and the worker counts, records and ends the span (exactly once: the call is
marked ended before it is handed over). The return values the app sees are unchanged.

Bounds: at most :data:`MAX_PENDING` calls and :data:`MAX_PENDING_CHARS` characters of text wait at any
time; past either, :func:`submit` refuses and the caller finishes the call itself (slower for that call,
never more memory). A worker started before a ``fork()`` does not exist in the child: the child starts its
own on its first submit. At interpreter exit the waiting calls are finished before the exporters shut down.

Guards read the counts of earlier calls (budgets, an agent run's totals), so :func:`wait_for_context`
lets the next guarded call in the same thread or asyncio task wait for the ones it handed over.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import threading
from collections import deque
from collections.abc import Callable

_log = logging.getLogger(__name__)

MAX_PENDING = 256  # calls waiting at most
MAX_PENDING_CHARS = 64_000_000  # characters of captured text waiting at most (~64-256 MB)
EXIT_WAIT_S = 10.0  # how long interpreter exit waits for waiting calls


class _Job:
    __slots__ = ("chars", "done", "run")

    def __init__(self, run: Callable[[], None], chars: int) -> None:
        self.run = run
        self.chars = chars
        self.done = threading.Event()


_lock = threading.Condition()
_jobs: deque[_Job] = deque()
_pending_chars = 0
_in_flight = 0
_thread: threading.Thread | None = None
_thread_pid = 0
_exit_registered = False
_last_job: contextvars.ContextVar[_Job | None] = contextvars.ContextVar("llmmeter_last_background_job", default=None)


def _work() -> None:
    global _pending_chars, _in_flight
    while True:
        with _lock:
            while not _jobs:
                _lock.wait()
            job = _jobs.popleft()
            _in_flight += 1
        try:
            job.run()
        except Exception:  # the job's own code already never raises; belt and braces for the thread
            _log.debug("llmmeter: background estimate failed", exc_info=True)
        finally:
            with _lock:
                _pending_chars -= job.chars
                _in_flight -= 1
                _lock.notify_all()
            job.done.set()


def submit(run: Callable[[], None], chars: int) -> bool:
    """Run ``run`` on the worker; False (nothing queued) when the bounds are reached."""
    global _pending_chars, _thread, _thread_pid, _exit_registered
    with _lock:
        if len(_jobs) + _in_flight >= MAX_PENDING or _pending_chars + chars > MAX_PENDING_CHARS:
            return False
        pid = os.getpid()
        if _thread is None or _thread_pid != pid or not _thread.is_alive():
            _thread = threading.Thread(target=_work, name="llmmeter-estimates", daemon=True)
            _thread_pid = pid
            _thread.start()
            if not _exit_registered:
                atexit.register(settle, EXIT_WAIT_S)  # after the SDK's own atexit hooks: runs before them
                _exit_registered = True
        job = _Job(run, chars)
        _jobs.append(job)
        _pending_chars += chars
        _lock.notify_all()
    _last_job.set(job)
    return True


def settle(timeout: float | None = None) -> bool:
    """Wait until every call handed over so far is finished; False when ``timeout`` ran out first."""
    with _lock:
        return _lock.wait_for(lambda: not _jobs and not _in_flight, timeout)


def wait_for_context(timeout: float | None = 30.0) -> None:
    """Wait for the calls this thread / asyncio task handed over (jobs run in order: the last one suffices)."""
    job = _last_job.get()
    if job is not None and not job.done.is_set():
        job.done.wait(timeout)


def _after_fork_in_child() -> None:
    global _pending_chars, _in_flight, _thread
    _lock.__init__()  # type: ignore[misc]  # a lock held by a parent thread at fork would never be released
    _jobs.clear()  # the parent finishes its own calls; the child must not end them a second time
    _pending_chars = 0
    _in_flight = 0
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
