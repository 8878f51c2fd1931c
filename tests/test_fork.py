"""Fork safety: children forked from a busy instrumented process neither hang nor re-export the parent's counts.

tests/fork_app.py is the parent (4 threads calling a local OpenAI-wire server, a metric reader collecting
every 5 ms, 120 children forked meanwhile, each making one call and exiting normally). The oracle is the
server's own request count: every process's exported ``llmmeter.requests`` summed must equal the calls
the server received, and each child must report exactly its one call.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from guard_support import CountingServer

CHILDREN = 120
APP = pathlib.Path(__file__).with_name("fork_app.py")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")


def test_children_forked_from_a_busy_parent_exit_and_count_only_their_own_calls(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "exports"
    out.mkdir()
    with CountingServer(10, 5) as server:
        result = subprocess.run(
            [sys.executable, str(APP), server.base_url, str(out), str(CHILDREN)],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "LLMMETER_SUMMARY": "off", "OTEL_SDK_DISABLED": "false"},
        )
        real_calls = server.requests
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["hung"] == [], f"{len(report['hung'])} of {CHILDREN} children did not exit"
    assert report["failed"] == []

    exported = {int(p.stem): json.loads(p.read_text())["requests"] for p in out.glob("*.json")}
    parent = exported.pop(report["parent_pid"])
    assert len(exported) == CHILDREN  # every child exported (its last export is its cumulative count)
    assert sorted(set(exported.values())) == [1]  # each child: its own call, none of the parent's
    assert parent == report["parent_calls"]
    assert parent + sum(exported.values()) == real_calls
