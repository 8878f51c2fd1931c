"""A small, careful HTTP client for the providers' organisation (admin) report APIs.

Why not the provider SDKs: neither ``openai`` nor ``anthropic`` wraps the organisation cost/usage reports, and
llmmeter's core must not depend on them. The standard library's ``urllib`` is enough for authenticated GETs.

What it guarantees:
- the admin key goes only into the request header; it is never logged, printed or put in an error message
  (a 401 names the environment variable the key came from, not the key);
- 429: waits what ``retry-after`` says (seconds or an HTTP date), capped at ``max_wait_s``, then retries;
- 5xx and connection errors: bounded retries with capped exponential back-off, then a clear error;
- pagination follows ``has_more`` / ``next_page`` (sent back as ``page``), with a page cap so a server that
  repeats a cursor cannot loop forever.
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ParamValue = str | int | Sequence[str]
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})


class ReconcileError(Exception):
    """A report could not be read: the message says what to do, and never contains a credential."""


@dataclass
class ReportClient:
    """GETs JSON from ``base_url`` with ``headers`` (which carry the key), retrying as documented above.

    ``key_env`` is the environment variable the key came from (for messages); ``sleep`` is injectable so
    tests can record the waits instead of sleeping them.
    """

    base_url: str
    headers: Mapping[str, str]
    key_env: str
    max_attempts: int = 4
    max_wait_s: float = 60.0
    timeout_s: float = 30.0
    max_pages: int = 1000
    sleep: Callable[[float], None] = time.sleep
    requests_made: list[str] = field(default_factory=list)  # path?query of every request (no headers)

    def get(self, path: str, params: Mapping[str, ParamValue]) -> dict[str, Any]:
        """One GET, retried on 429 / 5xx / connection errors; returns the decoded JSON object."""
        query = urllib.parse.urlencode(_flatten(params), doseq=True)
        target = f"{path}?{query}" if query else path
        url = self.base_url.rstrip("/") + target
        last_problem = ""
        for attempt in range(1, self.max_attempts + 1):
            self.requests_made.append(target)
            request = urllib.request.Request(url, headers=dict(self.headers), method="GET")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    body = response.read()
            except urllib.error.HTTPError as exc:
                kind, detail = _error_detail(exc)
                detail = self._scrub(detail)
                if exc.code in (401, 403):
                    # The provider's message may quote (part of) the key: only its error type is repeated.
                    raise ReconcileError(
                        f"HTTP {exc.code} ({kind or 'refused'}) from {path}: the key in {self.key_env} was not "
                        f"accepted. Set {self.key_env} to an organisation admin key."
                    ) from None
                if exc.code == 429 or exc.code >= 500:
                    last_problem = f"HTTP {exc.code} ({detail})"
                    if attempt < self.max_attempts:
                        self.sleep(self._wait(exc, attempt))
                        continue
                    break
                raise ReconcileError(f"HTTP {exc.code} from {path}: {detail}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last_problem = f"connection failed ({reason})"
                if attempt < self.max_attempts:
                    self.sleep(self._backoff(attempt))
                    continue
                break
            try:
                doc = json.loads(body)
            except ValueError:
                raise ReconcileError(f"{path}: the response is not JSON: {body[:200]!r}") from None
            if not isinstance(doc, dict):
                raise ReconcileError(f"{path}: expected a JSON object, got {type(doc).__name__}")
            return doc
        raise ReconcileError(f"{path}: gave up after {self.max_attempts} attempts, last: {last_problem}")

    def pages(self, path: str, params: Mapping[str, ParamValue]) -> Iterator[dict[str, Any]]:
        """Every page of a paginated report: ``page=<next_page>`` until ``has_more`` is false."""
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(self.max_pages):
            doc = self.get(path, {**params, "page": cursor} if cursor else params)
            yield doc
            cursor = doc.get("next_page")
            if not doc.get("has_more") or not cursor:
                return
            if cursor in seen:
                raise ReconcileError(f"{path}: the server sent the page cursor {cursor!r} twice")
            seen.add(cursor)
        raise ReconcileError(f"{path}: more than {self.max_pages} pages; narrow --since")

    def _scrub(self, text: str) -> str:
        """``text`` with every header value that carries a credential replaced by ``***``."""
        for name, value in self.headers.items():
            if name.lower() not in CREDENTIAL_HEADERS:
                continue
            for secret in {value, value.removeprefix("Bearer ")}:
                if len(secret) >= 8:
                    text = text.replace(secret, "***")
        return text

    def _wait(self, exc: urllib.error.HTTPError, attempt: int) -> float:
        """``retry-after`` (seconds or an HTTP date) when the server sent one, else back-off; capped."""
        raw = exc.headers.get("retry-after") if exc.headers else None
        wait: float | None = None
        if raw:
            try:
                wait = float(raw)
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(raw) if raw.strip() else None
                if parsed is not None:
                    wait = parsed.timestamp() - time.time()
        if wait is None:
            return self._backoff(attempt)
        return min(max(wait, 0.0), self.max_wait_s)

    def _backoff(self, attempt: int) -> float:
        return min(0.5 * 2 ** (attempt - 1), self.max_wait_s)


def _flatten(params: Mapping[str, ParamValue]) -> list[tuple[str, str]]:
    """Query pairs; a list value repeats its key (``group_by=a&group_by=b``). Each provider module passes
    the key spelled as its API documents arrays (OpenAI ``group_by``, Anthropic ``group_by[]``)."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, (list, tuple)):
            out.extend((key, str(item)) for item in value)
        elif value is not None:
            out.append((key, str(value)))
    return out


def _error_detail(exc: urllib.error.HTTPError) -> tuple[str | None, str]:
    """(error type or code, message) from the provider's body; both use ``{"error": {"message": ..., "type": ...}}``."""
    kind = message = None
    try:
        doc = json.loads(exc.read() or b"{}")
        error = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(error, dict):
            message = error.get("message")
            kind = error.get("code") or error.get("type")
    except (ValueError, AttributeError, OSError):
        pass
    return (str(kind) if kind else None), str(message or exc.reason or "no detail")[:300]
