"""Where budget spend is kept: in this process (default) or in Redis (shared by processes and hosts).

A store keeps, per budget key and window, two numbers: ``spent`` (what finished calls cost) and
``reserved`` (what calls in flight may cost at most: each reserves an upper bound of its spend). A hard
budget admits a call, and reserves its bound in the same atomic step, when

* ``spent + reserved + bound <= limit`` (it fits beside every call in flight), or
* nothing is in flight and ``spent < limit`` (one call at a time once the remaining budget is smaller
  than a call's bound: it may overrun the limit by what it really spends past the remainder, and
  every other call that does not fit is refused until it has finished).

When the call finishes its reservation is swapped for the real amount. So many concurrent callers can
never all pass a naive "spent < limit" check before any of them has finished (the bypass LiteLLM users
report): with bounds that hold, spend stays within the limit plus one call's overrun. Keys carry the
window start and expire with the window, so a store never holds more than the live windows' keys.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

_log = logging.getLogger(__name__)

DEFAULT_MAX_KEYS = 100_000
# Below this, a window's reservations count as none in flight (float sums of reservations and releases).
IDLE_EPSILON = 1e-12


class StoreUnavailable(Exception):
    """The store could not be reached; the enforcer applies the configured fail-open/closed policy."""


class SpendStore(Protocol):
    """The interface a spend store implements. Amounts are floats in the budget's unit."""

    def reserve(self, key: str, amount: float, limit: float, ttl: int) -> tuple[bool, float, float]:
        """Atomically admit a call of at most ``amount`` and add ``amount`` to ``reserved``: when
        ``spent + reserved + amount <= limit``, or when nothing is reserved and ``spent < limit``.

        Returns (admitted, spent, reserved) as they were before the reservation.
        """
        ...

    def commit(self, key: str, reserved: float, actual: float, ttl: int) -> tuple[float, float]:
        """Atomically release ``reserved`` and add ``actual`` to ``spent``. Returns (spent before, spent after)."""
        ...

    def spent(self, key: str) -> tuple[float, float]:
        """(spent, reserved) for ``key`` (0, 0 when absent)."""
        ...


def admits(spent: float, reserved: float, amount: float, limit: float) -> bool:
    """The admission rule every store applies atomically (see the module docstring)."""
    if spent >= limit:
        return False
    return spent + reserved + amount <= limit or reserved <= IDLE_EPSILON


class InMemoryStore:
    """Spend in a dict, for one process. Thread-safe; asyncio tasks are safe too (no awaits inside).

    Bounded: expired windows are pruned, and past ``max_keys`` live keys (e.g. ``user=*`` with millions
    of users in one window) the oldest keys are dropped, with a warning, so a flood of distinct values
    cannot exhaust memory. A dropped key starts from zero if seen again: prefer the Redis store there.
    """

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, list[float]] = {}  # key -> [spent, reserved, expires_at]
        self._max_keys = max_keys
        self._ops = 0
        self._warned = False

    def _entry(self, key: str, ttl: int) -> list[float]:
        entry = self._data.get(key)
        now = time.time()
        if entry is not None and entry[2] <= now:
            entry = None
        if entry is None:
            entry = [0.0, 0.0, now + ttl]
            self._data[key] = entry
            self._ops += 1
            if self._ops >= 1024 or len(self._data) > self._max_keys:
                self._prune(now)
        return entry

    def _prune(self, now: float) -> None:
        self._ops = 0
        expired = [k for k, v in self._data.items() if v[2] <= now]
        for k in expired:
            del self._data[k]
        excess = len(self._data) - self._max_keys
        if excess > 0:
            if not self._warned:
                self._warned = True
                _log.warning(
                    "llmmeter budgets: more than %d budget keys live in this window; the oldest are dropped "
                    "(their spend restarts at 0). Use the Redis store for budgets over that many values.",
                    self._max_keys,
                )
            for k in list(self._data)[:excess]:
                del self._data[k]

    def reserve(self, key: str, amount: float, limit: float, ttl: int) -> tuple[bool, float, float]:
        with self._lock:
            entry = self._entry(key, ttl)
            spent, reserved = entry[0], entry[1]
            if not admits(spent, reserved, amount, limit):
                return False, spent, reserved
            entry[1] = reserved + amount
            return True, spent, reserved

    def commit(self, key: str, reserved: float, actual: float, ttl: int) -> tuple[float, float]:
        with self._lock:
            entry = self._entry(key, ttl)
            before = entry[0]
            entry[0] = before + actual
            left = entry[1] - reserved
            entry[1] = left if left > IDLE_EPSILON else 0.0
            return before, entry[0]

    def spent(self, key: str) -> tuple[float, float]:
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry[2] <= time.time():
                return 0.0, 0.0
            return entry[0], entry[1]

    def __len__(self) -> int:
        return len(self._data)


