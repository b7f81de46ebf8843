"""The Redis sliding-window limiter, on a real Redis: limits hold across processes and bursts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from shared.keys import ratelimit_hold_key, ratelimit_log_key, ratelimit_tokens_key
from shared.ratelimit import (
    LimiterTimeoutError,
    LimiterUnavailableError,
    RateLimiter,
    Ticket,
)
from tests.support import REDIS_DB, REDIS_HOST, REDIS_PORT

pytestmark = pytest.mark.integration

WINDOW = 1.0

MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture
def name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(name: str) -> AsyncIterator[Redis]:
    client = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    yield client
    await client.delete(
        ratelimit_log_key(name), ratelimit_tokens_key(name), ratelimit_hold_key(name)
    )
    await client.aclose()


@pytest.fixture
async def make_limiter(name: str, redis: Redis) -> AsyncIterator[MakeLimiter]:
    """Limiters on a fresh name; each call opens its own connection, like another process.

    `transit` is 0 unless a test sets it: a request counts from its admission, as if it
    arrived at once, which is what the window tests are about."""
    clients: list[Redis] = []

    def make(**options: float) -> RateLimiter:
        client = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
        clients.append(client)
        settings = {
            "rpm": 1000,
            "tpm": 1_000_000,
            "window": WINDOW,
            "transit": 0.0,
            "poll_interval": 0.05,
        }
        settings.update(options)
        return RateLimiter(client, name=name, **settings)  # type: ignore[arg-type]

    yield make
    for client in clients:
        await client.aclose()


async def logged(redis: Redis, name: str) -> tuple[int, int]:
    """Requests and tokens in the limiter's log (what the last admission left there)."""
    costs = await redis.hvals(ratelimit_tokens_key(name))  # type: ignore[misc]
    return await redis.zcard(ratelimit_log_key(name)), sum(int(c) for c in costs)


def assert_sliding_window(tickets: list[Ticket], rpm: int, window: float) -> None:
    """No window of `window` seconds, wherever it starts, holds more than `rpm` admissions."""
    times = sorted(round(t.admitted_at * 1_000_000) for t in tickets)
    span = round(window * 1_000_000)
    for first, later in zip(times, times[rpm:], strict=False):
        assert later - first >= span, "more than rpm requests inside one window"


async def test_requests_per_window_hold_across_two_limiters(make_limiter: MakeLimiter) -> None:
    one, two = make_limiter(rpm=5), make_limiter(rpm=5)

    tickets = await asyncio.gather(*((one if i % 2 else two).acquire(1) for i in range(12)))

    assert_sliding_window(list(tickets), rpm=5, window=WINDOW)
    assert sum(t.waited == 0 for t in tickets) <= 5
    first, last = min(t.admitted_at for t in tickets), max(t.admitted_at for t in tickets)
    assert last - first >= 2 * WINDOW  # 12 requests at 5 per window need three windows


async def test_fifty_concurrent_acquires_never_exceed_the_limit(
    make_limiter: MakeLimiter,
) -> None:
    limiters = [make_limiter(rpm=10) for _ in range(3)]

    tickets = await asyncio.gather(*(limiters[i % 3].acquire(10) for i in range(50)))

    assert len({t.id for t in tickets}) == 50
    assert_sliding_window(list(tickets), rpm=10, window=WINDOW)


async def test_tokens_per_window_are_respected(
    make_limiter: MakeLimiter, redis: Redis, name: str
) -> None:
    one, two = make_limiter(tpm=100), make_limiter(tpm=100)

    first = await one.acquire(30)
    second = await two.acquire(60)  # 90 of 100: admitted at once
    third = await one.acquire(60)  # would be 150: waits for the first two to leave

    assert second.waited < 0.2
    assert third.admitted_at - first.admitted_at >= WINDOW
    assert third.admitted_at - second.admitted_at >= WINDOW
    assert await logged(redis, name) == (1, 60)


