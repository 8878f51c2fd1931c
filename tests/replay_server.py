"""Replay recorded provider traffic (VCR cassettes) from a real HTTP server on 127.0.0.1.

vcrpy patches ``httpx``; openai 3.x (and other new SDKs) talk through ``httpx2``, which vcrpy does not
know. Rather than monkeypatching SDK internals, tests point the real SDK's ``base_url`` at this server:
the SDK builds, sends and parses real HTTP exactly as in production, and the server answers with the
recorded status, headers and body bytes (gzip bodies stay gzip, SSE bodies stay SSE).

Usage::

    with replay("openai/tests/traces/cassettes/test_chat/test_chat.yaml") as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test-key", max_retries=0)
        client.chat.completions.create(...)
        assert server.requests[0].json["model"] == "gpt-3.5-turbo"

:class:`ScriptedServer` serves responses computed by a callable instead (fuzzing, error injection).
Requests sent through an HTTP proxy (absolute-form request targets) are answered too, so a test can
keep a provider's real host name in ``base_url`` (``http://api.groq.com/openai/v1``) and route the
connection here with ``proxy=server.base_url``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import yaml

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
CASSETTES_DIR = os.path.join(TESTS_DIR, "cassettes")

# Hop-by-hop or length headers the server recomputes; the recorded values describe the original wire.
_DROP_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Interaction:
    """One recorded request/response pair."""

    index: int
    method: str
    path: str  # without query string
    request_body: bytes
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def request_json(self) -> Any:
        return _json_or_none(self.request_body)

    @property
    def response_json(self) -> Any:
        """The recorded response body as JSON (gunzipped when recorded compressed)."""
        body = gzip.decompress(self.body) if self.body.startswith(_GZIP_MAGIC) else self.body
        return _json_or_none(body)

    @property
    def response_text(self) -> str:
        body = gzip.decompress(self.body) if self.body.startswith(_GZIP_MAGIC) else self.body
        return body.decode("utf-8")


@dataclass
class RecordedRequest:
    """What a client sent to the server."""

    method: str
    path: str  # without query string
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    served_index: int | None = None

    @property
    def json(self) -> Any:
        return _json_or_none(self.body)


@dataclass
class Reply:
    """A response to send: status, headers (name, value) and body bytes."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    reason: str = ""

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Reply:
        return cls(status, [("Content-Type", "application/json")], json.dumps(payload).encode())

    @classmethod
    def raw_json(cls, text: str, status: int = 200) -> Reply:
        return cls(status, [("Content-Type", "application/json")], text.encode())

    @classmethod
    def sse(cls, events: list[Any], done: bool = True) -> Reply:
        """A ``text/event-stream`` body: each event is JSON-encoded unless it is already a str."""
        parts = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
        if done:
            parts.append("data: [DONE]\n\n")
        return cls(200, [("Content-Type", "text/event-stream")], "".join(parts).encode())


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def load_cassette(relpath: str) -> list[Interaction]:
    """Parse a VCR cassette (path relative to tests/cassettes/, or absolute) into interactions."""
    path = relpath if os.path.isabs(relpath) else os.path.join(CASSETTES_DIR, relpath)
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)  # !!binary bodies load as bytes
    interactions = []
    for i, item in enumerate(data.get("interactions") or []):
        req, resp = item["request"], item["response"]
        req_body = req.get("body")
        if isinstance(req_body, dict):
            req_body = req_body.get("string")
        resp_body = resp.get("body") or {}
        body = _as_bytes(resp_body.get("string") if isinstance(resp_body, dict) else resp_body)
        headers: list[tuple[str, str]] = []
        gzip_declared = False
        for name, values in (resp.get("headers") or {}).items():
            if name.lower() in _DROP_RESPONSE_HEADERS:
                continue
            for value in values if isinstance(values, list) else [values]:
                if name.lower() == "content-encoding":
                    gzip_declared = True
                headers.append((name, str(value)))
        if gzip_declared and not body.startswith(_GZIP_MAGIC):
            # The recorder stored a decoded body: the header would make the client fail to decode it.
            headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
        status = resp.get("status") or {}
        interactions.append(
            Interaction(
                index=i,
                method=str(req.get("method", "POST")).upper(),
                path=urlsplit(req["uri"]).path,
                request_body=_as_bytes(req_body),
                status=int(status.get("code", 200)),
                reason=str(status.get("message", "")),
                headers=headers,
                body=body,
            )
        )
    return interactions


