"""CPU instructions llmmeter adds to an OpenAI call, counted by valgrind: the same figure on every run.

``bench_overhead.py`` times calls; on a shared or virtual machine its figures move by 10-20 µs from
run to run, as much as a change being judged. This counts instead: each arm runs under
``valgrind --tool=callgrind``, which counts the instructions the process executes (not seconds), so
the same code gives the same count whatever else the machine is doing, and a 2 % change is visible.

Same arms, pipelines, fake transport and calls as ``bench_overhead.py`` (its ``Pipeline`` and
``call_once`` are reused): ``bare``, ``openai_v2``, ``llmmeter``; ``--diagnose`` adds
``llmmeter_no_processor``; ``--variant NAME=DIR`` a scratch copy of llmmeter. Per arm and mode it reports:

* ``app``: instructions per call on the calling thread: the SDK call, the instrumentor, span start and
  end, every span processor's ``on_start``/``on_end`` (openai-v2 records its metrics here too);
* ``deferred``: instructions per call that llmmeter's span processor moves off the calling thread
  (counting the span: sums, label sets, histogram records; see ``llmmeter.deferred``), here run inline
  after the calls and counted on their own;
* ``total``: both. ``app`` is what a call's latency pays; ``total`` is what the process's CPU pays.

Only the measured loop is counted (``--toggle-collect`` on ``functools.reduce``, which runs it), so
start-up, imports and warm-up are not; they even run without valgrind's instrumentation
(``--instr-atstart=no``, turned on by ``callgrind_control`` when the worker is ready), which keeps an arm
to a few seconds of start-up instead of a minute. The BatchSpanProcessor's export thread is not counted in any
arm: it is the OTel SDK's, the same for every instrumented arm. Instruction counts are not time (a
cache miss costs more than an add), so both benchmarks are reported; neither replaces the other.

Needs valgrind (Debian: ``apt-get install valgrind``). Run: ``python benchmarks/bench_instructions.py``
(about two minutes on 2 cores); ``--quick`` for a smoke run. Results: a table and
``benchmarks/results/instructions.json``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_overhead as overhead  # noqa: E402  (same directory; the arms and calls are shared)

DEFAULT_OUT = os.path.join(HERE, "results", "instructions.json")
SCHEMA_VERSION = 1
MODES = overhead.MODES
PARTS: tuple[str, ...] = ("app", "deferred")
# What the worker's loops are run by: callgrind counts only inside this C function (see the docstring).
COUNTED_FUNCTION = "functools_reduce"
VERIFIED_PREFIX = "llmmeter-bench-verified: "
READY = "llmmeter-bench-ready"
PHASE_DONE = "llmmeter-bench-phase-done"


# --------------------------------------------------------------------------------------------
# Worker: runs under valgrind. Per mode, two counted phases; the parent dumps the count after each.
# --------------------------------------------------------------------------------------------
def worker_main(kind: str, calls: int, warmup: int) -> int:
    os.environ.setdefault("LLMMETER_SUMMARY", "off")
    pipeline = overhead.Pipeline(kind)
    drain = _drainer(pipeline)
    if kind.startswith("llmmeter"):
        from llmmeter import estimate

        estimate.warm_up(wait=True)  # the tokenizer loads on a background thread: not part of a call
    client = pipeline.client
    for mode in MODES:
        for _ in range(warmup):
            overhead.call_once(client, mode)
    pipeline.tracer_provider.force_flush()
    drain()
    # The start-up heap (imports, SDKs: hundreds of thousands of objects) goes to the GC's permanent
    # generation. Otherwise a full collection, which walks all of it, lands inside a counted phase or not
    # depending on allocation counts that any small change shifts: one such collection added ~400k
    # instructions per call to one arm's phase. The garbage the calls themselves make is still collected
    # (and counted) as the calls go.
    gc.collect()
    gc.freeze()
    # Start-up ran without valgrind's instrumentation (fast); the parent turns it on now.
    _handshake(READY)

    def counted(work: Any) -> None:  # only what runs inside functools.reduce is counted
        functools.reduce(lambda _acc, _i: work(), range(1), None)

    for mode in MODES:
        # 'app': each call counted, its deferred work done right after it, uncounted: the queue stays as
        # short as the background thread keeps it in a busy app, so no phase inherits a backlog.
        for _ in range(calls):
            counted(lambda mode=mode: overhead.call_once(client, mode))
            drain()
        _handshake(PHASE_DONE)
        # 'deferred': each call uncounted, then its deferred work counted.
        for _ in range(calls):
            overhead.call_once(client, mode)
            counted(drain)
        _handshake(PHASE_DONE)
        pipeline.tracer_provider.force_flush()
    pipeline.calls = (warmup + 2 * calls) * len(MODES)
    # Proof the arm did what it claims (spans exported, metric points), for the parent to check.
    print(VERIFIED_PREFIX + json.dumps(pipeline.check()), flush=True)
    os._exit(0)  # no exit handlers: nothing after the counted loops matters


def _handshake(message: str) -> None:
    """Tell the parent where we are and wait until it has acted (instrumentation on, or a dump taken)."""
    print(message, flush=True)
    sys.stdin.readline()


def _drainer(pipeline: Any) -> Any:
    """The processor's deferred work, run inline. Its background thread must not run during a counted loop
    (its instructions would be on another thread, uncounted), so the queue is made large enough to hold
    every counted call and the thread is never woken; the 'deferred' loop does the work instead."""
    from llmmeter.processor import find_processor

    processor = find_processor(pipeline.tracer_provider)
    if processor is None:
        return lambda: None
    deferred = processor._deferred
    if hasattr(deferred, "wake_at"):  # llmmeter.deferred.DeferredQueue
        deferred.wake_at = deferred.max_queued = 10**9
    else:  # a --variant copy from before it: histogram records replayed by a thread, set by module constants
        import llmmeter.processor as processor_module

        for name in ("FLUSH_INTERVAL_S", "WAKE_AT", "MAX_QUEUED_RECORDS"):
            if hasattr(processor_module, name):
                setattr(processor_module, name, 10**9)
    return deferred.drain


# --------------------------------------------------------------------------------------------
# Parent: one valgrind process per arm, two at a time.
# --------------------------------------------------------------------------------------------
def valgrind_version() -> str | None:
    exe = shutil.which("valgrind")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def run_arm(arm: overhead.Arm, calls: int, warmup: int) -> dict[str, Any]:
    """Instructions per call for each mode and part of one arm."""
    with tempfile.TemporaryDirectory(prefix="llmmeter-callgrind-") as tmp:
        env = dict(os.environ, LLMMETER_SUMMARY="off", PYTHONHASHSEED="0")
        if arm.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (arm.pythonpath, env.get("PYTHONPATH")) if p)
        command = [
            "valgrind",
            "--tool=callgrind",
            # Imports and warm-up run uninstrumented (about ten times faster); the worker says when it is
            # ready and callgrind_control turns instrumentation on before the counted loops.
            "--instr-atstart=no",
            f"--callgrind-out-file={tmp}/out.%p",
            "--collect-atstart=no",
            f"--toggle-collect={COUNTED_FUNCTION}",
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            arm.kind,
            "--calls",
            str(calls),
            "--warmup",
            str(warmup),
        ]
        started = time.perf_counter()
        with subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        ) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            lines = []
            for line in proc.stdout:
                lines.append(line)
                step = line.strip()
                if step not in (READY, PHASE_DONE):
                    continue
                # Instrumentation on once the worker is ready; a dump (the phase's count) after each phase.
                control = _callgrind_control(proc.pid, "--instr=on" if step == READY else "--dump")
                if control is not None:
                    proc.kill()
                    raise RuntimeError(f"arm {arm.name}: callgrind_control failed: {control}")
                proc.stdin.write("go\n")
                proc.stdin.flush()
            rest, err = proc.communicate()
        done = subprocess.CompletedProcess(command, proc.returncode, "".join(lines) + rest, err)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.splitlines()[-15:])
            raise RuntimeError(f"arm {arm.name}: valgrind exited {done.returncode}:\n{tail}")
        counts = [_dump_total(path) for path in _dumps(tmp)]
    reports = [line[len(VERIFIED_PREFIX) :] for line in done.stdout.splitlines() if line.startswith(VERIFIED_PREFIX)]
    verified = json.loads(reports[-1]) if reports else None
    if verified is None:
        raise RuntimeError(f"arm {arm.name}: the worker did not report what it measured")
    expected = len(MODES) * len(PARTS)
    if len(counts) != expected:
        raise RuntimeError(f"arm {arm.name}: expected {expected} callgrind dumps, got {len(counts)}")
    modes: dict[str, Any] = {}
    for i, mode in enumerate(MODES):
        app, deferred = counts[2 * i] / calls, counts[2 * i + 1] / calls
        modes[mode] = {"app": app, "deferred": deferred, "total": app + deferred}
    return {
        "kind": arm.kind,
        "pythonpath": arm.pythonpath,
        "seconds": time.perf_counter() - started,
        "verified": verified,
        "modes": modes,
    }


def _callgrind_control(pid: int, option: str) -> str | None:
    """Run callgrind_control on the worker (it returns once callgrind has acted); None, or what went wrong."""
    done = subprocess.run(["callgrind_control", option, str(pid)], capture_output=True, text=True, check=False)
    return None if done.returncode == 0 and "OK" in done.stdout else done.stdout + done.stderr


def _dumps(directory: str) -> list[str]:
    """Callgrind's numbered dumps (``out.<pid>.<n>``) in the order they were written."""
    found = []
    for path in glob.glob(os.path.join(directory, "out.*.*")):
        suffix = path.rsplit(".", 1)[1]
        if suffix.isdigit():
            found.append((int(suffix), path))
    return [path for _, path in sorted(found)]


