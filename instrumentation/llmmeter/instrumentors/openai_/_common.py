"""What every OpenAI translation shares: which provider a client talks to, request attributes, raw
responses, token counts read defensively, and prompt-size estimates.

Everything here reads SDK objects through :func:`llmmeter.usage.field_of` (pydantic models and dicts
alike, never serialized on the hot path) and returns None / a note instead of raising: a response
shape llmmeter does not understand must leave the app's call untouched.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from llmmeter import config, estimate, names
from llmmeter.call import AttributeValue, RequestInfo, ResponseInfo
from llmmeter.instrumentors._sdk import TextBuffer, given  # noqa: F401  (re-exported)
from llmmeter.instrumentors._wrap import Translation
from llmmeter.usage import MAX_COUNT, Usage, as_count, field_of

# Larger counts are garbage (a malformed proxy); they would also overflow OTLP's int64 attributes. The bound is
# written once, in llmmeter.usage (MAX_COUNT), which also refuses to price beyond it.
MAX_TOKEN_COUNT = MAX_COUNT

# Notes for names.LLMMETER_UNMEASURED: what could not be read, and why.
NOTE_USAGE_MISSING = "usage_missing"
NOTE_RAW_STREAM = "raw_streaming_response"
NOTE_RAW_UNREAD = "raw_response_body_unread"
NOTE_RAW_UNPARSEABLE = "raw_response_unparseable"
NOTE_NON_TEXT_INPUT = "non_text_input_not_estimated"
NOTE_OUTPUT_TRUNCATED = "output_text_truncated"
NOTE_TOKENIZER = "tokenizer_not_ready"

OPENAI = names.PROVIDER_OPENAI

# OpenAI-compatible hosts, matched on the base_url's host name (exact or sub-domain).
_HOST_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("openai.azure.com", names.PROVIDER_AZURE_OPENAI),
    ("groq.com", names.PROVIDER_GROQ),
    ("deepseek.com", names.PROVIDER_DEEPSEEK),
    ("openrouter.ai", names.PROVIDER_OPENROUTER),
    ("together.xyz", names.PROVIDER_TOGETHER),
    ("together.ai", names.PROVIDER_TOGETHER),
    ("fireworks.ai", names.PROVIDER_FIREWORKS),
    ("x.ai", names.PROVIDER_XAI),
    ("perplexity.ai", names.PROVIDER_PERPLEXITY),
    ("mistral.ai", names.PROVIDER_MISTRAL),
)
_OLLAMA_PORT = 11434
# openai>=3 clients configured with ``provider=openai.providers.bedrock(...)`` / ``vertex(...)``.
_RUNTIME_PROVIDERS = {"bedrock": names.PROVIDER_AWS_BEDROCK, "vertex": names.PROVIDER_GCP_VERTEX_AI}

# Input parts that carry no text we can count (images, audio, files): their tokens are not estimated.
_NON_TEXT_PARTS = frozenset({"image_url", "input_image", "input_audio", "input_file", "file", "image", "audio"})
_TEXT_KEYS = ("text", "content", "refusal")


@dataclass(slots=True)
class OpenAIRequest(RequestInfo):
    """RequestInfo plus what the OpenAI translations need later, captured as closures over the
    call's arguments so nothing is serialized unless it is needed."""

    # (tokens, method, notes): the prompt's size with the chat-format overhead, for when usage is missing.
    input_estimate: Callable[[], tuple[int, str, list[str]]] | None = None
    capture: bool = False  # content capture opted in (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT)


