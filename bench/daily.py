"""Figure 8: the daily run, end to end, for generated subscribers.

Each run seeds N subscribers (profiles with an address) into a fresh store, starts W workers,
and queues the day's run as the cron would (`queue.enqueue_daily_run`). The daily job fans out one
digest and one email delivery per subscriber; digests call the local provider
(`tests.fake_openai.FakeOpenAI`, a sliding 60 s window of `PROVIDER_RPM` requests, 429 past it;
Paperboy's limiter has the same requests-per-minute and a fixed tokens-per-minute) and each
delivery goes through SMTP to an aiosmtpd sink in this process, which counts messages per
recipient. `DAILY_SPREAD_SECONDS=0`: the shared limiter alone paces the run.

The stores are SQLite (a file per run) and the real PostgREST of `tests/postgrest_bed.py` on a
throwaway PostgreSQL database, behind its Supabase-like gateway, which counts every request it
forwards: those are the store round trips. SQLite's statements are not counted. Each run has its
own redis-server, so `used_memory_peak` is the run's own peak, and `total_commands_processed`
before and after is the run's Redis commands (idle polling included: that is what it costs).

The makespan runs from queueing the daily job to the last subscriber's first email. The bound is
the provider's rate: calls ÷ (RPM / 60 s). As in figure 4, both rate windows start in the steady
state of a system busy at exactly the limit (`llm_bound.prefill`), so a cold window's free burst
does not flatter the ratio.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from bench.llm_bound import prefill
from bench.servers import Bench, RedisServer, free_port, llm_env, start_redis, start_worker
from bench.servers import worker_ready as wait_worker_ready
from shared import keys, queue
from shared.profiles import Profile, ProfileRepository
from shared.settings import Settings
from shared.store import Backend, Cond, open_backend
from tests.fake_openai import FakeOpenAI
from tests.postgrest_bed import PG_HOST, PG_PORT, PG_USER, PostgrestBed

PROVIDER_RPM = 6000
LLM_TPM = 20_000_000  # fixed, and above what 6,000 calls a minute of this workload ask for
WINDOW = 60.0
LATENCY = 0.05
WORKER_MAX_JOBS = 50  # concurrent digests per worker: enough to keep 100 calls/s in flight
SUBSCRIBERS = 1000
WORKER_COUNTS = (1, 2, 4)
STORES = ("sqlite", "postgrest")
SOURCE_DATE = date(2026, 11, 22)  # the bundled sample feed's date
SEED_BATCH = 50
# The test bed's gateway is a thread-per-request Python proxy that opens a new connection to
# PostgREST for each request: ~110 round trips a second on 2 cores, ~29 a digest. 1,000
# subscribers would take ~4 minutes a run there, so the default PostgREST runs are smaller.
POSTGREST_SUBSCRIBERS = 100
# Bytes of the day's rows as PostgreSQL stores them (the row values, before indexes and pages).
ROW_BYTES_SQL = " + ".join(
    f"(SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM public.{table} t)"
    for table in (keys.DIGEST_TASKS, keys.EMAIL_DELIVERIES, keys.PROFILES)
)


@dataclass
class Run:
    store: str
    workers: int
    subscribers: int
    makespan: float  # seconds: daily job queued to the last subscriber's first email
    calls: int  # completions the provider served
    refused: int  # 429s the provider's own limit answered
    tokens: int  # prompt + completion tokens the provider reported
    completed: int  # digest rows completed
    digest_rows: int  # digest rows of the day (one per subscriber when none is duplicated)
    emails: int  # messages the sink received
    recipients: int  # distinct recipients among them
    duplicated_emails: int  # recipients with more than one message
    redis_commands: int
    redis_peak_bytes: int
    redis_base_bytes: int  # used_memory with the workers up, before the run
    store_trips: int | None  # PostgREST requests; None for SQLite (not counted)
    store_bytes: int | None = None  # PostgreSQL: the day's rows (tasks, deliveries, profiles)
    worker_cpu: float = 0.0  # user + system CPU seconds of all the workers, start-up included
    rpm: int = PROVIDER_RPM

    @property
    def bound(self) -> float:
        return self.calls / (self.rpm / WINDOW)

    @property
    def ratio(self) -> float:
        return self.makespan / self.bound if self.bound else float("inf")

    @property
    def lost_digests(self) -> int:
        return self.subscribers - self.completed

    @property
    def duplicated_digests(self) -> int:
        return max(self.digest_rows - self.subscribers, 0)

    @property
    def lost_emails(self) -> int:
        return self.subscribers - self.recipients

    @property
    def per_digest(self) -> int:
        return max(self.completed, 1)

    @property
    def emails_per_second(self) -> float:
        return self.emails / self.makespan if self.makespan else 0.0


@dataclass
class Result:
    subscribers: int = SUBSCRIBERS  # the SQLite runs'
    postgrest_subscribers: int = POSTGREST_SUBSCRIBERS
    rpm: int = PROVIDER_RPM
    tpm: int = LLM_TPM
    runs: dict[tuple[str, int], list[Run]] = field(default_factory=dict)  # by (store, workers)


class CountingSink:
    """aiosmtpd handler: accept every message and count it per recipient (no files)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_recipient: Counter[str] = Counter()
        self.first_at: dict[str, float] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.time()
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.by_recipient[recipient] += 1
                self.first_at.setdefault(recipient, now)
        return "250 Message kept"

    def snapshot(self) -> tuple[int, int, int, float]:
        """Messages, distinct recipients, recipients with duplicates, last first-arrival."""
        with self.lock:
            counts = list(self.by_recipient.values())
            last = max(self.first_at.values(), default=0.0)
        return sum(counts), len(counts), sum(1 for c in counts if c > 1), last


