"""Every telemetry name llmmeter emits or reads, in one place.

Dashboards, alert rules, the collector config and the code are all checked against this module
by ``tests/test_names_contract.py``; a rename here that is not carried everywhere fails the suite.
Semantic-convention names come from ``opentelemetry-semantic-conventions`` (GenAI semconv v1.41),
never typed by hand; llmmeter's own names live under the ``llmmeter.`` namespace.
"""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _ga
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as _gm
from opentelemetry.semconv.attributes import error_attributes as _err
from opentelemetry.semconv.attributes import server_attributes as _srv

# --- semconv span attributes -----------------------------------------------------------------
PROVIDER = _ga.GEN_AI_PROVIDER_NAME
OPERATION = _ga.GEN_AI_OPERATION_NAME
REQUEST_MODEL = _ga.GEN_AI_REQUEST_MODEL
RESPONSE_MODEL = _ga.GEN_AI_RESPONSE_MODEL
RESPONSE_ID = _ga.GEN_AI_RESPONSE_ID
FINISH_REASONS = _ga.GEN_AI_RESPONSE_FINISH_REASONS
REQUEST_STREAM = _ga.GEN_AI_REQUEST_STREAM
REQUEST_MAX_TOKENS = _ga.GEN_AI_REQUEST_MAX_TOKENS
REQUEST_TEMPERATURE = _ga.GEN_AI_REQUEST_TEMPERATURE
REQUEST_TOP_P = _ga.GEN_AI_REQUEST_TOP_P
REQUEST_SEED = _ga.GEN_AI_REQUEST_SEED
REQUEST_CHOICE_COUNT = _ga.GEN_AI_REQUEST_CHOICE_COUNT
REQUEST_ENCODING_FORMATS = _ga.GEN_AI_REQUEST_ENCODING_FORMATS
OUTPUT_TYPE = _ga.GEN_AI_OUTPUT_TYPE
INPUT_MESSAGES = _ga.GEN_AI_INPUT_MESSAGES
OUTPUT_MESSAGES = _ga.GEN_AI_OUTPUT_MESSAGES
SYSTEM_INSTRUCTIONS = _ga.GEN_AI_SYSTEM_INSTRUCTIONS
TOOL_DEFINITIONS = _ga.GEN_AI_TOOL_DEFINITIONS
CONTENT_ATTRIBUTES: tuple[str, ...] = (INPUT_MESSAGES, OUTPUT_MESSAGES, SYSTEM_INSTRUCTIONS, TOOL_DEFINITIONS)
TOKEN_TYPE = _ga.GEN_AI_TOKEN_TYPE
LEGACY_SYSTEM = _ga.GEN_AI_SYSTEM  # read (never written) so pre-v1.37 instrumentors are still counted
AGENT_NAME = _ga.GEN_AI_AGENT_NAME
AGENT_ID = _ga.GEN_AI_AGENT_ID
TOOL_NAME = _ga.GEN_AI_TOOL_NAME
TOOL_CALL_ID = _ga.GEN_AI_TOOL_CALL_ID
TOOL_TYPE = _ga.GEN_AI_TOOL_TYPE
CONVERSATION_ID = _ga.GEN_AI_CONVERSATION_ID
OPENAI_RESPONSE_SERVICE_TIER = _ga.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER
OPENAI_REQUEST_SERVICE_TIER = _ga.GEN_AI_OPENAI_REQUEST_SERVICE_TIER
TIME_TO_FIRST_CHUNK = _ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK  # seconds, streams only
ERROR_TYPE = _err.ERROR_TYPE
SERVER_ADDRESS = _srv.SERVER_ADDRESS
SERVER_PORT = _srv.SERVER_PORT

USAGE_INPUT_TOKENS = _ga.GEN_AI_USAGE_INPUT_TOKENS
USAGE_OUTPUT_TOKENS = _ga.GEN_AI_USAGE_OUTPUT_TOKENS
USAGE_CACHE_READ_TOKENS = _ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
USAGE_CACHE_CREATION_TOKENS = _ga.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
USAGE_REASONING_TOKENS = _ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
# Pre-v1.37 spellings, read only, so older instrumentors' spans are still counted.
LEGACY_USAGE_PROMPT_TOKENS = _ga.GEN_AI_USAGE_PROMPT_TOKENS
LEGACY_USAGE_COMPLETION_TOKENS = _ga.GEN_AI_USAGE_COMPLETION_TOKENS
# The GenAI conventions' pending rename of cache_creation (semantic-conventions-genai #440); read, not written.
USAGE_CACHE_WRITE_TOKENS = "gen_ai.usage.cache_write.input_tokens"