def _dump_total(path: str) -> int:
    with open(path, encoding="utf-8", errors="replace") as fh:
        match = re.search(r"^(?:summary|totals):\s+(\d+)", fh.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no instruction total in callgrind dump {path}")
    return int(match.group(1))


def summarize(arms: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(instructions each arm adds over bare, per mode and part; ratios of each llmmeter arm to openai-v2)."""
    bare = arms["bare"]["modes"]
    added: dict[str, Any] = {}
    for name, arm in arms.items():
        if name == "bare":
            continue
        added[name] = {
            mode: {part: arm["modes"][mode][part] - bare[mode][part] for part in ("app", "deferred", "total")}
            for mode in MODES
        }
    ratios: dict[str, Any] = {}
    reference = added.get("openai_v2")
    for name, values in added.items():
        if not name.startswith("llmmeter") or reference is None:
            continue
        ratios[name] = {
            mode: {
                part: overhead.ratio(values[mode][part], reference[mode]["total"]) for part in ("app", "total")
            }
            for mode in MODES
        }
    return added, ratios


def _k(value: float) -> str:
    return f"{value / 1000:,.1f}k"


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    table = Table(
        title=f"instructions per OpenAI call (callgrind; {result['config']['calls']} calls per arm and mode; k = 1,000)"
    )
    for column in ("mode", "arm", "app", "deferred", "total", "added: app", "added: total"):
        table.add_column(column, justify="left" if column in ("mode", "arm") else "right", no_wrap=True)
    for mode in MODES:
        for name, arm in result["arms"].items():
            figures = arm["modes"][mode]
            added = result["added"].get(name, {}).get(mode)
            table.add_row(
                mode,
                name,
                _k(figures["app"]),
                _k(figures["deferred"]),
                _k(figures["total"]),
                _k(added["app"]) if added else "-",
                _k(added["total"]) if added else "-",
            )
        table.add_section()
    console.print(table)
    ratios = Table(title="instructions added / openai-v2's (all on its calling thread); floor <= 1, goal <= 0.5")
    for column in ("arm", "mode", "calling thread", "whole process"):
        ratios.add_column(column, no_wrap=True)
    for name, modes in result["ratios"].items():
        for mode, values in modes.items():
            ratios.add_row(name, mode, overhead._fmt(values["app"]), overhead._fmt(values["total"]))
    console.print(ratios)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="counted calls per arm and mode")
    parser.add_argument("--warmup", type=int, default=50, help="uncounted calls per arm and mode first")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind processes at once")
    parser.add_argument("--quick", action="store_true", help="smoke run: a few calls")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON result file")
    parser.add_argument("--no-table", action="store_true", help="write the JSON only")
    parser.add_argument("--diagnose", action="store_true", help="add llmmeter without its span processor")
    parser.add_argument("--ledger", action="store_true", help="add llmmeter with the cost ledger on")
    parser.add_argument(
        "--variant", action="append", type=overhead.parse_variant, default=[], metavar="NAME=DIR",
        help="add an llmmeter arm importing llmmeter from DIR/llmmeter",
    )
    parser.add_argument("--worker", choices=overhead.KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.worker:
        return worker_main(args.worker, args.calls, args.warmup)
    if args.quick:
        args.calls, args.warmup = 3, 3
    version = valgrind_version()
    if version is None:
        print("bench_instructions: valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2

    arms = [overhead.Arm(name, name) for name in overhead.ARMS]
    if args.diagnose:
        arms.append(overhead.Arm("llmmeter_no_processor", "llmmeter_no_processor"))
    if args.ledger:
        arms.append(overhead.Arm("llmmeter_ledger", "llmmeter_ledger"))
    arms.extend(args.variant)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda arm: run_arm(arm, args.calls, args.warmup), arms))
    measured = {arm.name: result for arm, result in zip(arms, results, strict=True)}
    added, ratios = summarize(measured)
    result = {
        **overhead.result_header(SCHEMA_VERSION),
        "environment": {
            **overhead.machine(),
            "valgrind": version,
            "versions": overhead._versions(),
        },
        "config": {"calls": args.calls, "warmup": args.warmup, "quick": args.quick, "model": overhead.MODEL,
                   "stream_content_chunks": overhead.STREAM_CONTENT_CHUNKS, "counted_function": COUNTED_FUNCTION},
        "arms": measured,
        "added": added,
        "ratios": ratios,
        "elapsed_s": time.perf_counter() - started,
    }
    overhead.write_result(result, args.out)
    if not args.no_table:
        render(result)
        print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
