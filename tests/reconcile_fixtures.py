"""Fixtures for ``llmmeter reconcile``: the providers' organisation report APIs served from 127.0.0.1 exactly as
documented, and llmmeter's own metrics for the same days in a real Prometheus (backfilled with promtool).

The documented shapes these emulators serve (looked up in the providers' API references):

- OpenAI Costs API, https://platform.openai.com/docs/api-reference/usage/costs (also rendered at
  https://developers.openai.com/api/reference/ -> organization "Costs"; object reference "Costs object":
  ``{"object": "organization.costs.result", "amount": {"value": 0.06, "currency": "usd"}, "line_item": ...,
  "project_id": ...}``); ``GET /v1/organization/costs`` with ``start_time`` (Unix s, inclusive), ``end_time``
  (exclusive), ``bucket_width`` (only ``1d``), ``group_by`` (``project_id``, ``line_item``), ``limit`` (1-180,
  default 7), ``page`` (the previous ``next_page``); the page is ``{"object": "page", "data": [{"object": "bucket",
  "start_time", "end_time", "results": [...]}], "has_more", "next_page"}``.
- OpenAI Usage API, https://platform.openai.com/docs/api-reference/usage/completions ("Completions usage object":
  ``{"object": "organization.usage.completions.result", "input_tokens": 5000, "output_tokens": 1000,
  "input_cached_tokens": 4000, "num_model_requests": 5, "project_id", "user_id", "api_key_id", "model":
  "gpt-4o-mini-2024-07-18", "batch"}``); ``group_by`` adds ``model``, ``api_key_id``, ...; with ``bucket_width=1d``
  ``limit`` is at most 31.
- Anthropic cost report, https://platform.claude.com/docs/en/api/admin/cost_report: ``GET
  /v1/organizations/cost_report`` with ``starting_at`` / ``ending_at`` (RFC 3339), ``bucket_width`` ``1d``,
  ``group_by[]`` (``workspace_id``, ``description``), ``limit`` (1-31, default 7), ``page``; returns ``{"data":
  [{"starting_at", "ending_at", "results": [{"amount": "123.45", "currency": "USD", "description", "cost_type",
  "model", "token_type", "service_tier", "context_window", "workspace_id"}]}], "has_more", "next_page"}`` where
  ``amount`` is in the lowest currency unit (cents) as a decimal string ("123.45" USD is $1.23).
- Anthropic messages usage report, https://platform.claude.com/docs/en/api/admin/usage_report: ``GET
  /v1/organizations/usage_report/messages`` with ``group_by[]`` (``api_key_id``, ``workspace_id``, ``model``, ...);
  results carry ``uncached_input_tokens``, ``cache_read_input_tokens``, ``cache_creation:
  {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}``, ``output_tokens``, ``server_tool_use``, ``model``,
  ``workspace_id``, ``api_key_id`` (the nesting of ``cache_creation`` as read by Anthropic's own cookbook,
  anthropics/claude-cookbooks observability/usage_cost_api.ipynb). Both Anthropic reports authenticate with
  ``x-api-key`` and ``anthropic-version: 2023-06-01`` (https://platform.claude.com/docs/en/build-with-claude/usage-cost-api).

Every figure below is written by hand; the tests' expected drifts are computed from these literals.
"""

from __future__ import annotations

import base64
import datetime as dt
import pathlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from llmmeter import names
from promtools import prometheus_server
from replay_server import RecordedRequest, Reply

D1, D2, D3 = dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)
UNTIL = dt.date(2026, 11, 4)  # --until 2026-11-04 --since 3d covers D1..D3
OPENAI_KEY = "sk-admin-TEST-0123456789abcdef"  # a made-up key: the tests check it never appears in output
ANTHROPIC_KEY = "sk-ant-admin01-TEST-fedcba9876543210"
PAGE_SIZE = 2  # buckets per page, whatever `limit` asks: every report is paginated