class OpenAITranslation(Translation):
    """What every OpenAI endpoint's translation does alike; subclasses read their endpoint's arguments
    (``request``, building on :meth:`openai_request`) and parsed responses (``read``).

    A ``with_raw_response`` / ``with_streaming_response`` result is unwrapped here once for all of them, and
    one that cannot be read without consuming the app's body is marked, its input estimated.
    """

    operation: str

    def openai_request(
        self,
        instance: Any,
        kwargs: dict[str, Any],
        model: str | None,
        fields: tuple[tuple[str, str, type], ...],
        input_messages: Callable[[], Any],
        prompt_text: Callable[[], str],
        input_estimate: Callable[[], tuple[int, str, list[str]]],
    ) -> OpenAIRequest:
        """The call's request: provider and server from the client, ``fields`` as attributes, and the input
        messages (``input_messages()``) only when content capture is opted in."""
        provider, host, port = endpoint(instance)
        attributes = request_attributes(kwargs, host, port, fields)
        capture = config.settings().capture_content
        if capture:
            attributes[names.INPUT_MESSAGES] = json_attribute(input_messages())
        return OpenAIRequest(
            provider=provider,
            operation=self.operation,
            model=model,
            attributes=attributes,
            stream=kwargs.get("stream") is True,
            prompt_text=prompt_text,
            input_estimate=input_estimate,
            capture=capture,
        )

    def is_stream(self, request: Any, result: Any) -> bool:
        return is_stream_result(request, result)

    def response(self, request: Any, result: Any) -> ResponseInfo:
        info = ResponseInfo()
        obj, note = unwrap_raw(request, result)
        if obj is None:
            info.unmeasured.append(note or "response_unreadable")
            info.usage = fill_input_estimate(request, self.unread_usage(), info)
            return info
        self.read(request, obj, result, info)
        return info

    def read(self, request: Any, obj: Any, result: Any, info: ResponseInfo) -> None:  # pragma: no cover - overridden
        """Fill ``info`` from the parsed response ``obj`` (``result`` is what the SDK returned, maybe raw)."""
        raise NotImplementedError

    def unread_usage(self) -> Usage | None:
        """The usage known without reading the response (None: nothing; embeddings know output is 0)."""
        return None


def arg(kwargs: dict[str, Any], name: str) -> Any:
    value = kwargs.get(name)
    return value if given(value) else None


def count(value: Any) -> int | None:
    """A token count as a non-negative int, or None for anything that is not a sane count."""
    result = as_count(value)
    return result if result is None or result <= MAX_TOKEN_COUNT else None


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def items(value: Any) -> list[Any] | tuple[Any, ...]:
    """``value`` if it is a list or tuple, else empty: SDK fields and app arguments can be anything."""
    return value if isinstance(value, (list, tuple)) else ()


