"""benchmarks/bench_startup.py measures what it says: its ``bare`` arm has every SDK but no llmmeter at all,
and its figures are medians of the runs (checked on hand-made samples, no timing involved)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_startup.py"


def _bench() -> Any:
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_startup", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bare_arm_has_the_same_sdks_and_no_llmmeter(tmp_path: Path) -> None:
    python = _bench().build_bare_python(tmp_path)
    probe = (
        "import json, importlib.util as u\n"
        "from opentelemetry.util._importlib_metadata import entry_points\n"
        "eps = sorted(ep.name for ep in entry_points(group='opentelemetry_instrumentor'))\n"
        "print(json.dumps({'llmmeter': u.find_spec('llmmeter') is not None,\n"
        "                  'sdks': [m for m in ('openai', 'anthropic', 'cohere') if u.find_spec(m)], 'eps': eps}))\n"
    )
    found = json.loads(subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert found["llmmeter"] is False
    assert found["sdks"] == ["openai", "anthropic", "cohere"]
    assert "openai" in found["eps"]  # opentelemetry-instrumentation-openai-v2
    assert not [ep for ep in found["eps"] if ep.startswith("llmmeter")]


def test_summaries_are_medians_of_the_runs() -> None:
    samples = [{"cpu_s": 3.0, "rss_mb": 70.0}, {"cpu_s": 1.0, "rss_mb": 90.0}, {"cpu_s": 2.0, "rss_mb": 80.0}]
    assert _bench().summarize(samples) == {"cpu_s": 2.0, "rss_mb": 80.0}


def test_only_llmmeter_entries_are_left_out_of_the_bare_arm() -> None:
    keep_out = _bench()._is_llmmeter_entry
    assert keep_out("llmmeter-0.1.0.dist-info") and keep_out("__editable__.llmmeter-0.1.0.pth")
    assert not keep_out("opentelemetry_instrumentation_openai_v2-2.3b0.dist-info") and not keep_out("openai")