# --- other conventions, read only (llmmeter.span_reader.CONVENTIONS maps them) ------------------
# OpenLLMetry (traceloop) before it followed semconv.
LEGACY_USAGE_CACHE_READ_TOKENS = "gen_ai.usage.cache_read_input_tokens"
LEGACY_USAGE_CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation_input_tokens"
LEGACY_USAGE_REASONING_TOKENS = "gen_ai.usage.reasoning_tokens"
LEGACY_USAGE_TOTAL_TOKENS = "llm.usage.total_tokens"
LEGACY_REQUEST_TYPE = "llm.request.type"  # "chat" | "completion" | "embedding"
# OpenInference (Arize Phoenix) semantic conventions.
OI_SPAN_KIND = "openinference.span.kind"  # "LLM" | "EMBEDDING" | "CHAIN" | "TOOL" | "AGENT" | ...
OI_LLM_PROVIDER = "llm.provider"
OI_LLM_SYSTEM = "llm.system"
OI_LLM_MODEL_NAME = "llm.model_name"
OI_TOKEN_COUNT_PROMPT = "llm.token_count.prompt"
OI_TOKEN_COUNT_COMPLETION = "llm.token_count.completion"
OI_TOKEN_COUNT_TOTAL = "llm.token_count.total"
OI_TOKEN_COUNT_CACHE_READ = "llm.token_count.prompt_details.cache_read"
OI_TOKEN_COUNT_CACHE_WRITE = "llm.token_count.prompt_details.cache_write"
OI_TOKEN_COUNT_REASONING = "llm.token_count.completion_details.reasoning"
OI_COST_TOTAL = "llm.cost.total"

# --- semconv enumerated values ---------------------------------------------------------------
OP_CHAT = _ga.GenAiOperationNameValues.CHAT.value
OP_GENERATE_CONTENT = _ga.GenAiOperationNameValues.GENERATE_CONTENT.value
OP_TEXT_COMPLETION = _ga.GenAiOperationNameValues.TEXT_COMPLETION.value
OP_EMBEDDINGS = _ga.GenAiOperationNameValues.EMBEDDINGS.value
OP_INVOKE_AGENT = _ga.GenAiOperationNameValues.INVOKE_AGENT.value
OP_EXECUTE_TOOL = _ga.GenAiOperationNameValues.EXECUTE_TOOL.value
INFERENCE_OPERATIONS: frozenset[str] = frozenset({OP_CHAT, OP_GENERATE_CONTENT, OP_TEXT_COMPLETION, OP_EMBEDDINGS})

PROVIDER_OPENAI = _ga.GenAiProviderNameValues.OPENAI.value
PROVIDER_AZURE_OPENAI = _ga.GenAiProviderNameValues.AZURE_AI_OPENAI.value
PROVIDER_ANTHROPIC = _ga.GenAiProviderNameValues.ANTHROPIC.value
PROVIDER_AWS_BEDROCK = _ga.GenAiProviderNameValues.AWS_BEDROCK.value
PROVIDER_GCP_GEN_AI = _ga.GenAiProviderNameValues.GCP_GEN_AI.value
PROVIDER_GCP_VERTEX_AI = _ga.GenAiProviderNameValues.GCP_VERTEX_AI.value
PROVIDER_GCP_GEMINI = _ga.GenAiProviderNameValues.GCP_GEMINI.value
PROVIDER_MISTRAL = _ga.GenAiProviderNameValues.MISTRAL_AI.value
PROVIDER_COHERE = _ga.GenAiProviderNameValues.COHERE.value
PROVIDER_GROQ = _ga.GenAiProviderNameValues.GROQ.value
PROVIDER_DEEPSEEK = _ga.GenAiProviderNameValues.DEEPSEEK.value
PROVIDER_XAI = _ga.GenAiProviderNameValues.X_AI.value
PROVIDER_PERPLEXITY = _ga.GenAiProviderNameValues.PERPLEXITY.value
# Not (yet) in semconv's enum; lower-case product names as the spec recommends for others.
PROVIDER_OLLAMA = "ollama"
PROVIDER_OPENROUTER = "openrouter"
PROVIDER_TOGETHER = "together_ai"
PROVIDER_FIREWORKS = "fireworks_ai"

