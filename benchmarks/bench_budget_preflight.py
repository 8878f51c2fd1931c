"""What a hard budget costs the app's thread before a call is sent, for a large prompt.

Drives llmmeter's budget enforcer (``Enforcer.before_call`` + ``after_call``, the hooks every
instrumented call runs) with a real ``RequestInfo`` whose prompt is ``--chars`` characters of English
text, on real SDK spans and the in-memory spend store. No network, no SDK call: only the pre-flight work.

Arms, per call (median and p95 of ``-n`` calls each, thread CPU time and wall time):

* ``tiktoken``     -- tokenizing the prompt once (what every call under a hard budget paid before the
  byte bound: the reservation always counted the prompt with tiktoken);
* ``bound_fits``   -- hard token budget with room: the byte bound decides, no tokenizer;
* ``bound_alone``  -- the budget's remainder is smaller than the bound and nothing is in flight: admitted
  alone, no tokenizer;
* ``tokenize``     -- a call in flight and the bound does not fit beside it: the decision depends on the
  precise count, so the prompt is tokenized (the only case that pays tiktoken).

    python benchmarks/bench_budget_preflight.py                  # 450,000 characters, 30 calls per arm
    python benchmarks/bench_budget_preflight.py --chars 20000 -n 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from llmmeter import estimate
from llmmeter.budgets import Budget, InMemoryStore
from llmmeter.budgets.enforcement import Enforcer
from llmmeter.call import RequestInfo
from llmmeter.usage import Usage
from opentelemetry.sdk.trace import TracerProvider

SENTENCE = "The quick brown fox jumps over the lazy dog while the budget watches every token. "


def _request(prompt: str) -> RequestInfo:
    return RequestInfo(provider="openai", operation="chat", model="gpt-4o-mini",
                       attributes={"gen_ai.request.max_tokens": 256}, prompt_text=lambda: prompt)


class _Response:
    def __init__(self) -> None:
        self.usage = Usage(input=100, output=10)


def _timed(fn: Any) -> tuple[float, float]:
    cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
    fn()
    return (time.thread_time_ns() - cpu) / 1e6, (time.perf_counter_ns() - wall) / 1e6


def run(chars: int, n: int) -> dict[str, Any]:
    estimate.warm_up(wait=True)
    prompt = (SENTENCE * (chars // len(SENTENCE) + 1))[:chars]
    tracer = TracerProvider().get_tracer("bench")
    tokens = estimate.count_tokens(prompt, "gpt-4o-mini")[0]
    bound = estimate.prompt_token_bound(prompt)
    results: dict[str, dict[str, float]] = {}

    def arm(name: str, limit: float, in_flight: bool) -> None:
        samples: list[tuple[float, float]] = []
        tokenized = 0
        enforcer = Enforcer()
        enforcer.add([Budget("*", "*", limit, "tokens", 86400, "hard", name=name)])
        for _ in range(n):
            enforcer.store = InMemoryStore()  # every call starts from the same empty window
            enforcer.preflight_tokenizations = 0
            holder = None
            if in_flight:  # a small call admitted and still running
                holder = tracer.start_span("held")
                enforcer.before_call(_request("hi"), holder)
            span = tracer.start_span("call")
            request = _request(prompt)
            samples.append(_timed(lambda: enforcer.before_call(request, span)))  # noqa: B023
            enforcer.after_call(request, _Response(), None, span)
            span.end()
            tokenized += enforcer.preflight_tokenizations
            if holder is not None:
                enforcer.after_call(_request("hi"), _Response(), None, holder)
                holder.end()
        results[name] = _summary(samples) | {"tokenized_calls": tokenized}

    def tiktoken_arm() -> None:
        samples = [_timed(lambda: estimate.count_tokens(prompt, "gpt-4o-mini")) for _ in range(n)]
        results["tiktoken"] = _summary(samples) | {"tokenized_calls": n}

    tiktoken_arm()
    arm("bound_fits", 10 * bound, in_flight=False)
    arm("bound_alone", bound / 2, in_flight=False)
    # Room for the small held call and the precise count, not for the byte bound: tiktoken decides.
    held = estimate.prompt_token_bound("hi") + 256
    arm("tokenize", held + tokens + estimate.prompt_overhead(prompt) + 256 + 100, in_flight=True)
    return {"chars": chars, "calls_per_arm": n, "prompt_tokens_tiktoken": tokens, "prompt_token_bound": bound,
            "arms_ms": results, "python": sys.version.split()[0]}


def _summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    cpu = sorted(s[0] for s in samples)
    wall = sorted(s[1] for s in samples)
    p95 = max(0, int(len(cpu) * 0.95) - 1)
    return {"cpu_median": round(statistics.median(cpu), 4), "cpu_p95": round(cpu[p95], 4),
            "wall_median": round(statistics.median(wall), 4), "wall_p95": round(wall[p95], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=450_000)
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    result = run(args.chars, args.n)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
