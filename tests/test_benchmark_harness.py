"""The overhead benchmark still runs end to end and writes every figure the report relies on.

Runs ``benchmarks/bench_overhead.py --quick`` (a few calls per arm): the figures of such a run mean
nothing, so nothing here looks at a duration; it checks the structure of the JSON result and that
every arm really measured what it claims (spans and metrics actually produced per call).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_overhead.py"
MODES = ("chat", "stream")
CLOCKS = ("wall", "cpu")
ARMS = ("bare", "openai_v2", "llmmeter")
QUICK_ROUNDS, QUICK_CALLS, QUICK_WARMUP = 2, 5, 3  # what --quick sets
STAT_KEYS = {"samples", "median_us", "p95_us", "mean_us", "min_us"}


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_overhead", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quick run with every optional arm: the diagnostic one and a variant from a copy of llmmeter."""
    tmp = tmp_path_factory.mktemp("bench")
    variant_dir = tmp / "variant"
    shutil.copytree(ROOT / "instrumentation" / "llmmeter", variant_dir / "llmmeter")
    out = tmp / "result.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--diagnose",
            "--profile",
            "--variant",
            f"copy={variant_dir}",
            "--out",
            str(out),
            "--no-table",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    data["_variant_dir"] = str(variant_dir)
    return data


def test_every_arm_measured_both_modes(result: dict[str, Any]) -> None:
    assert set(result["arms"]) == {*ARMS, "llmmeter_no_processor", "llmmeter@copy"}
    for name, arm in result["arms"].items():
        assert arm["available"] is True, (name, arm.get("error"))
        assert set(arm["modes"]) == set(MODES)
        for mode in MODES:
            assert set(arm["modes"][mode]) == set(CLOCKS)
            for clock in CLOCKS:
                stats = arm["modes"][mode][clock]
                assert set(stats) == STAT_KEYS
                assert stats["samples"] == QUICK_ROUNDS * QUICK_CALLS
                assert all(isinstance(stats[key], (int, float)) for key in STAT_KEYS)


def test_each_arm_produced_its_telemetry(result: dict[str, Any]) -> None:
    """Proof the arms are what they say: a bare arm exports nothing, each instrumented arm one span per call."""
    calls = (QUICK_WARMUP + QUICK_ROUNDS * QUICK_CALLS) * len(MODES)
    arms = result["arms"]
    for name in arms:
        assert arms[name]["verified"]["calls"] == calls
    assert arms["bare"]["verified"]["spans_exported"] == 0
    assert arms["bare"]["verified"]["metrics"] == {}
    for name in ("openai_v2", "llmmeter", "llmmeter_no_processor", "llmmeter@copy"):
        assert arms[name]["verified"]["spans_per_call"] == 1.0, name
    for name in ("llmmeter", "llmmeter@copy"):  # llmmeter's processor counted every call
        assert arms[name]["verified"]["metrics"]["llmmeter.requests"] == calls
    assert "llmmeter.requests" not in arms["llmmeter_no_processor"]["verified"]["metrics"]
    assert "gen_ai.client.token.usage" in arms["openai_v2"]["verified"]["metrics"]


def test_added_cost_and_ratios_are_reported(result: dict[str, Any]) -> None:
    assert set(result["added"]) == {"openai_v2", "llmmeter", "llmmeter_no_processor", "llmmeter@copy"}
    for figures in result["added"].values():
        for mode in MODES:
            for clock in CLOCKS:
                added = figures[mode][clock]
                assert {"median_us", "p95_us", "median_us_paired", "median_us_by_round"} <= set(added)
                assert len(added["median_us_by_round"]) == QUICK_ROUNDS
    assert set(result["ratios"]) == {
        "llmmeter_vs_openai_v2",
        "llmmeter_no_processor_vs_openai_v2",
        "llmmeter@copy_vs_openai_v2",
    }
    for modes in result["ratios"].values():
        assert set(modes) == set(MODES)
        for clocks in modes.values():
            assert set(clocks) == set(CLOCKS)
            for ratio in clocks.values():
                for key in ("median", "p95", "median_paired"):
                    # None when openai-v2's added time was not positive (noise in a tiny run): never a fake figure.
                    assert ratio[key] is None or isinstance(ratio[key], float)
                assert isinstance(ratio["verdict"], str) and ratio["verdict"]


def test_processor_throughput_reported_for_each_llmmeter(result: dict[str, Any]) -> None:
    kinds = {"llmmeter_span", "llmmeter_span_attributed", "openai_v2_span", "non_genai_span"}
    throughputs = [result["processor_throughput"], result["processor_throughput_variants"]["llmmeter@copy"]]
    for figures in throughputs:
        assert set(figures) == kinds
        for kind, info in figures.items():
            assert info["spans_per_s"] > 0 and info["us_per_span"] > 0 and info["spans_per_s_wall"] > 0
            assert 0 < info["on_end_us_per_span"]
            # The GenAI spans were really counted; the HTTP span was really ignored.
            assert (info["requests_counted"] > 0) == (kind != "non_genai_span"), kind


