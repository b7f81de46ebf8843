"""The cluster-wide LLM rate limit: a sliding-window log in Redis that every worker shares.

Each admitted request is logged in a sorted set scored by Redis server time, with its token
estimate in a hash beside it. One Lua script trims what has left the window, checks both limits
and records the request, atomically, so no two workers can take the last slot and no 60-second
window (unlike a token bucket's refill boundary) ever holds more than `rpm` requests or `tpm`
tokens. All times come from Redis `TIME`, so the workers' clocks never have to agree.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys
from shared.errors import TransientError

log = logging.getLogger("paperboy.ratelimit")

# Key names, to move into shared/keys.py. The {name} hash tag keeps one limiter's keys in one
# Redis Cluster slot, which a multi-key script needs.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# Drop the requests that have left the window (admitted at or before now - window).
_TRIM = """
local cutoff = now - tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
for i = 1, #expired, 1000 do
  redis.call('HDEL', KEYS[2], unpack(expired, i, math.min(i + 999, #expired)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local used = 0
for _, cost in ipairs(redis.call('HVALS', KEYS[2])) do used = used + tonumber(cost) end
local count = redis.call('ZCARD', KEYS[1])
"""

# KEYS: log, tokens, hold. ARGV: window_us, rpm, tpm, ticket, tokens.
# Returns {1, admitted_at_us, 'ok'} or {0, wait_us, reason}.
_ACQUIRE = (
    _NOW
    + """
local hold = tonumber(redis.call('GET', KEYS[3]) or '0')
if hold > now then return {0, hold - now, 'hold'} end
"""
    + _TRIM
    + """
local window = tonumber(ARGV[1])
local rpm, tpm, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
if count >= rpm then
  local nth = redis.call('ZRANGE', KEYS[1], count - rpm, count - rpm, 'WITHSCORES')
  return {0, tonumber(nth[2]) + window - now, 'requests'}
end
if count > 0 and used + cost > tpm then
  -- Wait until enough of the oldest requests have left; one bigger than tpm waits for an
  -- empty window and is then admitted alone.
  local excess = used + cost - tpm
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  local last = tonumber(entries[#entries])
  for i = 1, #entries, 2 do
    excess = excess - tonumber(redis.call('HGET', KEYS[2], entries[i]) or '0')
    if excess <= 0 then last = tonumber(entries[i + 1]) break end
  end
  return {0, last + window - now, 'tokens'}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('HSET', KEYS[2], ARGV[4], cost)
local ttl = math.ceil(window / 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {1, now, 'ok'}
"""
)

# KEYS: log, tokens. ARGV: ticket, tokens. Only a request still in the window is corrected.
_CORRECT = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: hold. ARGV: seconds. A hold only ever gets longer. Returns hold-until (us).
_HOLD = (
    _NOW
    + """
local hold_until = now + math.floor(tonumber(ARGV[1]) * 1000000)
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= hold_until then return current end
redis.call('SET', KEYS[1], hold_until, 'PX', math.max(1, math.ceil((hold_until - now) / 1000)))
return hold_until
"""
)

# KEYS: log, tokens, hold. ARGV: window_us. Returns {now, requests, tokens, hold_until}.
_STATE = (
    _NOW
    + _TRIM
    + """
return {now, count, used, tonumber(redis.call('GET', KEYS[3]) or '0')}
"""
)


class LimiterUnavailableError(TransientError):
    """The rate limiter's Redis could not be reached."""

    code = "rate_limiter_unavailable"


class LimiterTimeoutError(TransientError):
    """The rate limiter did not admit the request within the allowed wait."""

    code = "llm_rate_limited"


@dataclass(frozen=True)
class Ticket:
    """An admitted request: what it was counted for, when, and how long it waited."""

    id: str
    tokens: int
    admitted_at: float  # Redis server time, Unix seconds
    waited: float  # seconds


@dataclass(frozen=True)
class LimiterState:
    """What the window holds right now, for metrics and the dashboard."""

    requests: int
    tokens: int
    rpm: int
    tpm: int
    now: float  # Redis server time, Unix seconds
    hold_until: float | None


class Limiter(Protocol):
    """What an LLM caller needs from a rate limiter."""

    async def acquire(self, tokens: int, *, max_wait: float | None = None) -> Ticket: ...

    async def correct(self, ticket: Ticket, actual_tokens: int) -> None: ...

    async def hold(self, seconds: float) -> float: ...


class RateLimiter:
    """Requests and tokens per window, shared through Redis by every process that uses `name`."""

    def __init__(
        self,
        redis: Redis,
        *,
        rpm: int,
        tpm: int,
        name: str = "llm",
        window: float = 60.0,
        poll_interval: float = 1.0,
    ) -> None:
        if rpm < 1 or tpm < 1 or window <= 0 or poll_interval <= 0:
            raise ValueError("rpm, tpm, window and poll_interval must be positive")
        self.rpm = rpm
        self.tpm = tpm
        self.name = name
        self.window = window
        # Waits are computed exactly, but a correction or a new hold can change them meanwhile.
        self.poll_interval = poll_interval
        self._keys = [keys.ratelimit_log_key(name), keys.ratelimit_tokens_key(name)]
        self._hold_key = keys.ratelimit_hold_key(name)
        self._window_us = int(window * 1_000_000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._correct = redis.register_script(_CORRECT)
        self._hold = redis.register_script(_HOLD)
        self._state = redis.register_script(_STATE)

    async def acquire(self, tokens: int, *, max_wait: float | None = None) -> Ticket:
        """Wait until the window admits a request of `tokens`, record it, and return its ticket.

        Waiting is not a failure; only `max_wait` (seconds) running out raises
        `LimiterTimeoutError`, with `retry_after` set to the wait still ahead.
        """
        ticket_id = uuid.uuid4().hex
        cost = max(int(tokens), 0)
        args = [self._window_us, self.rpm, self.tpm, ticket_id, cost]
        started = time.monotonic()
        while True:
            admitted, value, reason = await self._run(
                self._acquire, [*self._keys, self._hold_key], args
            )
            waited = time.monotonic() - started
            if admitted:
                return Ticket(ticket_id, cost, int(value) / 1_000_000, waited)
            wait = int(value) / 1_000_000
            if max_wait is not None and waited + wait > max_wait:
                raise LimiterTimeoutError(
                    f"LLM rate limit: no capacity within {max_wait:g}s ({_text(reason)})",
                    retry_after=wait,
                )
            await asyncio.sleep(min(wait, self.poll_interval) + random.uniform(0, 0.005))

    async def correct(self, ticket: Ticket, actual_tokens: int) -> None:
        """Count `ticket` for the tokens it really used instead of its estimate."""
        await self._run(self._correct, self._keys, [ticket.id, max(int(actual_tokens), 0)])

    async def hold(self, seconds: float) -> float:
        """Admit nobody for `seconds` (a provider's 429); returns the hold's end, Unix seconds."""
        until = await self._run(self._hold, [self._hold_key], [max(float(seconds), 0.0)])
        log.warning("llm rate limiter held", extra={"limiter": self.name, "retry_after": seconds})
        return int(until) / 1_000_000

    async def state(self) -> LimiterState:
        now, requests, tokens, hold = await self._run(
            self._state, [*self._keys, self._hold_key], [self._window_us]
        )
        return LimiterState(
            requests=int(requests),
            tokens=int(tokens),
            rpm=self.rpm,
            tpm=self.tpm,
            now=int(now) / 1_000_000,
            hold_until=int(hold) / 1_000_000 if int(hold) > int(now) else None,
        )

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except RedisError as exc:
            raise LimiterUnavailableError(f"LLM rate limiter unavailable: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
