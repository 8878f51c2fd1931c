"""The instruction-count benchmark runs end to end under the real valgrind and counts what it claims.

``benchmarks/bench_instructions.py --quick`` (3 counted calls per arm and mode) under callgrind. Counts
are deterministic, so unlike the timing benchmark's test this one can check relations between figures:
instrumenting adds instructions, llmmeter's histogram replay is counted apart (and only for arms whose
span processor queues records), and every arm really produced its spans and metrics.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_instructions.py"
MODES = ("chat", "stream")
QUICK_CALLS = QUICK_WARMUP = 3  # what --quick sets


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    for tool in ("valgrind", "callgrind_control"):  # Debian's valgrind package has both
        assert shutil.which(tool), f"{tool} is a test dependency (scripts/system-deps.sh installs it)"
    out = tmp_path_factory.mktemp("instructions") / "result.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--diagnose", "--jobs", "4", "--out", str(out), "--no-table"],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(out.read_text(encoding="utf-8"))


def test_every_arm_counted_both_modes_and_parts(result: dict[str, Any]) -> None:
    assert set(result["arms"]) == {"bare", "openai_v2", "llmmeter", "llmmeter_no_processor"}
    assert result["config"]["calls"] == QUICK_CALLS
    for name, arm in result["arms"].items():
        assert set(arm["modes"]) == set(MODES), name
        for figures in arm["modes"].values():
            assert figures["app"] > 0
            assert figures["total"] == figures["app"] + figures["deferred"]


def test_each_arm_produced_its_telemetry(result: dict[str, Any]) -> None:
    calls = (QUICK_WARMUP + 2 * QUICK_CALLS) * len(MODES)  # each mode: a counted pass of each part
    arms = result["arms"]
    for name, arm in arms.items():
        assert arm["verified"]["calls"] == calls, name
    assert arms["bare"]["verified"]["spans_exported"] == 0
    for name in ("openai_v2", "llmmeter", "llmmeter_no_processor"):
        assert arms[name]["verified"]["spans_per_call"] == 1.0, name
    assert arms["llmmeter"]["verified"]["metrics"]["llmmeter.requests"] == calls
    # Every replayed histogram record reached the SDK: one duration point per call.
    assert arms["llmmeter"]["verified"]["metrics"]["gen_ai.client.operation.duration"] == calls
    assert "llmmeter.requests" not in arms["llmmeter_no_processor"]["verified"]["metrics"]


def test_instrumenting_adds_instructions_and_the_replay_is_counted_apart(result: dict[str, Any]) -> None:
    arms = result["arms"]
    for mode in MODES:
        bare = arms["bare"]["modes"][mode]
        for name in ("openai_v2", "llmmeter", "llmmeter_no_processor"):
            assert arms[name]["modes"][mode]["app"] > bare["app"], (name, mode)
        # Only llmmeter's processor queues histogram records; replaying them costs SDK records (tens of
        # thousands of instructions each), while an arm with nothing queued replays nothing.
        # (The 'deferred' phase of every arm also counts its own loop's few instructions: bare shows them.)
        assert arms["llmmeter"]["modes"][mode]["deferred"] > bare["deferred"] + 10_000 * 3
        for name in ("openai_v2", "llmmeter_no_processor"):
            assert abs(arms[name]["modes"][mode]["deferred"] - bare["deferred"]) < 500, (name, mode)
        # The span processor's work shows in the whole process. (Its on_start/on_end on the calling thread,
        # ~20-30k instructions per call, is within a 3-call quick run's spread between two arms: not asserted.)
        assert (arms["llmmeter"]["modes"][mode]["total"]
                > arms["llmmeter_no_processor"]["modes"][mode]["total"] + 10_000 * 3)


def test_added_and_ratios_are_derived_from_the_counts(result: dict[str, Any]) -> None:
    arms, added = result["arms"], result["added"]
    for name in ("openai_v2", "llmmeter", "llmmeter_no_processor"):
        for mode in MODES:
            for part in ("app", "deferred", "total"):
                expected = arms[name]["modes"][mode][part] - arms["bare"]["modes"][mode][part]
                assert added[name][mode][part] == pytest.approx(expected)
    assert set(result["ratios"]) == {"llmmeter", "llmmeter_no_processor"}
    for name, modes in result["ratios"].items():
        for mode, ratio in modes.items():
            reference = added["openai_v2"][mode]["total"]
            assert ratio["app"] == pytest.approx(added[name][mode]["app"] / reference)
            assert ratio["total"] == pytest.approx(added[name][mode]["total"] / reference)