TOKEN_TYPE_INPUT = _ga.GenAiTokenTypeValues.INPUT.value
TOKEN_TYPE_OUTPUT = _ga.GenAiTokenTypeValues.OUTPUT.value

# --- llmmeter span attributes ----------------------------------------------------------------
COST_USD = "gen_ai.usage.cost"  # de-facto name (OpenLIT, LiteLLM); USD for this call
COST_SOURCE = "gen_ai.usage.cost.source"  # "local" | "provider" (semantic-conventions-genai PR #443)
LLMMETER_PRICED = "llmmeter.cost.priced"  # False: no price known, COST_USD absent (never a silent 0)
LLMMETER_PRICE_MODEL = "llmmeter.cost.price_model"  # the price-table key the cost came from
LLMMETER_PRICE_TABLE_VERSION = "llmmeter.cost.table_version"
LLMMETER_ESTIMATED = "llmmeter.usage.estimated"  # True: some token counts came from tiktoken
LLMMETER_ESTIMATED_REASON = "llmmeter.usage.estimated_reason"  # e.g. "no_usage_in_stream", "stream_closed_early"
LLMMETER_UNMEASURED = "llmmeter.usage.unmeasured"  # what could not be read from the response, and why
LLMMETER_STREAM_CHUNKS = "llmmeter.stream.chunks"
LLMMETER_BLOCKED = "llmmeter.blocked"  # True: a guard (budget, loop guard) stopped the call before it was sent
LLMMETER_CACHE_WRITE_1H_TOKENS = "llmmeter.usage.cache_creation.1h.input_tokens"  # subset of cache_creation

# Agent-run totals, set on invoke_agent spans before they end.
RUN_LLM_CALLS = "llmmeter.run.llm_calls"
RUN_TOOL_CALLS = "llmmeter.run.tool_calls"
RUN_INPUT_TOKENS = "llmmeter.run.input_tokens"
RUN_OUTPUT_TOKENS = "llmmeter.run.output_tokens"
RUN_CACHE_READ_TOKENS = "llmmeter.run.cache_read.input_tokens"
RUN_CACHE_CREATION_TOKENS = "llmmeter.run.cache_creation.input_tokens"
RUN_REASONING_TOKENS = "llmmeter.run.reasoning.output_tokens"
RUN_COST_USD = "llmmeter.run.cost"
RUN_UNPRICED_CALLS = "llmmeter.run.unpriced_calls"

# Span events.
EVENT_BUDGET_THRESHOLD = "llmmeter.budget.threshold"
EVENT_LOOP_GUARD = "llmmeter.loop_guard.tripped"
EVENT_BUDGET_EXCEEDED = "llmmeter.budget.exceeded"  # on the refused call's span (hard budget)
EVENT_OUTCOME = "llmmeter.outcome"  # record_outcome() on the current span

# Attributes of budget events (EVENT_BUDGET_THRESHOLD, EVENT_BUDGET_EXCEEDED), besides LABEL_BUDGET (the
# budget's name) and LABEL_THRESHOLD (the fraction crossed, "0.8" / "1").
BUDGET_KEY = "llmmeter.budget.key"  # the attribution key the budget matches, e.g. "tenant"
BUDGET_VALUE = "llmmeter.budget.value"  # the value counted, e.g. "acme" (one user for "user=*")
BUDGET_UNIT = "llmmeter.budget.unit"  # "usd" | "tokens" | "calls"
BUDGET_LIMIT = "llmmeter.budget.limit"
BUDGET_SPENT = "llmmeter.budget.spent"
BUDGET_RESETS_AT = "llmmeter.budget.resets_at"  # ISO 8601 UTC end of the window
BUDGET_MODE = "llmmeter.budget.mode"  # "soft" | "hard"

