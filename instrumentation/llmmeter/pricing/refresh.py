"""Opt-in in-process refresh of the price table: ``LLMMETER_PRICE_REFRESH=24h`` with
``LLMMETER_PRICE_REFRESH_FROM=<url or file>`` (default: LiteLLM's table).

A daemon thread fetches the source right away and then every interval, validates it with the strict rules and
layers it over the shipped table (the price files the app set still win). It never blocks a call: calls keep
using the table in force while a fetch runs, and the new table is swapped in as one object. On any failure
(network, HTTP error, invalid JSON, a typo in the source) it logs one warning and keeps the table in force,
which is the bundled one until a fetch has succeeded.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from llmmeter.config import ENV_PRICE_REFRESH, ENV_PRICE_REFRESH_FROM, ConfigError

_log = logging.getLogger(__name__)
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_INTERVAL_S = 60.0
FETCH_TIMEOUT_S = 30.0

_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()


def parse_interval(raw: str, origin: str = ENV_PRICE_REFRESH) -> float:
    """``"24h"`` -> 86400.0; ``s``, ``m``, ``h``, ``d``; at least a minute. ConfigError naming ``origin``."""
    match = _INTERVAL.match(raw)
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else -1.0
    if seconds < MIN_INTERVAL_S:
        raise ConfigError(f"environment variable {origin}: {raw!r}: expected an interval of at least 1m, "
                          "such as 24h, 90m or 7d")
    return seconds


def refresh_once(source: str) -> bool:
    """Fetch, validate and install ``source`` once. True when the new table is in force; never raises."""
    from llmmeter import pricing
    from llmmeter.pricing.update import parse_source, read_source

    try:
        _raw, table = parse_source(read_source(source, FETCH_TIMEOUT_S), source)
        table.as_of = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # fetched now: the table's age restarts
        pricing.install_refreshed(table)
    except Exception as exc:
        _log.warning("llmmeter: price refresh from %s failed, keeping the table in force (%s): %s",
                     source, "bundled" if pricing._refreshed is None else "last fetched", exc)
        return False
    _log.info("llmmeter: price table refreshed from %s (%d models)", source, len(table))
    return True


def _run(source: str, interval: float) -> None:
    while not _stop.is_set():
        refresh_once(source)
        _stop.wait(interval)


def maybe_start(environ: Mapping[str, str] | None = None) -> bool:
    """Start the refresh thread when ``LLMMETER_PRICE_REFRESH`` is set (once per process). ConfigError on a bad
    interval, so a typo fails at start-up. Returns True when a thread is running."""
    from llmmeter.pricing.update import DEFAULT_SOURCE

    env = os.environ if environ is None else environ
    raw = env.get(ENV_PRICE_REFRESH, "").strip()
    if not raw or raw.lower() in ("off", "0", "false"):
        return False
    interval = parse_interval(raw)
    source = env.get(ENV_PRICE_REFRESH_FROM, "").strip() or DEFAULT_SOURCE
    global _thread
    with _lock:
        if _thread is not None and _thread.is_alive():
            return True
        _stop.clear()
        _thread = threading.Thread(target=_run, args=(source, interval), name="llmmeter-price-refresh", daemon=True)
        _thread.start()
    return True


def stop(timeout: float = 5.0) -> None:
    """Stop the refresh thread (tests, shutdown)."""
    global _thread
    _stop.set()
    with _lock:
        thread, _thread = _thread, None
    if thread is not None:
        thread.join(timeout)
