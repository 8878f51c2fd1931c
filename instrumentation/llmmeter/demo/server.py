"""A local OpenAI-wire server on 127.0.0.1 for the demo: deterministic replies, real usage blocks.

It speaks the parts of the OpenAI REST API the demo uses (chat completions, streaming with and without
``stream_options.include_usage``, embeddings, tool calls) in the shapes of the OpenAI API reference, so
the real ``openai`` SDK and llmmeter run exactly as they would against the provider. Token counts are
tiktoken counts of what it sends and receives, and a repeated prompt reports cached tokens the way
OpenAI's prompt caching does (in 128-token blocks past the first 1,024).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llmmeter import estimate

_REPLIES = (
    "Your order ships tomorrow; you will get a tracking link by email.",
    "Here is a three-line summary: costs are up, usage is flat, and caching saves a third.",
    "The refund was approved and will reach your card within five business days.",
    "I found four documents that match; the newest is the Q3 pricing review.",
)


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


class _State:
    def __init__(self) -> None:
        self.seen_prompts: set[str] = set()
        self.lock = threading.Lock()
        self.requests = 0


class _Handler(BaseHTTPRequestHandler):
    server: DemoServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return
        with self.server.state.lock:
            self.server.state.requests += 1
        path = self.path.split("?", 1)[0]
        if path.endswith("/chat/completions"):
            self._chat(body)
        elif path.endswith("/embeddings"):
            self._embeddings(body)
        else:
            self._json(404, {"error": {"message": f"unknown path {path}", "type": "invalid_request_error"}})

    # -- chat -----------------------------------------------------------------------------------
    def _usage(self, model: str, messages: list[dict[str, Any]], reply: str) -> dict[str, Any]:
        prompt = _prompt_text(messages)
        prompt_tokens = estimate.count_tokens(prompt, model)[0] + 3 * len(messages) + 3
        completion_tokens = estimate.count_tokens(reply, model)[0]
        key = hashlib.sha256(prompt.encode()).hexdigest()
        state = self.server.state
        with state.lock:
            repeated = key in state.seen_prompts
            state.seen_prompts.add(key)
        cached = (prompt_tokens // 128) * 128 if repeated and prompt_tokens >= 1024 else 0
        # Claude models (through an OpenAI-compatible endpoint) bill writing the cache: the first long prompt writes.
        written = (prompt_tokens // 128) * 128 if not repeated and prompt_tokens >= 1024 and model.startswith(
            "claude") else 0
        reasoning = completion_tokens // 2 if model.startswith(("o1", "o3", "o4")) else 0
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens + reasoning,
            "total_tokens": prompt_tokens + completion_tokens + reasoning,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0,
                                      **({"cache_write_tokens": written} if written else {})},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
        }

    def _chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model") or "gpt-4o-mini")
        messages = body.get("messages") or []
        prompt = _prompt_text(messages)
        reply = _REPLIES[int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % len(_REPLIES)]
        completion_id = "chatcmpl-demo" + hashlib.sha256(prompt.encode()).hexdigest()[:20]
        tool_call = None
        if body.get("tools"):
            tool = body["tools"][0]["function"]["name"]
            tool_call = {"id": "call_demo", "type": "function",
                         "function": {"name": tool, "arguments": json.dumps({"query": "order 1234"})}}
        usage = self._usage(model, messages, reply if tool_call is None else json.dumps(tool_call))
        created = int(time.time())
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else reply}
            if tool_call:
                message["tool_calls"] = [tool_call]
            self._json(200, {
                "id": completion_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if tool_call else "stop"}],
                "usage": usage,
            })
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(payload: str) -> None:
            data = f"data: {payload}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        words = reply.split(" ")
        for i, word in enumerate(words):
            delta = {"content": word if i == 0 else " " + word}
            if i == 0:
                delta["role"] = "assistant"
            send(json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                             "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
        send(json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            send(json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                             "model": model, "choices": [], "usage": usage}))
        send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")

    # -- embeddings -----------------------------------------------------------------------------
    def _embeddings(self, body: dict[str, Any]) -> None:
        model = str(body.get("model") or "text-embedding-3-small")
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        tokens = sum(estimate.count_tokens(str(i), model)[0] for i in items)
        data = []
        for index, item in enumerate(items):
            seed = hashlib.sha256(str(item).encode()).digest()
            data.append({"object": "embedding", "index": index, "embedding": [b / 255 for b in seed[:8]]})
        self._json(200, {"object": "list", "data": data, "model": model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


class DemoServer(ThreadingHTTPServer):
    """``with DemoServer() as server: openai.OpenAI(base_url=server.base_url, api_key="demo")``."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = _State()
        self._thread = threading.Thread(target=self.serve_forever, name="llmmeter-demo-server", daemon=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-stream (the demo closes streams early on purpose) is not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> DemoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