# Attributes of loop-guard events (EVENT_LOOP_GUARD), besides LABEL_GUARD (the reason: max_llm_calls,
# max_tokens, max_cost_usd, repeated_tool_call). Outcome events carry LABEL_OUTCOME and LABEL_SUCCESS.
LOOP_GUARD_LIMIT = "llmmeter.loop_guard.limit"
LOOP_GUARD_VALUE = "llmmeter.loop_guard.value"
LOOP_GUARD_DETAIL = "llmmeter.loop_guard.detail"  # the tool name for repeated_tool_call
LOOP_GUARD_MODE = "llmmeter.loop_guard.mode"  # "soft" | "hard"
RUN_STOPPED_BY = "llmmeter.run.stopped_by"  # on an invoke_agent span: the loop-guard reason that stopped it

# --- cost ledger (llmmeter.ledger) ------------------------------------------------------------
# On an inference span made inside an agent run: the run's id (its invoke_agent span id, 16 hex digits).
RUN_ID = "llmmeter.run.id"
RESOURCE_SERVICE_NAME = "service.name"
LABEL_LEDGER_REASON = "llmmeter.ledger.reason"  # why ledger records were dropped: "queue_full" | "write_failed"
# llmmeter.record_cache(): the app's own (semantic / exact) caches in front of the model.
LABEL_APP_CACHE = "llmmeter.app_cache"  # the cache's name
LABEL_APP_CACHE_RESULT = "llmmeter.app_cache.result"  # "hit" | "miss"

# --- attribution --------------------------------------------------------------------------
# Baggage keys are namespaced so llmmeter never reads another system's "user" entry by accident.
BAGGAGE_PREFIX = "llmmeter."
# Metric label (and span attribute) for an attribution key K is ATTRIBUTION_LABEL_PREFIX + K.
ATTRIBUTION_LABEL_PREFIX = ""
ATTRIBUTION_SPAN_PREFIX = "llmmeter.attr."
DEFAULT_LABEL_KEYS: tuple[str, ...] = ("tenant", "feature", "team", "route", "environment")
# High-cardinality keys the cost ledger records (llmmeter.ledger) and spans carry by default, never metric labels
# unless listed in LLMMETER_LABEL_KEYS: one value per session / conversation / request / prompt template.
LEDGER_ATTRIBUTION_KEYS: tuple[str, ...] = (
    "session", "conversation", "request_id", "prompt", "prompt_version", "experiment",
)
KNOWN_ATTRIBUTION_KEYS: tuple[str, ...] = ("user", *DEFAULT_LABEL_KEYS, *LEDGER_ATTRIBUTION_KEYS)
OVERFLOW_VALUE = "__overflow__"

# --- metric label keys (besides attribution keys) ---------------------------------------------
LABEL_TOKEN_TYPE = "llmmeter.token.type"
LABEL_STATUS = "llmmeter.status"  # "ok" | "error" | "blocked"
LABEL_ESTIMATED = "llmmeter.estimated"  # "true" | "false"
LABEL_PRICED = "llmmeter.priced"  # "true" | "false"
LABEL_BUDGET = "llmmeter.budget"
LABEL_THRESHOLD = "llmmeter.threshold"
LABEL_GUARD = "llmmeter.guard"
LABEL_OUTCOME = "llmmeter.outcome"
LABEL_SUCCESS = "llmmeter.success"
LABEL_ATTRIBUTION_KEY = "llmmeter.attribution.key"

TOKEN_TYPES: tuple[str, ...] = ("input", "output", "cache_read", "cache_creation", "reasoning")

