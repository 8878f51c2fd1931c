"""Bounded cardinality: 20,000 calls from 20,000 distinct users keep series and retained objects capped.

Runs benchmarks/bench_cardinality.py's ``run()`` (real SDK spans through the real span processor) with
a small N; the 1,000,000-call numbers are in that script's output and the project notes.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import bench_cardinality
from llmmeter import names

CAP = 200
N = 20_000


def test_series_stay_within_cap_plus_overflow_and_memory_plateaus():
    result = bench_cardinality.run(N, cap=CAP, checkpoints=4)

    assert result.user_values <= CAP + 1  # CAP real users + "__overflow__"
    assert result.user_values == CAP + 1
    assert result.seen_values == CAP
    assert result.overflow_folds >= N - CAP  # every call from a user past the cap was folded and counted
    # 3 tenants x (cap + overflow) users is the most llmmeter.requests can hold; far below N.
    assert result.series[names.METRIC_REQUESTS] <= 3 * (CAP + 1)

    # Retained objects, not time: after the cap is reached (first checkpoint at N/4 >> CAP), the live
    # object count must not grow with the number of calls.
    first, last = result.checkpoints[0], result.checkpoints[-1]
    assert last.calls == N and first.calls == N // 4
    assert last.gc_objects - first.gc_objects < 200, [c.gc_objects for c in result.checkpoints]
