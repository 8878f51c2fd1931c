"""llmmeter.deferred: the queue that keeps counting a span off the app's thread.

Its promises, each checked on the real class: nothing queued is lost (drain, background thread, inline
past the bound, close), work that fails never reaches the caller, memory stays bounded, and a forked
child gets a queue that works (fresh lock, its own thread).
"""

from __future__ import annotations

import os
import threading
import time

from llmmeter.deferred import DeferredQueue


def test_items_wait_until_drained_then_run_in_order() -> None:
    done: list[int] = []
    queue = DeferredQueue(done.append, name="t", wake_at=100, max_queued=100)
    for i in range(5):
        queue.add(i)
    assert done == [] and len(queue) == 5
    assert queue.drain(chunk=2) is False  # two done, more left
    assert done == [0, 1]
    assert queue.drain() is True
    assert done == [0, 1, 2, 3, 4] and len(queue) == 0


def test_past_the_bound_the_callers_thread_works_inline() -> None:
    done: list[int] = []
    queue = DeferredQueue(done.append, name="t", wake_at=1000, max_queued=3)
    for i in range(10):
        queue.add(i)
        assert len(queue) <= 3
    assert sorted(done) == list(range(3, 10))  # the first three wait; the rest ran at once
    queue.drain()
    assert sorted(done) == list(range(10))


def test_a_backlog_wakes_the_background_thread() -> None:
    done: list[int] = []
    queue = DeferredQueue(done.append, name="llmmeter-test-backlog", wake_at=4, max_queued=1000)
    for i in range(20):
        queue.add(i)
    deadline = time.monotonic() + 10
    while len(done) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(done) == list(range(20))
    assert any(t.name == "llmmeter-test-backlog" for t in threading.enumerate())
    queue.close()


def test_failing_work_never_reaches_the_caller() -> None:
    def process(item: int) -> None:
        raise RuntimeError(f"bug {item}")

    queue = DeferredQueue(process, name="t", wake_at=1000, max_queued=2)
    for i in range(5):
        queue.add(i)  # the last three run inline and fail: swallowed (logged at debug)
    assert queue.drain() is True


def test_close_drains_and_later_items_run_inline() -> None:
    done: list[int] = []
    queue = DeferredQueue(done.append, name="t", wake_at=2, max_queued=1000)
    for i in range(6):
        queue.add(i)
    queue.close()
    assert sorted(done) == list(range(6)) and len(queue) == 0
    queue.add(99)
    assert done[-1] == 99 and len(queue) == 0


def test_a_forked_child_gets_a_working_queue() -> None:
    done: list[int] = []
    queue = DeferredQueue(done.append, name="llmmeter-test-fork", wake_at=4, max_queued=1000)
    for i in range(10):  # the parent's background thread is started (and may hold the lock) at fork time
        queue.add(i)
    pid = os.fork()
    if pid == 0:  # child: only this thread survived the fork
        try:
            before = len(done)
            for i in range(100, 120):
                queue.add(i)
            deadline = time.monotonic() + 10
            while len(queue) and time.monotonic() < deadline:
                time.sleep(0.01)
            # Drained by the child's own background thread (the parent's did not survive the fork).
            ok = len(queue) == 0 and sorted(done[before:])[-20:] == list(range(100, 120))
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    queue.close()
    assert sorted(done) == list(range(10))
