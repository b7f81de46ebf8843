"""Metrics are counted in memory, flushed to Redis in one round trip, rendered cumulatively."""

from __future__ import annotations

import fakeredis

from shared.metrics import METRICS_KEY, Metrics, render


async def test_flush_sums_and_render_makes_buckets_cumulative() -> None:
    redis = fakeredis.FakeAsyncRedis()
    metrics = Metrics(redis)
    metrics.inc("paperboy_digests_finished", status="completed")
    metrics.inc("paperboy_digests_finished", status="completed")
    for seconds in (0.004, 0.02, 0.02, 100.0):
        metrics.observe("paperboy_pickup_latency_seconds", seconds)

    assert await redis.hlen(METRICS_KEY) == 0  # nothing written before a flush
    await metrics.flush()
    await metrics.flush()  # nothing pending: no double counting
    text = render(await metrics.snapshot(), {"paperboy_queue_depth": 3.0}).decode()

    assert 'paperboy_digests_finished_total{status="completed"} 2.0' in text
    assert 'paperboy_pickup_latency_seconds_bucket{le="0.005"} 1.0' in text
    assert 'paperboy_pickup_latency_seconds_bucket{le="0.025"} 3.0' in text
    assert 'paperboy_pickup_latency_seconds_bucket{le="30"} 3.0' in text
    assert 'paperboy_pickup_latency_seconds_bucket{le="+Inf"} 4.0' in text
    assert "paperboy_pickup_latency_seconds_count 4.0" in text
    assert "paperboy_queue_depth 3.0" in text
    await redis.aclose()


async def test_what_cannot_be_written_is_kept_for_the_next_flush() -> None:
    redis = fakeredis.FakeAsyncRedis()
    metrics = Metrics(redis)
    metrics.inc("paperboy_leases_reaped", 2)
    redis.connected = False  # fakeredis: every command now raises ConnectionError

    await metrics.flush()
    redis.connected = True
    await metrics.flush()

    assert float(await redis.hget(METRICS_KEY, "paperboy_leases_reaped|")) == 2.0
    await redis.aclose()