def dedupe(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


# --- where the call goes ------------------------------------------------------------------------


def _host_provider(host: str, port: int | None) -> str:
    host = host.lower().rstrip(".")
    for suffix, provider in _HOST_PROVIDERS:
        if host == suffix or host.endswith("." + suffix):
            return provider
    if port == _OLLAMA_PORT or "ollama" in host:
        return names.PROVIDER_OLLAMA
    return OPENAI


# endpoint() per client, checked against the client's current base_url and runtime objects (the SDK
# replaces them when they change), so a long-lived client resolves its host once, not on every call.
_MAX_ENDPOINTS = 256
_endpoints: dict[int, tuple[type, Any, Any, tuple[str, str | None, int | None]]] = {}


def endpoint(instance: Any) -> tuple[str, str | None, int | None]:
    """(provider, server.address, server.port) for the client a resource belongs to."""
    client = getattr(instance, "_client", None)
    try:
        url = getattr(client, "_base_url", None)
        runtime = getattr(client, "_provider_runtime", None)
    except Exception:
        return _endpoint(client)
    cached = _endpoints.get(id(client))
    if cached is not None and cached[0] is type(client) and cached[1] is url and cached[2] is runtime:
        return cached[3]
    found = _endpoint(client)
    if url is not None:  # a client without a URL object (a test double) is not cached
        if len(_endpoints) >= _MAX_ENDPOINTS:
            _endpoints.clear()
        _endpoints[id(client)] = (type(client), url, runtime, found)
    return found


def _endpoint(client: Any) -> tuple[str, str | None, int | None]:
    host: str | None = None
    port: int | None = None
    try:
        url = client.base_url if client is not None else None
        if url is not None:
            host = url.host or None
            port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    except Exception:
        pass
    if _is_azure_client(client):
        return names.PROVIDER_AZURE_OPENAI, host, port
    runtime_name = getattr(getattr(client, "_provider_runtime", None), "name", None)
    if isinstance(runtime_name, str) and runtime_name in _RUNTIME_PROVIDERS:
        return _RUNTIME_PROVIDERS[runtime_name], host, port
    return (_host_provider(host, port) if host else OPENAI), host, port


def _is_azure_client(client: Any) -> bool:
    if client is None:
        return False
    try:
        import openai

        return isinstance(client, (openai.AzureOpenAI, openai.AsyncAzureOpenAI))
    except Exception:
        return False


def request_attributes(
    kwargs: dict[str, Any], host: str | None, port: int | None, fields: tuple[tuple[str, str, type], ...]
) -> dict[str, AttributeValue]:
    """Span attributes from call arguments: ``fields`` maps an attribute to (argument, expected type)."""
    attrs: dict[str, AttributeValue] = {}
    if host:
        attrs[names.SERVER_ADDRESS] = host
    if port:
        attrs[names.SERVER_PORT] = port
    for attribute, argument, kind in fields:
        value = kwargs.get(argument)
        if value is None or isinstance(value, bool) or not given(value):
            continue
        if kind is float and isinstance(value, (int, float)):
            attrs[attribute] = float(value)
        elif isinstance(value, kind):
            attrs[attribute] = value
    return attrs


# --- raw responses (with_raw_response / with_streaming_response) --------------------------------


def unwrap_raw(request: RequestInfo, result: Any) -> tuple[Any, str | None]:
    """(the SDK's parsed response, None) or (None, why it cannot be read).

    ``with_raw_response`` returns a ``LegacyAPIResponse`` whose body is already read: its ``parse()``
    caches the parsed object, so reading usage through it costs the app nothing and the app's own
    ``parse()`` returns the very same object. A raw *stream* would have to be consumed to be measured,
    and ``with_streaming_response`` bodies are unread: both are left alone and marked unmeasured.
    Matched by class name so SDK module moves do not break it.
    """
    kind = type(result).__name__
    if kind == "LegacyAPIResponse":
        if request.stream:
            return None, NOTE_RAW_STREAM
        try:
            return result.parse(), None
        except Exception:
            return None, NOTE_RAW_UNPARSEABLE
    if kind in ("APIResponse", "AsyncAPIResponse"):
        return None, NOTE_RAW_STREAM if request.stream else NOTE_RAW_UNREAD
    return result, None


def header_cost(result: Any) -> float | None:
    """A LiteLLM proxy's per-response cost header (``x-litellm-response-cost``, USD) on a ``with_raw_response``
    result; None otherwise. The SDK's parsed objects keep no headers, so a plain call cannot carry it."""
    if type(result).__name__ != "LegacyAPIResponse":
        return None
    try:
        raw = result.headers.get(names.LITELLM_RESPONSE_COST_HEADER)
        value = float(raw) if raw is not None else None
    except (AttributeError, TypeError, ValueError):
        return None
    return value if value is not None and 0 <= value < 1e9 else None


def is_stream_result(request: RequestInfo, result: Any) -> bool:
    return request.stream and type(result).__name__ not in ("LegacyAPIResponse", "APIResponse", "AsyncAPIResponse")


# --- estimates ----------------------------------------------------------------------------------


# While fill_input_estimate runs an estimator, count_texts only collects the texts: they are counted later,
# off the app's thread when they are long (llmmeter.call hands the call to llmmeter.background).
_collector = threading.local()


def count_texts(texts: Iterable[str], model: str | None) -> tuple[int, str]:
    sink = getattr(_collector, "texts", None)
    if sink is not None:
        sink.extend(piece for piece in texts if piece)
        return 0, estimate.METHOD_TIKTOKEN
    total = 0
    method = estimate.METHOD_TIKTOKEN
    for piece in texts:
        if piece:
            n, how = estimate.count_tokens(piece, model)
            total += n
            if how != estimate.METHOD_TIKTOKEN:
                method = how
    return total, method


def content_texts(content: Any, notes: list[str]) -> list[str]:
    """The countable text of a message's ``content`` (a string or a list of typed parts)."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, (list, tuple)):
        for part in content:
            if isinstance(part, str):
                out.append(part)
                continue
            kind = field_of(part, "type")
            if kind in _NON_TEXT_PARTS:
                if NOTE_NON_TEXT_INPUT not in notes:
                    notes.append(NOTE_NON_TEXT_INPUT)
                continue
            for key in _TEXT_KEYS:
                value = field_of(part, key)
                if isinstance(value, str):
                    out.append(value)
                    break
    return out


def chat_overhead(messages: int) -> int:
    """Chat-format tokens around the messages: role/separator tokens per message, and the reply primer."""
    return messages * estimate.TOKENS_PER_MESSAGE + estimate.TOKENS_REPLY_PRIMER


def fill_input_estimate(request: RequestInfo, usage: Usage | None, response: ResponseInfo) -> Usage | None:
    """When the provider reported no input count, capture what to count for it (chat overhead included).

    The generic estimate in :mod:`llmmeter.call` counts one prompt string; OpenAI's chat format adds a
    few tokens per message, so the translation hands over its own texts and overhead
    (``response.input_texts``) and leaves the counting, and ``output``, to the core. The texts are captured
    now: the app may change its messages list as soon as the call returns.
    """
    if usage is not None and usage.input is not None:
        return usage
    estimator = getattr(request, "input_estimate", None)
    if estimator is None:
        return usage
    sink: list[str] = []
    _collector.texts = sink
    try:
        extra, _method, notes = estimator()  # count_texts collects into sink; extra = overhead, token ids
    except Exception:
        return usage
    finally:
        _collector.texts = None
    response.input_texts = (tuple(sink), extra)
    for note in notes:
        if note not in response.unmeasured:
            response.unmeasured.append(note)
    return usage


def json_attribute(value: Any) -> str:
    """A content attribute value: JSON, as the semconv message schemas define it."""
    return json.dumps(value, ensure_ascii=False, default=str)


def text_parts(texts: Iterable[str]) -> list[dict[str, Any]]:
    return [{"type": "text", "content": t} for t in texts if t]


def build_usage(
    input_: int | None, output: int | None, cache_read: int, cache_write: int, reasoning: int, notes: list[str]
) -> Usage:
    """A :class:`Usage` whose subsets are consistent (semconv: cache counts within input, reasoning
    within output); counts that contradict each other are dropped and noted rather than priced."""
    if cache_read or cache_write:
        if input_ is None:  # the total will be an estimate: subsets of it cannot be trusted against it
            notes.append("usage.cached_tokens_without_input")
            cache_read = cache_write = 0
        elif cache_read + cache_write > input_:
            notes.append("usage.cached_tokens_exceed_input")
            cache_read = cache_write = 0
    if reasoning:
        if output is None:
            notes.append("usage.reasoning_tokens_without_output")
            reasoning = 0
        elif reasoning > output:
            notes.append("usage.reasoning_tokens_exceed_output")
            reasoning = 0
    return Usage(input=input_, output=output, cache_read=cache_read, cache_creation=cache_write, reasoning=reasoning)


def read_count(obj: Any, field: str, notes: list[str], label: str) -> int | None:
    """``obj.field`` as a count; a present-but-unusable value is noted (``usage.<field>_invalid``)."""
    value = field_of(obj, field)
    result = count(value)
    if result is None:
        notes.append(f"{label}.{field}_{'missing' if value is None else 'invalid'}")
    return result