@dataclass
class Store:
    """Where one run's rows live, and the worker settings that point there."""

    kind: str
    env: dict[str, str]
    sqlite_path: Path
    bed: PostgrestBed | None = None

    def trips(self) -> int | None:
        return self.bed.gateway.forwarded if self.bed and self.bed.gateway else None

    def settings(self, redis_url: str) -> Settings:
        fields: dict[str, Any] = {k.lower(): v for k, v in self.env.items() if k in _STORE_KEYS}
        return Settings(redis_url=redis_url, _env_file=None, **fields)


_STORE_KEYS = ("STATE_BACKEND", "SQLITE_PATH", "SUPABASE_URL", "SUPABASE_KEY")


def _store(bench: Bench, kind: str, name: str, bed: PostgrestBed | None) -> Store:
    sqlite_path = bench.sqlite_path(name)
    if kind == "sqlite":
        return Store(
            kind, {"STATE_BACKEND": "sqlite", "SQLITE_PATH": str(sqlite_path)}, sqlite_path
        )
    assert bed is not None
    bed.truncate()
    env = {"STATE_BACKEND": "supabase", "SUPABASE_URL": bed.url, "SUPABASE_KEY": bed.service_key}
    return Store(kind, env, sqlite_path, bed)


async def seed(backend: Backend, subscribers: int) -> None:
    repo = ProfileRepository(backend)
    profiles = [
        Profile(
            user_id=str(uuid.UUID(int=i + 1)),
            email=f"reader{i}@bench.invalid",
            name=f"Reader {i}",
            title="ML engineer",
            goals="robust federated learning and retrieval-augmented generation",
        )
        for i in range(subscribers)
    ]
    for start in range(0, subscribers, SEED_BATCH):
        await asyncio.gather(*(repo.upsert(p) for p in profiles[start : start + SEED_BATCH]))


def _redis_memory(server: RedisServer) -> tuple[int, int]:
    client = server.client()
    try:
        info: dict[str, Any] = client.info("memory")  # type: ignore[assignment]
        return int(info["used_memory"]), int(info["used_memory_peak"])
    finally:
        client.close()


async def _wait_for_mail(sink: CountingSink, subscribers: int, deadline: float) -> None:
    """Until every subscriber has a message or the deadline passes (then the rest are lost)."""
    while time.monotonic() < deadline:
        if sink.snapshot()[1] >= subscribers:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # a duplicate sent right after the last first message still counts


async def _digest_counts(settings: Settings) -> tuple[int, int]:
    backend = await open_backend(settings)
    try:
        day = [Cond("source_date", "eq", SOURCE_DATE.isoformat())]
        rows = await backend.count(keys.DIGEST_TASKS, day)
        done = await backend.count(keys.DIGEST_TASKS, [*day, Cond("status", "eq", "completed")])
        return done, rows
    finally:
        await backend.close()