_PREFIX_RE = re.compile(r"^.*?/(?:deployments/[^/]+|v\d+(?:beta)?)(?=/)")


def canonical_path(path: str) -> str:
    """The API path without host-specific prefixes (``/openai/v1``, ``/openai/deployments/<d>``, ``/v1``)."""
    return _PREFIX_RE.sub("", path, count=1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs; every reply carries Content-Length
    # Headers and body leave in one write with TCP_NODELAY: otherwise Nagle + delayed ACK add ~40 ms a call.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        target = urlsplit(self.path)  # absolute-form when the client uses us as a proxy
        request = RecordedRequest(
            method=self.command,
            path=target.path,
            query=target.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        try:
            reply = self.server.owner.respond(request)
        except Exception as exc:  # a test bug: say so loudly to the client
            reply = Reply(599, [("Content-Type", "text/plain")], f"replay server error: {exc!r}".encode())
        with self.server.owner.lock:
            self.server.owner.requests.append(request)
        self.send_response(reply.status, reply.reason or None)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: _BaseServer


class _BaseServer:
    """A threaded HTTP server on a free 127.0.0.1 port; subclasses decide the reply."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None  # kept after stop(), for assertions on what was served

    def respond(self, request: RecordedRequest) -> Reply:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def port(self) -> int:
        assert self._port is not None, "server not started"
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> _BaseServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="replay-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> _BaseServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class ReplayServer(_BaseServer):
    """Answers each request with the best-matching recorded interaction of one cassette.

    Matching: same method and path (exact path first, then the path without ``/v1``- or
    ``/deployments/<name>``-style prefixes); among those, prefer interactions whose recorded JSON body
    has the same ``model`` and ``stream`` as the incoming one, and that have not been served yet (so
    repeated calls walk through a cassette's recordings in order, then start over). ``index`` (or
    :attr:`next_index`) forces a given interaction.
    """

    def __init__(self, cassette: str, index: int | None = None) -> None:
        super().__init__()
        self.cassette = cassette
        self.interactions = load_cassette(cassette)
        self.index = index
        self.next_index: int | None = None  # one-shot override for the next request
        self._served: set[int] = set()

    def select(self, request: RecordedRequest) -> Interaction:
        with self.lock:
            forced = self.next_index if self.next_index is not None else self.index
            self.next_index = None
        if forced is not None:
            return self.interactions[forced]
        same = [i for i in self.interactions if i.method == request.method and i.path == request.path]
        if not same:
            wanted = canonical_path(request.path)
            same = [i for i in self.interactions if i.method == request.method and canonical_path(i.path) == wanted]
        if not same:
            raise LookupError(f"no recorded {request.method} {request.path} in {self.cassette}")
        incoming = request.json if isinstance(request.json, dict) else {}

        def score(item: Interaction) -> int:
            recorded = item.request_json if isinstance(item.request_json, dict) else {}
            points = 0
            if recorded.get("model") == incoming.get("model"):
                points += 2
            if bool(recorded.get("stream")) == bool(incoming.get("stream")):
                points += 4
            return points

        best = max(score(i) for i in same)
        ranked = [i for i in same if score(i) == best]
        with self.lock:
            fresh = [i for i in ranked if i.index not in self._served]
            if not fresh:
                for i in ranked:
                    self._served.discard(i.index)
                fresh = ranked
            chosen = fresh[0]
            self._served.add(chosen.index)
        return chosen

    def respond(self, request: RecordedRequest) -> Reply:
        chosen = self.select(request)
        request.served_index = chosen.index
        return Reply(chosen.status, list(chosen.headers), chosen.body, chosen.reason)

    def interaction(self, index: int) -> Interaction:
        return self.interactions[index]


class ScriptedServer(_BaseServer):
    """Answers every request with ``handler(request)``; the handler can be swapped between calls."""

    def __init__(self, handler: Callable[[RecordedRequest], Reply] | None = None) -> None:
        super().__init__()
        self.handler = handler or (lambda request: Reply.json({}))

    def respond(self, request: RecordedRequest) -> Reply:
        return self.handler(request)


@contextmanager
def replay(cassette: str, index: int | None = None) -> Iterator[ReplayServer]:
    """Serve ``cassette`` (relative to tests/cassettes/) for the duration of the block."""
    server = ReplayServer(cassette, index=index)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def scripted(handler: Callable[[RecordedRequest], Reply] | None = None) -> Iterator[ScriptedServer]:
    server = ScriptedServer(handler)
    server.start()
    try:
        yield server
    finally:
        server.stop()