def test_variant_ran_its_own_llmmeter_copy(result: dict[str, Any]) -> None:
    sources = result["environment"]["llmmeter_source"]
    assert Path(sources["llmmeter@copy"]) == Path(result["_variant_dir"]) / "llmmeter"
    assert Path(sources["llmmeter"]) != Path(sources["llmmeter@copy"])  # the others import the installed one


def test_profiles_name_instrumentation_functions(result: dict[str, Any]) -> None:
    """Which functions make the top rows depends on timing; that every row is instrumentation code does not."""
    assert set(result["profiles"]) == {"openai_v2", "llmmeter", "llmmeter_no_processor", "llmmeter@copy"}
    for modes in result["profiles"].values():
        for rows in modes.values():
            assert 0 < len(rows) <= 25
            selfs = [r["self_us_per_call"] for r in rows]
            assert selfs == sorted(selfs, reverse=True)


def test_hot_spots_keep_instrumentation_rows_per_call_by_self_time() -> None:
    """_hot_spots on a hand-made pstats table: the SDK's row is dropped, times are divided by the calls."""
    bench = _bench_module()

    stats = SimpleNamespace(stats={  # (file, line, func): (primitive calls, calls, self s, cumulative s, callers)
        ("/v/site-packages/openai/_client.py", 1, "create"): (4, 4, 9.0, 9.0, {}),
        ("/repo/instrumentation/llmmeter/call.py", 10, "finish"): (4, 4, 0.002, 0.004, {}),
        ("/v/site-packages/wrapt/wrappers.py", 5, "__call__"): (8, 8, 0.006, 0.01, {}),
    })
    rows = bench._hot_spots(stats, calls=4, top=25)
    assert [r["function"] for r in rows] == ["wrapt/wrappers.py:5(__call__)", "call.py:10(finish)"]
    assert rows[0]["self_us_per_call"] == pytest.approx(1500.0)  # 0.006 s / 4 calls
    assert rows[0]["calls_per_call"] == 2.0 and rows[1]["cumulative_us_per_call"] == pytest.approx(1000.0)
    assert bench._hot_spots(stats, calls=4, top=1) == rows[:1]


def test_describe_figures_from_known_samples() -> None:
    bench = _bench_module()
    stats = bench.describe([4000, 1000, 3000, 2000, 10000])  # ns
    assert stats == {"samples": 5, "median_us": 3.0, "p95_us": 10.0, "mean_us": 4.0, "min_us": 1.0}


def test_added_and_ratios_are_the_differences_of_the_reported_figures(result: dict[str, Any]) -> None:
    arms = result["arms"]
    for name, figures in result["added"].items():
        for mode in MODES:
            for clock in CLOCKS:
                mine, bare = arms[name]["modes"][mode][clock], arms["bare"]["modes"][mode][clock]
                assert figures[mode][clock]["median_us"] == pytest.approx(mine["median_us"] - bare["median_us"])
                assert figures[mode][clock]["p95_us"] == pytest.approx(mine["p95_us"] - bare["p95_us"])
    for mode in MODES:
        for clock in CLOCKS:
            ours = result["added"]["llmmeter"][mode][clock]["median_us"]
            theirs = result["added"]["openai_v2"][mode][clock]["median_us"]
            got = result["ratios"]["llmmeter_vs_openai_v2"][mode][clock]["median"]
            assert got == (pytest.approx(ours / theirs) if theirs > 0 else None)


def test_environment_and_config_recorded(result: dict[str, Any]) -> None:
    versions = result["environment"]["versions"]
    for dist in ("openai", "httpx2", "opentelemetry-sdk", "opentelemetry-instrumentation-openai-v2", "llmmeter"):
        assert versions[dist], dist
    assert "loadavg_start" in result["environment"] and "loadavg_end" in result["environment"]
    config = result["config"]
    assert config["quick"] is True
    assert config["stream_content_chunks"] == 10 and config["stream_usage_chunk"] is True
    assert config["transport"] == "httpx2.MockTransport"


def test_variant_argument_is_checked() -> None:
    bench = _bench_module()
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=DIR"):
        bench.parse_variant("no-equals-sign")
    with pytest.raises(argparse.ArgumentTypeError, match="no llmmeter/ package"):
        bench.parse_variant(f"x={ROOT / 'benchmarks'}")
    arm = bench.parse_variant(f"here={ROOT / 'instrumentation'}")
    assert (arm.name, arm.kind) == ("llmmeter@here", "llmmeter")


def test_percentile_is_nearest_rank() -> None:
    bench = _bench_module()
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 95) == 95.0
    assert bench.percentile(values, 50) == 50.0
    assert bench.percentile([7.0], 95) == 7.0