# --- metrics ----------------------------------------------------------------------------------
METRIC_TOKEN_USAGE = _gm.GEN_AI_CLIENT_TOKEN_USAGE  # histogram, {token}
METRIC_OPERATION_DURATION = _gm.GEN_AI_CLIENT_OPERATION_DURATION  # histogram, s
METRIC_TIME_TO_FIRST_CHUNK = _gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK  # histogram, s
METRIC_TOKENS = "llmmeter.tokens"  # counter, {token}, by LABEL_TOKEN_TYPE
METRIC_COST = "llmmeter.cost"  # counter, USD
METRIC_REQUESTS = "llmmeter.requests"  # counter, {request}, by status/estimated/priced
METRIC_ATTRIBUTION_OVERFLOW = "llmmeter.attribution.overflow"  # counter, {value}
METRIC_BUDGET_SPEND = "llmmeter.budget.spend_ratio"  # gauge, fraction of the limit spent in the window
METRIC_BUDGET_CROSSINGS = "llmmeter.budget.crossings"  # counter, {crossing}
METRIC_BUDGET_BLOCKED = "llmmeter.budget.blocked"  # counter, {request}
METRIC_AGENT_RUNS = "llmmeter.agent.runs"  # counter, {run}
METRIC_AGENT_RUN_COST = "llmmeter.agent.run.cost"  # histogram, USD
METRIC_AGENT_RUN_LLM_CALLS = "llmmeter.agent.run.llm_calls"  # histogram, {call}
METRIC_LOOP_GUARD_TRIPS = "llmmeter.loop_guard.trips"  # counter, {trip}
METRIC_OUTCOMES = "llmmeter.outcomes"  # counter, {outcome}
# Written by `llmmeter reconcile` (a batch job, node_exporter textfile), never by an instrumented app.
METRIC_RECONCILE_DRIFT = "llmmeter.reconcile.drift_ratio"  # gauge, (metered - billed) / billed per model
CLI_METRICS: frozenset[str] = frozenset({METRIC_RECONCILE_DRIFT})
METRIC_LEDGER_DROPPED = "llmmeter.ledger.dropped"  # counter, {record}, by LABEL_LEDGER_REASON
METRIC_APP_CACHE_LOOKUPS = "llmmeter.app_cache.lookups"  # counter, {lookup}, by LABEL_APP_CACHE(_RESULT)

UNIT_TOKEN = "{token}"
UNIT_SECONDS = "s"
UNIT_USD = "USD"

# semconv v1.41 advisory bucket boundaries.
TOKEN_USAGE_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
COST_BUCKETS: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 50, 100)
CALLS_BUCKETS: tuple[float, ...] = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89)


def prometheus_name(metric: str, unit: str, *, counter: bool) -> str:
    """The name Prometheus shows for an OTLP metric, as both the collector's ``prometheus`` exporter
    (``add_metric_suffixes: true``, the pinned default) and ``opentelemetry-exporter-prometheus`` write it:
    dots to underscores, the unit appended unless it is a ``{annotation}`` (``s`` -> ``seconds``),
    ``_total`` on monotonic counters."""
    name = metric.replace(".", "_").replace("-", "_")
    unit_suffix = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}.get(unit, unit)
    if unit_suffix and not unit.startswith("{") and not name.endswith("_" + unit_suffix):
        name = f"{name}_{unit_suffix}"
    if counter:
        name += "_total"
    return name


def prometheus_label(key: str) -> str:
    """The Prometheus label name for an OTLP attribute key (dots and dashes to underscores)."""
    return key.replace(".", "_").replace("-", "_")


# --- metric instruments: kind and unit ----------------------------------------------------------
# The unit is part of a metric's contract: it becomes the Prometheus name suffix (prometheus_name()),
# so dashboards, alert rules and the collector config are generated from / checked against this table.
KIND_COUNTER = "counter"  # monotonic sum -> `_total`
KIND_HISTOGRAM = "histogram"  # -> `_bucket`, `_sum`, `_count`
KIND_GAUGE = "gauge"
METRIC_SPECS: dict[str, tuple[str, str]] = {  # metric name -> (kind, unit)
    METRIC_TOKEN_USAGE: (KIND_HISTOGRAM, UNIT_TOKEN),
    METRIC_OPERATION_DURATION: (KIND_HISTOGRAM, UNIT_SECONDS),
    METRIC_TIME_TO_FIRST_CHUNK: (KIND_HISTOGRAM, UNIT_SECONDS),
    METRIC_TOKENS: (KIND_COUNTER, UNIT_TOKEN),
    METRIC_COST: (KIND_COUNTER, UNIT_USD),
    METRIC_REQUESTS: (KIND_COUNTER, "{request}"),
    METRIC_ATTRIBUTION_OVERFLOW: (KIND_COUNTER, "{value}"),
    METRIC_BUDGET_SPEND: (KIND_GAUGE, "1"),
    METRIC_BUDGET_CROSSINGS: (KIND_COUNTER, "{crossing}"),
    METRIC_BUDGET_BLOCKED: (KIND_COUNTER, "{request}"),
    METRIC_AGENT_RUNS: (KIND_COUNTER, "{run}"),
    METRIC_AGENT_RUN_COST: (KIND_HISTOGRAM, UNIT_USD),
    METRIC_AGENT_RUN_LLM_CALLS: (KIND_HISTOGRAM, "{call}"),
    METRIC_LOOP_GUARD_TRIPS: (KIND_COUNTER, "{trip}"),
    METRIC_OUTCOMES: (KIND_COUNTER, "{outcome}"),
    METRIC_RECONCILE_DRIFT: (KIND_GAUGE, "1"),
    METRIC_LEDGER_DROPPED: (KIND_COUNTER, "{record}"),
    METRIC_APP_CACHE_LOOKUPS: (KIND_COUNTER, "{lookup}"),
}