# Both scripts keep the key's TTL: it is set once, when the window's key is created, so it expires
# with its window; HINCRBYFLOAT on an existing hash does not touch the TTL.
_RESERVE = """
local v = redis.call('HMGET', KEYS[1], 's', 'r')
local s = tonumber(v[1] or '0')
local r = tonumber(v[2] or '0')
local a = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if s >= limit or (s + r + a > limit and r > 1e-12) then
  return {0, tostring(s), tostring(r)}
end
redis.call('HINCRBYFLOAT', KEYS[1], 'r', ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {1, tostring(s), tostring(r)}
"""

_COMMIT = """
local before = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
local after = before
if tonumber(ARGV[2]) ~= 0 then
  after = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], 's', ARGV[2]))
end
if tonumber(ARGV[1]) ~= 0 then
  local r = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], 'r', -tonumber(ARGV[1])))
  if r <= 1e-12 then redis.call('HSET', KEYS[1], 'r', '0') end
end
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {tostring(before), tostring(after)}
"""


class RedisStore:
    """Spend in Redis, shared by every process and host that points at the same server.

    Each budget window is one hash (``spent``, ``reserved``) updated by Lua scripts, so check-and-reserve
    is atomic across hosts. Any Redis error (down, timeout, auth) becomes :class:`StoreUnavailable`;
    the enforcer then fails open or closed as configured. After a failure Redis is not tried again for
    ``retry_interval`` seconds, so an outage costs the app one short timeout, not one per call.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "llmmeter:budget:",
        timeout: float = 0.5,
        retry_interval: float = 1.0,
    ) -> None:
        if client is None:
            import redis

            client = redis.Redis.from_url(
                url or "redis://127.0.0.1:6379/0", socket_timeout=timeout, socket_connect_timeout=timeout
            )
        self.client = client
        self.prefix = prefix
        self.retry_interval = retry_interval
        self._down_until = 0.0
        self._reserve = client.register_script(_RESERVE)
        self._commit = client.register_script(_COMMIT)

    def _call(self, script: Any, key: str, args: list[Any]) -> list[Any]:
        if self.retry_interval and time.monotonic() < self._down_until:
            raise StoreUnavailable("redis marked unavailable after a recent failure")
        try:
            return script(keys=[self.prefix + key], args=args)
        except Exception as exc:  # redis.RedisError, OSError: the server is not usable right now
            self._down_until = time.monotonic() + self.retry_interval
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def reserve(self, key: str, amount: float, limit: float, ttl: int) -> tuple[bool, float, float]:
        admitted, spent, reserved = self._call(self._reserve, key, [repr(float(amount)), repr(float(limit)), ttl])
        return bool(int(admitted)), float(spent), float(reserved)

    def commit(self, key: str, reserved: float, actual: float, ttl: int) -> tuple[float, float]:
        before, after = self._call(self._commit, key, [repr(float(reserved)), repr(float(actual)), ttl])
        return float(before), float(after)

    def spent(self, key: str) -> tuple[float, float]:
        try:
            values = self.client.hmget(self.prefix + key, "s", "r")
        except Exception as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return float(values[0] or 0), float(values[1] or 0)
