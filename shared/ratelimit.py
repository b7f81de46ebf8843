"""The cluster-wide LLM rate limit: a sliding-window log in Redis that every worker shares.

Each admitted request is logged in a sorted set scored by Redis server time, with its token
estimate in a hash beside it. One Lua script trims what has left the window, checks both limits
and records the request, atomically, so no two workers can take the last slot and no 60-second
window (unlike a token bucket's refill boundary) ever holds more than `rpm` requests or `tpm`
tokens. All times come from Redis `TIME`, so the workers' clocks never have to agree.

The provider counts a request when it *arrives*, some time after we admitted it (the client
builds it, waits for a connection, sends it across the network). Scoring a request at its
admission would free its slot too early: a request admitted at t that arrives at t + 0.2 s is in
the provider's window until t + 60.2 s, while a request admitted at t + 60 s and arriving at
t + 60.05 s is already there, one over the provider's limit. So a request's score is never
earlier than its arrival: while it is in flight it is scored at admission + `transit` (the
longest the client can take to deliver it, which its timeouts bound), and when the call ends,
`settle` moves it to that moment (the answer, or the failure, came after the arrival), or leaves
it at the bound if that is sooner. Every request then leaves our window no earlier than it
leaves the provider's, and a limit equal to the provider's is never exceeded. While requests are
in flight, the wait before the next slot is estimated as if they had just settled (a full window)
and polled again.
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

# The LLM client's pool, connect and write timeouts (60 s each) bound when a request can arrive.
DEFAULT_TRANSIT_SECONDS = 180.0

# The keys (shared/keys.py) carry a {name} hash tag: one limiter's keys share a Redis Cluster
# slot, which a multi-key script needs.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# Drop the requests that have left the window (scored at or before now - window).
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

# KEYS: log, tokens, hold. ARGV: window_us, rpm, tpm, ticket, tokens, transit_us.
# Returns {1, admitted_at_us, 'ok'} or {0, wait_us, reason}. A request in flight (scored after
# now) is assumed to settle now when computing a wait.
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
  return {0, math.min(tonumber(nth[2]), now) + window - now, 'requests'}
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
  return {0, math.min(last, now) + window - now, 'tokens'}
end
local transit = tonumber(ARGV[6])
redis.call('ZADD', KEYS[1], now + transit, ARGV[4])
redis.call('HSET', KEYS[2], ARGV[4], cost)
local ttl = math.ceil((window + transit) / 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {1, now, 'ok'}
"""
)

# KEYS: log, tokens. ARGV: ticket, tokens ('' keeps the estimate). Only a request still in the
# window is settled; it moves to now unless its in-flight score is sooner.
_SETTLE = (
    _NOW
    + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZADD', KEYS[1], 'XX', math.min(tonumber(score), now), ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return 1
"""
)

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


class Limiter(Protocol):
    """What an LLM caller needs from a rate limiter."""

    async def acquire(self, tokens: int, *, max_wait: float | None = None) -> Ticket: ...

    async def settle(self, ticket: Ticket, actual_tokens: int | None = None) -> None: ...

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
        transit: float = DEFAULT_TRANSIT_SECONDS,
        poll_interval: float = 1.0,
    ) -> None:
        if rpm < 1 or tpm < 1 or window <= 0 or poll_interval <= 0 or transit < 0:
            raise ValueError("rpm, tpm, window and poll_interval must be positive, transit >= 0")
        self.rpm = rpm
        self.tpm = tpm
        self.name = name
        self.window = window
        # Waits are computed, but a settled request or a new hold can change them meanwhile.
        self.poll_interval = poll_interval
        self._keys = [keys.ratelimit_log_key(name), keys.ratelimit_tokens_key(name)]
        self._hold_key = keys.ratelimit_hold_key(name)
        self._window_us = int(window * 1_000_000)
        # The longest an admitted request may take to reach the provider (see the module doc).
        self._transit_us = int(transit * 1_000_000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._settle = redis.register_script(_SETTLE)
        self._hold = redis.register_script(_HOLD)

    async def acquire(self, tokens: int, *, max_wait: float | None = None) -> Ticket:
        """Wait until the window admits a request of `tokens`, record it, and return its ticket.

        Waiting is not a failure; only `max_wait` (seconds) running out raises
        `LimiterTimeoutError`, with `retry_after` set to the wait still ahead.
        """
        ticket_id = uuid.uuid4().hex
        cost = max(int(tokens), 0)
        args = [self._window_us, self.rpm, self.tpm, ticket_id, cost, self._transit_us]
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

    async def settle(self, ticket: Ticket, actual_tokens: int | None = None) -> None:
        """The request of `ticket` has ended: its slot counts from now (or its in-flight bound,
        if sooner), and for `actual_tokens` when given instead of its estimate."""
        tokens = "" if actual_tokens is None else max(int(actual_tokens), 0)
        await self._run(self._settle, self._keys, [ticket.id, tokens])

    async def hold(self, seconds: float) -> float:
        """Admit nobody for `seconds` (a provider's 429); returns the hold's end, Unix seconds."""
        until = await self._run(self._hold, [self._hold_key], [max(float(seconds), 0.0)])
        log.warning("llm rate limiter held", extra={"limiter": self.name, "retry_after": seconds})
        return int(until) / 1_000_000

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except RedisError as exc:
            raise LimiterUnavailableError(f"LLM rate limiter unavailable: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