def metric_prometheus_name(metric: str) -> str:
    """``prometheus_name()`` for a metric of METRIC_SPECS, with its declared unit and kind."""
    kind, unit = METRIC_SPECS[metric]
    return prometheus_name(metric, unit, counter=kind == KIND_COUNTER)

# --- agent frameworks (llmmeter.frameworks) ---------------------------------------------------------
# On invoke_agent spans (and as a label of METRIC_AGENT_RUNS) when a framework instrumentor made the run.
AGENT_FRAMEWORK = "llmmeter.agent.framework"  # "openai-agents" | "langgraph" | "pydantic-ai" | ...
AGENT_STEP = "llmmeter.agent.step"  # a graph node / framework step name, on its span
AGENT_STEP_INDEX = "llmmeter.agent.step.index"  # the graph's superstep number (LangGraph), on a step span
HANDOFF_FROM = "llmmeter.agent.handoff.from"  # on a handoff span: the agent handing off
HANDOFF_TO = "llmmeter.agent.handoff.to"  # ... and the agent taking over
GUARDRAIL_NAME = "llmmeter.agent.guardrail.name"
GUARDRAIL_TRIGGERED = "llmmeter.agent.guardrail.triggered"  # bool: the guardrail's tripwire fired
MCP_SERVER = "llmmeter.mcp.server"  # on execute_tool spans of MCP tools: the server's name
FRAMEWORK_OPENAI_AGENTS = "openai-agents"
FRAMEWORK_LANGGRAPH = "langgraph"
FRAMEWORK_MCP = "mcp"
FRAMEWORK_PYDANTIC_AI = "pydantic-ai"
FRAMEWORK_CREWAI = "crewai"


# --- prices: how a call was priced, cache economics, estimate checks, table age (issue 12) ---------------------
# Where the cost came from: "local" (llmmeter's price table) or "provider" (the provider reported it: OpenRouter's
# usage.cost, a LiteLLM proxy's response-cost header): values of COST_SOURCE (defined with COST_USD above).
COST_SOURCE_LOCAL = "local"
COST_SOURCE_PROVIDER = "provider"
LLMMETER_PRICE_SERVICE_TIER = "llmmeter.cost.service_tier"  # the rates used: standard | flex | priority | batch
LLMMETER_PRICE_LONG_CONTEXT = "llmmeter.cost.long_context_threshold"  # input tokens above which tier rates applied
LLMMETER_PRICE_DISCOUNT = "llmmeter.cost.discount"  # negotiated multiplier applied to the list price (0.8)
LLMMETER_UNPRICED_REASON = "llmmeter.cost.unpriced_reason"  # unknown_model | invalid_usage | no_price | ...
LLMMETER_CACHE_SAVINGS = "llmmeter.cost.cache_savings"  # USD cache reads saved against the uncached input rate
LLMMETER_CACHE_WRITE_PREMIUM = "llmmeter.cost.cache_write_premium"  # USD cache writes cost above that rate
LLMMETER_SERVICE_TIER = "llmmeter.response.service_tier"  # the tier the provider reported serving the call at
LLMMETER_AUDIO_INPUT_TOKENS = "llmmeter.usage.audio.input_tokens"  # subset of input
LLMMETER_IMAGE_INPUT_TOKENS = "llmmeter.usage.image.input_tokens"  # subset of input
LLMMETER_AUDIO_OUTPUT_TOKENS = "llmmeter.usage.audio.output_tokens"  # subset of output
LLMMETER_IMAGE_OUTPUT_TOKENS = "llmmeter.usage.image.output_tokens"  # subset of output
LLMMETER_ESTIMATE_INPUT_TOKENS = "llmmeter.estimate.input_tokens"  # input tokens estimated before the call was sent
LITELLM_RESPONSE_COST_HEADER = "x-litellm-response-cost"  # a LiteLLM proxy's per-response cost (USD)