async def test_waits_only_for_as_many_old_tokens_as_it_needs(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(tpm=100)
    first = await limiter.acquire(50)
    await asyncio.sleep(0.3)
    second = await limiter.acquire(40)

    third = await limiter.acquire(50)  # freeing the first request's 50 is enough

    assert third.admitted_at - first.admitted_at >= WINDOW
    assert third.admitted_at - second.admitted_at < WINDOW


async def test_a_correction_frees_capacity(
    make_limiter: MakeLimiter, redis: Redis, name: str
) -> None:
    limiter = make_limiter(tpm=100)
    estimate = await limiter.acquire(90)

    await limiter.settle(estimate, 20)
    follow_up = await limiter.acquire(70)

    assert follow_up.waited < 0.2
    assert await logged(redis, name) == (2, 90)


async def test_a_correction_uses_capacity(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(tpm=100)
    estimate = await limiter.acquire(10)

    await limiter.settle(estimate, 95)
    follow_up = await limiter.acquire(10)

    assert follow_up.admitted_at - estimate.admitted_at >= WINDOW


async def test_correcting_a_request_that_left_the_window_changes_nothing(
    make_limiter: MakeLimiter, redis: Redis, name: str
) -> None:
    limiter = make_limiter(tpm=100, window=0.2)
    old = await limiter.acquire(10)
    await asyncio.sleep(0.3)
    await limiter.acquire(1)  # trims the old request

    await limiter.settle(old, 90)

    assert await logged(redis, name) == (1, 1)


async def test_a_request_bigger_than_tpm_runs_alone(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(tpm=100)

    big = await limiter.acquire(500)
    small = await limiter.acquire(1)

    assert big.waited < 0.2
    assert small.admitted_at - big.admitted_at >= WINDOW


async def test_a_hold_pauses_everybody(make_limiter: MakeLimiter, redis: Redis, name: str) -> None:
    one, two = make_limiter(), make_limiter()

    until = await one.hold(0.5)
    held = await redis.get(ratelimit_hold_key(name))
    ticket = await two.acquire(1)

    assert int(held or 0) / 1_000_000 == pytest.approx(until)
    assert ticket.waited >= 0.4
    assert ticket.admitted_at >= until


async def test_a_shorter_hold_does_not_cut_a_longer_one(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()

    long = await limiter.hold(5)
    short = await limiter.hold(0.1)

    assert short == long


async def test_max_wait_gives_up_with_the_wait_ahead(
    make_limiter: MakeLimiter, redis: Redis, name: str
) -> None:
    limiter = make_limiter(rpm=1)
    await limiter.acquire(1)

    with pytest.raises(LimiterTimeoutError) as caught:
        await limiter.acquire(1, max_wait=0.1)

    assert caught.value.code == "llm_rate_limited"
    assert 0 < (caught.value.retry_after or 0) <= WINDOW
    assert (await logged(redis, name))[0] == 1


# Requests in flight


async def test_an_unsettled_request_holds_its_slot_for_transit_and_window(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(rpm=1, window=0.4, transit=0.3)

    first = await limiter.acquire(1)
    second = await limiter.acquire(1)

    assert second.admitted_at - first.admitted_at >= 0.7


async def test_a_settled_request_holds_its_slot_for_a_window_from_its_end(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(rpm=1, window=0.4, transit=30)

    first = await limiter.acquire(1)
    await asyncio.sleep(0.2)  # the call itself
    await limiter.settle(first)
    second = await limiter.acquire(1, max_wait=5)

    assert 0.6 <= second.admitted_at - first.admitted_at < 2


async def test_a_request_in_flight_does_not_make_max_wait_give_up(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(rpm=1, window=0.3, transit=30)
    first = await limiter.acquire(1)

    waiting = asyncio.create_task(limiter.acquire(1, max_wait=5))
    await limiter.settle(first)
    second = await waiting

    assert second.admitted_at - first.admitted_at >= 0.3


async def test_redis_down_is_a_transient_error() -> None:
    client = Redis(host="127.0.0.1", port=1, db=REDIS_DB)
    limiter = RateLimiter(client, rpm=1, tpm=1, name="unreachable")

    with pytest.raises(LimiterUnavailableError):
        await limiter.acquire(1)
    await client.aclose()