def _unix(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def _iso(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


# --- OpenAI: costs by (line_item, project_id), USD ------------------------------------------------------------
OPENAI_COSTS: list[tuple[dt.date, str, str, float]] = [
    (D1, "gpt-4o-mini-2024-07-18, input", "proj_web", 1.20),
    (D1, "gpt-4o-mini-2024-07-18, cached input", "proj_web", 0.05),
    (D1, "gpt-4o-mini-2024-07-18, output", "proj_web", 2.75),  # gpt-4o-mini D1: 4.00
    (D1, "gpt-4o-2024-08-06, input", "proj_web", 5.00),
    (D1, "gpt-4o-2024-08-06, output", "proj_web", 3.00),  # gpt-4o D1: 8.00
    (D1, "Image models", "proj_web", 0.40),  # not a per-model line
    (D2, "gpt-4o-mini-2024-07-18, input", "proj_web", 2.00),
    (D2, "gpt-4o-mini-2024-07-18, output", "proj_web", 3.00),  # gpt-4o-mini D2: 5.00
    (D2, "gpt-4o-2024-08-06, input", "proj_web", 4.00),
    (D2, "gpt-4o-2024-08-06, output", "proj_web", 4.00),  # gpt-4o D2: 8.00
    (D2, "o3-mini-2025-01-31, input", "proj_batch", 0.90),
    (D2, "o3-mini-2025-01-31, output", "proj_batch", 1.10),  # o3-mini D2: 2.00, never metered
    (D3, "gpt-4o-mini-2024-07-18, input", "proj_web", 1.50),
    (D3, "gpt-4o-mini-2024-07-18, output", "proj_web", 2.50),  # gpt-4o-mini D3: 4.00
    (D3, "gpt-4o-2024-08-06, input", "proj_web", 6.00),
    (D3, "gpt-4o-2024-08-06, output", "proj_web", 2.00),  # gpt-4o D3: 8.00
]
# Usage by (model, project_id, api_key_id): input (cached included), output, cached, requests.
OPENAI_USAGE: list[tuple[dt.date, str, str, str, int, int, int, int]] = [
    (D1, "gpt-4o-mini-2024-07-18", "proj_web", "key_web", 8_000_000, 4_500_000, 1_000_000, 900),
    (D1, "gpt-4o-2024-08-06", "proj_web", "key_web", 2_000_000, 300_000, 0, 400),
    (D2, "gpt-4o-mini-2024-07-18", "proj_web", "key_web", 13_000_000, 5_000_000, 0, 1000),
    (D2, "gpt-4o-2024-08-06", "proj_web", "key_web", 1_600_000, 400_000, 0, 380),
    (D2, "o3-mini-2025-01-31", "proj_batch", "key_batch", 600_000, 250_000, 0, 40),
    (D3, "gpt-4o-mini-2024-07-18", "proj_web", "key_web", 10_000_000, 4_166_667, 0, 800),
    (D3, "gpt-4o-2024-08-06", "proj_web", "key_web", 2_400_000, 200_000, 0, 410),
]

# --- Anthropic: cost report by (workspace_id, description); amounts in cents as decimal strings -----------------
SONNET, HAIKU = "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"
ANTHROPIC_COSTS: list[tuple[dt.date, str | None, str | None, str | None, str]] = [
    # (day, model, token_type, workspace_id, amount in cents); model None = a non-token cost
    (D1, SONNET, "uncached_input_tokens", "wrkspc_app", "300.00"),
    (D1, SONNET, "cache_read_input_tokens", "wrkspc_app", "30.00"),
    (D1, SONNET, "output_tokens", "wrkspc_app", "450.00"),  # sonnet D1: $7.80
    (D1, None, None, "wrkspc_app", "20.00"),  # web search: $0.20, no model
    (D2, SONNET, "uncached_input_tokens", "wrkspc_app", "330.00"),
    (D2, SONNET, "output_tokens", "wrkspc_app", "450.00"),  # sonnet D2: $7.80
    (D2, HAIKU, "output_tokens", None, "123.45"),  # the docs' example amount ($1.2345), default workspace
    (D2, HAIKU, "uncached_input_tokens", None, "20.00"),  # haiku D2: $1.4345
    (D3, SONNET, "uncached_input_tokens", "wrkspc_app", "300.00"),
    (D3, SONNET, "output_tokens", "wrkspc_app", "480.00"),  # sonnet D3: $7.80
]
# (day, model, workspace, api key, uncached, cache_read, cache_creation 5m, cache_creation 1h, output)
ANTHROPIC_USAGE: list[tuple[dt.date, str, str | None, str, int, int, int, int, int]] = [
    (D1, SONNET, "wrkspc_app", "apikey_app", 1_000_000, 1_000_000, 200_000, 50_000, 300_000),
    (D2, SONNET, "wrkspc_app", "apikey_app", 1_100_000, 0, 0, 0, 300_000),
    (D2, HAIKU, None, "apikey_tools", 60_000, 0, 0, 0, 246_900),
    (D3, SONNET, "wrkspc_app", "apikey_app", 1_000_000, 0, 0, 0, 320_000),
]

# --- what llmmeter metered (per provider, request model as the app named it, day): USD, input, output ----------
METERED: dict[tuple[str, str, dt.date], tuple[float, int, int]] = {
    ("openai", "gpt-4o-mini", D1): (4.00, 8_000_000, 4_500_000),
    ("openai", "gpt-4o-mini", D2): (5.10, 13_000_000, 5_000_000),  # +2 % (within 5 %); a restart at noon
    ("openai", "gpt-4o-mini", D3): (4.00, 10_000_000, 4_166_667),
    ("openai", "gpt-4o", D1): (10.00, 2_000_000, 300_000),  # list price; billed 8.00: a 20 % discount
    ("openai", "gpt-4o", D2): (10.00, 1_600_000, 400_000),
    ("openai", "gpt-4o", D3): (10.00, 2_400_000, 200_000),
    ("openai", "gpt-4.1-nano", D3): (0.30, 1_000_000, 500_000),  # metered, never billed
    ("anthropic", "claude-sonnet-4-5", D1): (7.80, 2_250_000, 300_000),
    ("anthropic", "claude-sonnet-4-5", D2): (7.80, 1_100_000, 300_000),
    ("anthropic", "claude-sonnet-4-5", D3): (7.60, 1_000_000, 320_000),  # -2.56 %
    ("anthropic", "claude-haiku-4-5", D2): (1.2345, 10_000, 246_900),
}
RESET_AT_NOON = {("openai", "gpt-4o-mini", D2)}  # the app restarted: the counter starts again from zero
# A label set that made one call, at D2 12:00 (a rare tenant): its series is born with the call's value and never
# moves, so increase() sees nothing; its first value is part of the day. (provider, model, tenant, born, usd,
# input, output)
SPARSE = [("anthropic", "claude-haiku-4-5", "rare", dt.datetime(2026, 11, 2, 12, tzinfo=dt.timezone.utc),
           0.20, 50_000, 0)]


# --- the admin APIs ----------------------------------------------------------------------------------------------
@dataclass
class AdminAPI:
    """Serves one provider's cost and usage reports for D1..D3, paginated, checking each request against the
    documented parameters (a request the real API would refuse gets the 400 the real API sends).

    ``faults`` are replies served (in order) before the real ones: 401, 429 with retry-after, 5xx."""

    provider: str
    faults: list[Reply] = field(default_factory=list)
    seen: list[RecordedRequest] = field(default_factory=list)
    costs: list[tuple] | None = None  # default: OPENAI_COSTS / ANTHROPIC_COSTS
    usage: list[tuple] | None = None  # default: OPENAI_USAGE / ANTHROPIC_USAGE

    def __post_init__(self) -> None:
        openai = self.provider == "openai"
        if self.costs is None:
            self.costs = OPENAI_COSTS if openai else ANTHROPIC_COSTS
        if self.usage is None:
            self.usage = OPENAI_USAGE if openai else ANTHROPIC_USAGE

    def __call__(self, request: RecordedRequest) -> Reply:
        self.seen.append(request)
        if self.faults:
            return self.faults.pop(0)
        params = parse_qs(request.query, keep_blank_values=True)
        try:
            if self.provider == "openai":
                return self._openai(request, params)
            return self._anthropic(request, params)
        except (KeyError, ValueError) as exc:
            return Reply.json({"error": {"message": f"invalid request: {exc}", "type": "invalid_request_error"}},
                              status=400)

    # OpenAI ------------------------------------------------------------------------------------------------
    def _openai(self, request: RecordedRequest, params: dict[str, list[str]]) -> Reply:
        if request.headers.get("authorization") != f"Bearer {OPENAI_KEY}":
            return Reply.json({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                         "code": "invalid_api_key"}}, status=401)
        start = dt.datetime.fromtimestamp(int(params["start_time"][0]), tz=dt.timezone.utc).date()
        end = dt.datetime.fromtimestamp(int(params["end_time"][0]), tz=dt.timezone.utc).date()
        if params.get("bucket_width", ["1d"]) != ["1d"]:
            raise ValueError("bucket_width: only 1d is supported")
        limit = int(params.get("limit", ["7"])[0])
        if request.path == "/v1/organization/costs":
            allowed, max_limit = {"project_id", "line_item"}, 180
        elif request.path == "/v1/organization/usage/completions":
            allowed, max_limit = {"project_id", "user_id", "api_key_id", "model", "batch", "service_tier"}, 31
        else:
            return Reply.json({"error": {"message": f"unknown path {request.path}"}}, status=404)
        if not 1 <= limit <= max_limit:
            raise ValueError(f"limit {limit} out of range 1-{max_limit}")
        if not set(params.get("group_by", [])) <= allowed:
            raise ValueError(f"group_by {params.get('group_by')}")
        days = _days(start, end)
        first = _cursor_day(params, days)
        page_days = days[first:first + min(limit, PAGE_SIZE)]
        buckets = []
        for day in page_days:
            if request.path == "/v1/organization/costs":
                results = [{"object": "organization.costs.result", "amount": {"value": usd, "currency": "usd"},
                            "line_item": item, "project_id": project}
                           for d, item, project, usd in self.costs if d == day]
            else:
                results = [{"object": "organization.usage.completions.result", "input_tokens": inp,
                            "output_tokens": out, "input_cached_tokens": cached, "num_model_requests": n,
                            "project_id": project, "user_id": None, "api_key_id": key, "model": model,
                            "batch": None}
                           for d, model, project, key, inp, out, cached, n in self.usage if d == day]
            buckets.append({"object": "bucket", "start_time": _unix(day),
                            "end_time": _unix(day + dt.timedelta(days=1)), "results": results})
        more = first + len(page_days) < len(days)
        return Reply.json({"object": "page", "data": buckets, "has_more": more,
                           "next_page": _cursor(days[first + len(page_days)]) if more else None})

    # Anthropic ---------------------------------------------------------------------------------------------
    def _anthropic(self, request: RecordedRequest, params: dict[str, list[str]]) -> Reply:
        if request.headers.get("x-api-key") != ANTHROPIC_KEY:
            return Reply.json({"type": "error", "error": {"type": "authentication_error",
                                                          "message": "invalid x-api-key"}}, status=401)
        if not request.headers.get("anthropic-version"):
            raise ValueError("anthropic-version header is required")
        start = dt.datetime.fromisoformat(params["starting_at"][0].replace("Z", "+00:00")).date()
        end = dt.datetime.fromisoformat(params["ending_at"][0].replace("Z", "+00:00")).date()
        if params.get("bucket_width", ["1d"]) != ["1d"]:
            raise ValueError("bucket_width: only 1d is supported here")
        limit = int(params.get("limit", ["7"])[0])
        if not 1 <= limit <= 31:
            raise ValueError(f"limit {limit} out of range 1-31")
        if request.path == "/v1/organizations/cost_report":
            allowed = {"workspace_id", "description"}
        elif request.path == "/v1/organizations/usage_report/messages":
            allowed = {"api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo",
                       "speed", "account_id", "service_account_id"}
        else:
            return Reply.json({"type": "error", "error": {"type": "not_found_error", "message": "Not found"}},
                              status=404)
        if not set(params.get("group_by[]", [])) <= allowed:
            raise ValueError(f"group_by[] {params.get('group_by[]')}")
        days = _days(start, end)
        first = _cursor_day(params, days)
        page_days = days[first:first + min(limit, PAGE_SIZE)]
        buckets = []
        for day in page_days:
            if request.path == "/v1/organizations/cost_report":
                results = [{"amount": cents, "currency": "USD",
                            "description": f"{model} usage - {token_type}" if model else "Web Search",
                            "cost_type": "tokens" if model else "web_search", "context_window": "0-200k" if model
                            else None, "model": model, "service_tier": "standard" if model else None,
                            "token_type": token_type, "workspace_id": workspace}
                           for d, model, token_type, workspace, cents in self.costs if d == day]
            else:
                results = [{"uncached_input_tokens": unc, "cache_read_input_tokens": read,
                            "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
                            "output_tokens": out, "server_tool_use": {"web_search_requests": 0},
                            "api_key_id": key, "workspace_id": workspace, "model": model, "service_tier": None,
                            "context_window": None}
                           for d, model, workspace, key, unc, read, w5, w1, out in self.usage if d == day]
            buckets.append({"starting_at": _iso(day), "ending_at": _iso(day + dt.timedelta(days=1)),
                            "results": results})
        more = first + len(page_days) < len(days)
        return Reply.json({"data": buckets, "has_more": more,
                           "next_page": _cursor(days[first + len(page_days)]) if more else None})


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def _cursor(day: dt.date) -> str:
    """An opaque cursor like the documented ones ("page_MjAyNS0wNS0xNFQwMDowMDowMFo=" is base64 of a time)."""
    return "page_" + base64.b64encode(_iso(day).encode()).decode()


def _cursor_day(params: dict[str, list[str]], days: list[dt.date]) -> int:
    if "page" not in params:
        return 0
    token = params["page"][0]
    if not token.startswith("page_"):
        raise ValueError(f"page {token!r} is not a cursor this server issued")
    day = dt.date.fromisoformat(base64.b64decode(token[5:]).decode()[:10])
    return days.index(day)


# --- llmmeter's metrics for those days, in a real Prometheus ------------------------------------------------------
STEP_S = 300  # one sample every 5 minutes


def openmetrics() -> str:
    """llmmeter's cost and token counters for METERED, as the collector exports them, one sample every 5 min
    from D1 00:00 to UNTIL 00:00. Each day's increase is spread evenly over its 288 steps."""
    cost = names.metric_prometheus_name(names.METRIC_COST)
    tokens = names.metric_prometheus_name(names.METRIC_TOKENS)
    lbl = names.prometheus_label
    series: dict[str, list[tuple[int, float]]] = {}
    steps = 86400 // STEP_S
    for (provider, model, _day) in sorted({(p, m, D1) for p, m, _ in METERED}):
        base = f'{lbl(names.PROVIDER)}="{provider}",{lbl(names.REQUEST_MODEL)}="{model}",service_name="app"'
        for metric, index, extra in ((cost, 0, ""), (tokens, 1, f',{lbl(names.LABEL_TOKEN_TYPE)}="input"'),
                                     (tokens, 2, f',{lbl(names.LABEL_TOKEN_TYPE)}="output"')):
            value, samples = 0.0, [(_unix(D1), 0.0)]
            for day in (D1, D2, D3):
                per_step = METERED.get((provider, model, day), (0.0, 0, 0))[index] / steps
                reset = (provider, model, day) in RESET_AT_NOON
                for k in range(1, steps + 1):
                    # After a restart the new process's counter holds only what it counted since.
                    value = per_step * (k - steps // 2) if reset and k > steps // 2 else value + per_step
                    samples.append((_unix(day) + k * STEP_S, value))
            series[f"{metric}{{{base}{extra}}}"] = samples
    for provider, model, tenant, born, usd, inp, out in SPARSE:
        base = f'{lbl(names.PROVIDER)}="{provider}",{lbl(names.REQUEST_MODEL)}="{model}",service_name="app"'
        base += f',tenant="{tenant}"'
        first, last = int(born.timestamp()), _unix(UNTIL)
        for metric, value, extra in ((cost, usd, ""), (tokens, inp, f',{lbl(names.LABEL_TOKEN_TYPE)}="input"'),
                                     (tokens, out, f',{lbl(names.LABEL_TOKEN_TYPE)}="output"')):
            series[f"{metric}{{{base}{extra}}}"] = [(ts, float(value)) for ts in range(first, last + 1, STEP_S)]
    lines = [f"# TYPE {cost.removesuffix('_total')} counter", f"# TYPE {tokens.removesuffix('_total')} counter"]
    for selector, samples in series.items():
        lines += [f"{selector} {value!r} {ts}" for ts, value in samples]
    return "\n".join(lines) + "\n# EOF\n"


@contextmanager
def prometheus_with_metered(prometheus: str, promtool: str, tmp: pathlib.Path) -> Iterator[str]:
    """A real Prometheus whose TSDB holds :func:`openmetrics` (backfilled with promtool); yields its base URL."""
    data_dir = tmp / "data"
    data_dir.mkdir()
    source = tmp / "metered.om"
    source.write_text(openmetrics())
    result = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    with prometheus_server(prometheus, tmp, {"global": {"scrape_interval": "1m"}}, data_dir=data_dir,
                           args=("--storage.tsdb.retention.time=100y",)) as api:
        yield api.base_url


def main() -> None:
    """Serve both admin APIs and the backfilled Prometheus until interrupted (the README's example output)::

        .venv/bin/python tests/reconcile_fixtures.py
    """
    import shutil
    import signal
    import sys
    import tempfile
    import time

    from replay_server import scripted

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill PID` stops Prometheus too (the with-blocks exit)
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        sys.exit("prometheus and promtool are needed: bash scripts/system-deps.sh")
    with tempfile.TemporaryDirectory() as tmp, \
            prometheus_with_metered(prometheus, promtool, pathlib.Path(tmp)) as url, \
            scripted(AdminAPI("openai")) as oai, scripted(AdminAPI("anthropic")) as ant:
        print(f"export OPENAI_ADMIN_KEY={OPENAI_KEY} ANTHROPIC_ADMIN_KEY={ANTHROPIC_KEY}")
        print(f"llmmeter reconcile openai --since 3d --until {UNTIL} --base-url {oai.base_url} --prometheus {url}")
        print(f"llmmeter reconcile anthropic --since 3d --until {UNTIL} --base-url {ant.base_url} --prometheus {url}",
              flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