METRIC_CACHE_SAVINGS = "llmmeter.cache.savings"  # counter, USD saved by cache reads
METRIC_CACHE_WRITE_PREMIUM = "llmmeter.cache.write_premium"  # counter, USD cache writes cost above uncached input
# histogram of estimate / provider count (1 = exact, above 1: the estimate was high): OTel histograms take no
# negative values, so the error is recorded as this ratio.
METRIC_ESTIMATE_ERROR = "llmmeter.estimate.error"
METRIC_PRICE_TABLE_AGE = "llmmeter.price_table.age"  # gauge, s since the price table in force was published
ESTIMATE_ERROR_BUCKETS: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.98, 1, 1.02, 1.05, 1.1, 1.25, 1.5, 2)
METRIC_SPECS.update({
    METRIC_CACHE_SAVINGS: (KIND_COUNTER, UNIT_USD),
    METRIC_CACHE_WRITE_PREMIUM: (KIND_COUNTER, UNIT_USD),
    METRIC_ESTIMATE_ERROR: (KIND_HISTOGRAM, "{ratio}"),
    METRIC_PRICE_TABLE_AGE: (KIND_GAUGE, UNIT_SECONDS),
})

# --- guards hardening (issue 9: attribution normalization, budget reservations) ---------------------
# Attribution values that were not label-safe: counter by LABEL_ATTRIBUTION_KEY and LABEL_ATTRIBUTION_CHANGE
# ("trimmed" | "hashed" | "dropped"); see llmmeter.attribution.normalize_value.
METRIC_ATTRIBUTION_NORMALIZED = "llmmeter.attribution.normalized"  # counter, {value}
LABEL_ATTRIBUTION_CHANGE = "llmmeter.attribution.change"
METRIC_SPECS[METRIC_ATTRIBUTION_NORMALIZED] = (KIND_COUNTER, "{value}")
# On a call refused by a hard budget: what the calls in flight had reserved, and what this call would have.
BUDGET_IN_FLIGHT = "llmmeter.budget.in_flight"
BUDGET_RESERVATION = "llmmeter.budget.reservation"

# --- start-up configuration kept up despite an error (LLMMETER_ON_CONFIG_ERROR=warn) --------------------
# One point per broken part ("settings", "price_file", "budgets_file", "budgets", "budget_store"), value 1
# for as long as the process runs with that part disabled: an alert on `> 0` finds every such process.
METRIC_CONFIG_ERRORS = "llmmeter.config.errors"  # observable counter, {error}, by LABEL_CONFIG_PART
LABEL_CONFIG_PART = "llmmeter.config.part"
METRIC_SPECS[METRIC_CONFIG_ERRORS] = (KIND_COUNTER, "{error}")
# Metrics a healthy instrumented app does not serve: a CLI batch job's, or only with a setting disabled.
NOT_SERVED_BY_A_HEALTHY_APP: frozenset[str] = frozenset({*CLI_METRICS, METRIC_CONFIG_ERRORS})

# --- instrumentation scope (dashboards/alerts read the semconv histograms of llmmeter's scope only) -----
# Every instrumentor records gen_ai.client.token.usage / operation.duration itself (openai-v2 beside
# llmmeter: two records per call), so a query over those histograms keeps llmmeter's scope. Prometheus
# exporters add the scope name as the ``otel_scope_name`` label (OTel spec, compatibility/
# prometheus_and_openmetrics.md; opentelemetry-exporter-prometheus does, see tests/test_dashboards_dedup.py).
OTEL_SCOPE_NAME = "otel.scope.name"
LLMMETER_SCOPE = "llmmeter"  # the meter name of llmmeter's span processor and guard telemetry