async def _measure(
    bench: Bench, store: Store, server: RedisServer, workers: int, subscribers: int
) -> Run:
    sink = CountingSink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    settings = store.settings(server.url())
    backend = await open_backend(settings)
    try:
        await seed(backend, subscribers)
    finally:
        await backend.close()
    with FakeOpenAI(latency=LATENCY, rpm=PROVIDER_RPM, window=WINDOW) as fake:
        env = llm_env(
            server.url(),
            store.sqlite_path,
            fake.url,
            llm_rpm=PROVIDER_RPM,
            llm_tpm=LLM_TPM,
            daily_spread_seconds=0,
            worker_max_jobs=WORKER_MAX_JOBS,
            email_provider="smtp",
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_starttls="false",
            email_from="digest@bench.invalid",
        )
        env.update(store.env)
        procs = [start_worker(bench.lab, env, f"worker-daily-{i}") for i in range(workers)]
        pool = await queue.open_pool(settings, retries=3)
        try:
            for proc in procs:
                wait_worker_ready(server, proc)
            prefill(fake, server, PROVIDER_RPM, WINDOW)
            base_bytes, _ = _redis_memory(server)
            commands_before, trips_before = server.commands_processed(), store.trips()
            started = time.time()
            await queue.enqueue_daily_run(pool, SOURCE_DATE, "bench")
            bound = subscribers * 8 * WINDOW / PROVIDER_RPM
            await _wait_for_mail(sink, subscribers, time.monotonic() + bound * 3 + 60)
            commands = server.commands_processed() - commands_before
            trips_after = store.trips()
            _, peak_bytes = _redis_memory(server)
            emails, recipients, duplicated, last = sink.snapshot()
            worker_cpu = sum(proc.cpu_seconds() for proc in procs)
            with fake.lock:
                calls, refused = fake.completions, fake.refused
                tokens = fake.prompt_tokens + fake.completion_tokens
        finally:
            for proc in procs:
                bench.lab.stop(proc)
            await pool.aclose()
            controller.stop()
    completed, rows = await _digest_counts(settings)
    store_bytes = _row_bytes(store.bed) if store.bed is not None else None
    trips = None if trips_before is None or trips_after is None else trips_after - trips_before
    return Run(
        store=store.kind,
        workers=workers,
        subscribers=subscribers,
        makespan=max(last - started, 0.0),
        calls=calls,
        refused=refused,
        tokens=tokens,
        completed=completed,
        digest_rows=rows,
        emails=emails,
        recipients=recipients,
        duplicated_emails=duplicated,
        redis_commands=commands,
        redis_peak_bytes=peak_bytes,
        redis_base_bytes=base_bytes,
        store_trips=trips,
        store_bytes=store_bytes,
        worker_cpu=worker_cpu,
    )


def _row_bytes(bed: PostgrestBed) -> int:
    argv = ["psql", "-X", "-qtA", "-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-d", bed.database]
    out = subprocess.run(
        [*argv, "-c", f"SELECT {ROW_BYTES_SQL}"], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


async def _run(
    bench: Bench, kind: str, workers: int, subscribers: int, bed: PostgrestBed | None
) -> Run:
    name = f"daily-{kind}-{workers}-{uuid.uuid4().hex[:6]}"
    store = _store(bench, kind, name, bed)
    server = start_redis(bench.lab, f"redis-{name}")
    try:
        return await _measure(bench, store, server, workers, subscribers)
    finally:
        bench.lab.stop(server.proc)


def _log_run(log: Callable[[str], Any], rep: int, r: Run) -> None:
    trips = "-" if r.store_trips is None else f"{r.store_trips / r.per_digest:.1f}"
    log(
        f"  rep {rep + 1} {r.store} workers={r.workers}: makespan {r.makespan:.1f}s, "
        f"bound {r.bound:.1f}s, ratio {r.ratio:.3f}, calls {r.calls}, refused {r.refused}, "
        f"completed {r.completed}/{r.subscribers}, emails {r.emails} to {r.recipients} "
        f"({r.duplicated_emails} duplicated), redis {r.redis_commands / r.per_digest:.0f} "
        f"cmd/digest, peak {r.redis_peak_bytes / 2**20:.1f} MiB, store trips/digest {trips}, "
        f"worker CPU {r.worker_cpu * 1000 / r.per_digest:.0f} ms/digest"
    )


async def run(
    bench: Bench,
    reps: int,
    log: Callable[[str], Any],
    subscribers: int = SUBSCRIBERS,
    postgrest_subscribers: int = POSTGREST_SUBSCRIBERS,
    worker_counts: tuple[int, ...] = WORKER_COUNTS,
    stores: tuple[str, ...] = STORES,
) -> Result:
    """One run per store and worker count; `reps` is not used: each run is minutes long, and
    each run is its own measurement (the table shows every one)."""
    del reps
    result = Result(
        subscribers=subscribers, postgrest_subscribers=min(subscribers, postgrest_subscribers)
    )
    bed = PostgrestBed(log_dir=bench.lab.dir) if "postgrest" in stores else None
    try:
        if bed is not None:
            bed.start()
        for kind in stores:
            count = result.subscribers if kind == "sqlite" else result.postgrest_subscribers
            for workers in worker_counts:
                current = await _run(bench, kind, workers, count, bed)
                result.runs.setdefault((kind, workers), []).append(current)
                _log_run(log, 0, current)
    finally:
        if bed is not None:
            bed.stop()
    return result
