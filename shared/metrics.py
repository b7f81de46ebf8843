"""Metrics every process adds to in Redis, and their Prometheus rendering by the API.

Workers and the API are separate processes (and machines), and the API may be scaled to zero, so
counters and histograms are summed in one Redis hash instead of in each process's memory. Losing
Redis resets them, which Prometheus reads as an ordinary counter reset.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys

log = logging.getLogger("paperboy.metrics")

METRICS_KEY = keys.PREFIX + "metrics"


@dataclass(frozen=True)
class Spec:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # a histogram when set


DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900)
FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SPECS = {
    spec.name: spec
    for spec in (
        Spec("paperboy_digests_finished", "Digests that reached a terminal status.", ("status",)),
        Spec("paperboy_digest_failures", "Failed digests by error code.", ("error_code",)),
        Spec(
            "paperboy_digest_retries",
            "Digest attempts that failed and will be retried.",
            ("error_code",),
        ),
        Spec("paperboy_digest_interruptions", "Attempts lost to crashes, deploys and reaps."),
        Spec(
            "paperboy_digest_duration_seconds",
            "Wall time of one digest attempt.",
            (),
            DURATION_BUCKETS,
        ),
        Spec(
            "paperboy_stage_duration_seconds",
            "Wall time of one pipeline stage.",
            ("stage",),
            FAST_BUCKETS,
        ),
        Spec(
            "paperboy_pickup_latency_seconds",
            "From runnable in the queue to started.",
            (),
            FAST_BUCKETS,
        ),
        Spec("paperboy_llm_requests", "LLM requests by outcome.", ("outcome",)),
        Spec("paperboy_llm_tokens", "LLM tokens paid for.", ("kind",)),
        Spec("paperboy_llm_cost_usd", "LLM spend in US dollars."),
        Spec(
            "paperboy_ratelimit_wait_seconds",
            "Time spent waiting for the LLM rate limiter.",
            (),
            FAST_BUCKETS,
        ),
        Spec(
            "paperboy_callback_deliveries", "Callback delivery attempts by outcome.", ("outcome",)
        ),
        # Rendered as paperboy_emails_total; outcome is sent, retried, failed or ambiguous.
        Spec("paperboy_emails", "Email sends by kind and outcome.", ("kind", "outcome")),
        Spec("paperboy_leases_reaped", "Lapsed leases released for another worker."),
        Spec("paperboy_tasks_requeued", "Tasks the reconciler queued again.", ("kind",)),
        Spec("paperboy_news_fetches", "NewsAPI fetches by outcome.", ("outcome",)),
        Spec("paperboy_extract_requests", "Tavily Extract requests by outcome.", ("outcome",)),
        Spec(
            "paperboy_news_links",
            "Chosen news links by class, and whether each reached the digest.",
            ("status", "outcome"),
        ),
    )
}


def _field(name: str, labels: Mapping[str, str]) -> str:
    return name + "|" + ",".join(f"{k}={labels[k]}" for k in sorted(labels))


class Metrics:
    """Counts in memory and adds them to the shared hash in one round trip per interval.

    Recording never waits and never fails; what cannot be written yet is kept for the next
    flush.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pending: defaultdict[str, float] = defaultdict(float)
        self._flusher: asyncio.Task[None] | None = None

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        self._pending[_field(name, labels)] += amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        # Buckets are kept non-cumulative (one field per observation); rendering sums them.
        buckets = SPECS[name].buckets
        index = bisect.bisect_left(buckets, value)
        le = str(buckets[index]) if index < len(buckets) else "+Inf"
        self._pending[_field(name + "_bucket", {**labels, "le": le})] += 1
        self._pending[_field(name + "_sum", labels)] += value
        self._pending[_field(name + "_count", labels)] += 1

    async def flush(self) -> None:
        pending, self._pending = self._pending, defaultdict(float)
        if not pending:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for field, amount in pending.items():
                    pipe.hincrbyfloat(METRICS_KEY, field, amount)
                await pipe.execute()
        except RedisError as exc:
            log.warning("metrics not flushed yet: %s", exc)
            for field, amount in pending.items():
                self._pending[field] += amount

    async def start(self, interval: float) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                await self.flush()

        self._flusher = asyncio.create_task(loop(), name="paperboy-metrics")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()

    async def snapshot(self) -> dict[str, float]:
        raw = await self.redis.hgetall(METRICS_KEY)  # type: ignore[misc]
        return {k.decode(): float(v) for k, v in raw.items()}


def _parse(field: str) -> tuple[str, dict[str, str]]:
    name, _, labels = field.partition("|")
    pairs = (pair.partition("=") for pair in labels.split(",") if pair)
    return name, {k: v for k, _, v in pairs}


class _Snapshot(Collector):
    def __init__(self, values: Mapping[str, float], gauges: Mapping[str, float]) -> None:
        self.values = values
        self.gauges = gauges

    def collect(self) -> Iterable[Metric]:
        series: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        for field, value in self.values.items():
            name, labels = _parse(field)
            series[name][tuple(sorted(labels.items()))] = value
        for spec in SPECS.values():
            yield self._histogram(spec, series) if spec.buckets else self._counter(spec, series)
        for name, value in self.gauges.items():
            yield GaugeMetricFamily(name, name.replace("_", " "), value=value)

    @staticmethod
    def _counter(
        spec: Spec, series: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]]
    ) -> Metric:
        family = CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))
        for labels, value in series.get(spec.name, {}).items():
            family.add_metric([dict(labels).get(k, "") for k in spec.labels], value)
        return family

    @staticmethod
    def _histogram(
        spec: Spec, series: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]]
    ) -> Metric:
        family = HistogramMetricFamily(spec.name, spec.help, labels=list(spec.labels))
        for labels, total in series.get(spec.name + "_sum", {}).items():
            values = dict(labels)
            buckets = series.get(spec.name + "_bucket", {})
            count = series.get(spec.name + "_count", {}).get(labels, 0.0)
            bucket_values = []
            running = 0.0
            for le in spec.buckets:
                running += buckets.get(tuple(sorted({**values, "le": str(le)}.items())), 0.0)
                bucket_values.append((str(le), running))
            family.add_metric(
                [values.get(k, "") for k in spec.labels],
                [*bucket_values, ("+Inf", count)],
                total,
            )
        return family


def render(values: Mapping[str, float], gauges: Mapping[str, float]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(values, gauges))
    return generate_latest(registry)
