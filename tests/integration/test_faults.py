"""Fault injection on real processes: no accepted digest is lost, each ends once, one outcome."""

from __future__ import annotations

import glob
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.processes import FAST_LEASES, Proc, Stack, base_env, holder
from tests.receiver import Receiver
from tests.redis_server import RedisServer
from tests.support import digest_body, free_port, wait_until

pytestmark = pytest.mark.integration


def interrupt(
    stack: Stack,
    task_id: str,
    processes: Callable[..., Proc],
    env: dict[str, str],
    sig: signal.Signals,
    times: int,
) -> None:
    """Start a worker, signal it once it runs the task, `times` over; then one that may finish."""
    for _ in range(times):
        worker = processes("worker", env)
        holder(stack, task_id, [worker])
        worker.signal(sig)
        worker.process.wait(timeout=15)
    processes("worker", env)


def delivery_ids(receiver: Receiver, task_id: str) -> set[str]:
    return {d.headers["X-Paperboy-Delivery"] for d in receiver.for_task(task_id)}


def assert_one_outcome(stack: Stack, receiver: Receiver, task_id: str) -> dict[str, Any]:
    status = stack.wait_status(task_id, {"completed", "failed", "cancelled"}, timeout=60)
    wait_until(lambda: stack.status(task_id)["callback_status"] == "delivered", timeout=30)
    assert len(delivery_ids(receiver, task_id)) == 1
    assert {d.json["status"] for d in receiver.for_task(task_id)} == {status["status"]}
    return status


def clock_ahead(env: dict[str, str], offset: str) -> dict[str, str]:
    """The environment of a process whose wall clock is `offset` off (Debian's libfaketime).
    Monotonic time is left alone, so asyncio's timers keep working."""
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        pytest.fail("libfaketime is missing: apt-get install -y faketime")
    return {
        **env,
        "LD_PRELOAD": found[0],
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def worker_clock(redis_url: str, worker: Proc) -> float:
    """The worker's own wall clock at its last heartbeat, as it announced it."""
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter("paperboy:worker:*"):
            info = json.loads(client.get(key) or "{}")
            if info.get("pid") == worker.process.pid:
                return float(info["last_heartbeat"])
    finally:
        client.close()
    return 0.0


def attempts_started(task_id: str, workers: list[Proc]) -> int:
    return sum(
        1
        for worker in workers
        for line in worker.log().splitlines()
        if '"digest attempt started"' in line and task_id in line
    )


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server that keeps its data in an append-only file across a crash."""
    directory = tmp_path / "aof"
    directory.mkdir()
    server = RedisServer(free_port(), directory, appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env_for(redis_url: str, tmp_path: Path) -> Callable[..., dict[str, str]]:
    def make(url: str | None = None, **overrides: str) -> dict[str, str]:
        return base_env(url or redis_url, tmp_path / "paperboy.db", **overrides)

    return make


def test_sigkill_mid_digest_is_finished_by_another_worker_within_a_minute(
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    env = env_for(digest_task_timeout="900", stage_delay_seconds="1")
    stack = start_api(env)
    workers = [processes("worker", env), processes("worker", env)]
    task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]

    victim = holder(stack, task_id, workers)
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    status = stack.wait_status(task_id, {"completed", "failed"}, timeout=60)
    recovered_in = time.monotonic() - killed_at

    assert status["status"] == "completed"
    assert recovered_in < 60
    assert status["interruptions"] == 1
    assert status["failures"] == 0
    assert_one_outcome(stack, receiver, task_id)


def test_sigterm_hands_the_digest_to_the_other_worker(
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    # The stopping worker wakes the others once arq has given the claim back, so the other
    # worker takes the digest at once, not at its next idle poll (5 s by default).
    env = env_for(stage_delay_seconds="1", worker_shutdown_grace="1", **FAST_LEASES)
    stack = start_api(env)
    workers = [processes("worker", env), processes("worker", env)]
    task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]

    first = holder(stack, task_id, workers)
    first.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    second = next(w for w in workers if w is not first)
    assert holder(stack, task_id, [second]) is second
    handed_over_in = time.monotonic() - stopped_at

    assert handed_over_in < 5
    first.process.wait(timeout=10)
    status = assert_one_outcome(stack, receiver, task_id)
    assert status["status"] == "completed"
    assert status["interruptions"] == 1


def test_flushall_loses_no_queued_or_running_digest(
    private_redis: RedisServer,
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    env = env_for(private_redis.url, stage_delay_seconds="0.5", worker_max_jobs="3", **FAST_LEASES)
    stack = start_api(env)
    processes("worker", env)
    processes("worker", env)
    task_ids = [
        stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
        for _ in range(10)
    ]
    wait_until(lambda: any(stack.status(t)["status"] == "processing" for t in task_ids), 20)

    client = private_redis.client()
    client.flushall()
    client.close()

    for task_id in task_ids:
        status = assert_one_outcome(stack, receiver, task_id)
        assert status["status"] == "completed"


def test_frozen_worker_cannot_overwrite_the_attempt_that_replaced_it(
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    env = env_for(stage_delay_seconds="1", **FAST_LEASES)
    stack = start_api(env)
    workers = [processes("worker", env), processes("worker", env)]
    task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]

    zombie = holder(stack, task_id, workers)
    zombie.signal(signal.SIGSTOP)
    status = stack.wait_status(task_id, {"completed", "failed"}, timeout=60)
    assert status["status"] == "completed"
    assert status["attempts"] == 2
    result = status["result"]
    wait_until(lambda: delivery_ids(receiver, task_id), timeout=20)

    zombie.signal(signal.SIGCONT)
    wait_until(lambda: "lost its claim" in zombie.log(), timeout=30)

    after = stack.status(task_id)
    assert after["status"] == "completed"
    assert after["attempts"] == 2
    assert after["result"] == result
    assert len(delivery_ids(receiver, task_id)) == 1
    assert len(receiver.for_task(task_id)) == 1


def test_worker_rides_out_a_redis_restart(
    private_redis: RedisServer,
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    env = env_for(private_redis.url, stage_delay_seconds="1", **FAST_LEASES)
    stack = start_api(env)
    worker = processes("worker", env)
    task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
    holder(stack, task_id, [worker])

    private_redis.stop()
    time.sleep(2)  # the outage itself: the worker must survive it
    private_redis.start()

    status = assert_one_outcome(stack, receiver, task_id)
    assert status["status"] == "completed"
    assert worker.process.poll() is None


def test_a_frozen_worker_woken_after_a_redis_crash_stays_up(
    aof_redis: RedisServer,
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    """Issue 9 item 15 end to end: frozen, Redis crashed and restarted from its append-only file,
    woken. Whether the wake-up lands inside a claim is timing; `tests/worker/test_poller.py`
    drops a connection under WATCH on purpose."""
    env = env_for(aof_redis.url, stage_delay_seconds="0.2", **FAST_LEASES)
    stack = start_api(env)
    worker = processes("worker", env)
    warm_up = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
    assert_one_outcome(stack, receiver, warm_up)

    worker.signal(signal.SIGSTOP)
    queued = stack.post_digest(digest_body(callback_url=receiver.url, top_n_articles=2))
    aof_redis.crash()
    aof_redis.start()
    worker.signal(signal.SIGCONT)
    later = stack.post_digest(digest_body(callback_url=receiver.url, top_n_articles=4))

    for response in (queued, later):
        assert assert_one_outcome(stack, receiver, response.json()["task_id"])
    assert worker.process.poll() is None


def test_a_worker_whose_clock_is_30s_ahead_does_not_run_a_task_twice(
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
    redis_url: str,
) -> None:
    """Issue 9 item 7: the ahead worker's reaper judged the steady worker's lease by its own
    clock, saw it lapsed at once and handed the running task to a second attempt."""
    env = env_for(stage_delay_seconds="2", **FAST_LEASES)
    stack = start_api(env)
    steady = processes("worker", env)
    task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
    holder(stack, task_id, [steady])
    ahead = processes("worker", clock_ahead(env, "+30s"))
    wait_until(lambda: worker_clock(redis_url, ahead) > time.time() + 25, timeout=20)
    wait_until(lambda: ahead.log().count("reaper swept") >= 3, timeout=20)

    status = assert_one_outcome(stack, receiver, task_id)
    assert status["status"] == "completed"
    assert (status["attempts"], status["interruptions"]) == (1, 0)
    assert attempts_started(task_id, [steady, ahead]) == 1


def test_a_20s_redis_stall_does_not_run_a_task_twice(
    private_redis: RedisServer,
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    """Issue 9 item 7: Redis stops answering for 20 s, five times the lease, mid-digest. Neither
    heartbeat nor reaper gets through; afterwards the holder must renew before anyone reaps."""
    env = env_for(private_redis.url, stage_delay_seconds="5", **FAST_LEASES)
    stack = start_api(env)
    workers = [processes("worker", env), processes("worker", env)]
    task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
    holder(stack, task_id, workers)

    pauser, waiter = private_redis.client(), private_redis.client()
    pauser.execute_command("CLIENT", "PAUSE", 20_000, "ALL")
    stalled_at = time.monotonic()
    waiter.ping()  # answered when the stall ends
    assert time.monotonic() - stalled_at > 15
    pauser.close()
    waiter.close()

    status = assert_one_outcome(stack, receiver, task_id)
    assert status["status"] == "completed"
    assert (status["attempts"], status["interruptions"]) == (1, 0)
    assert attempts_started(task_id, workers) == 1


def test_three_sigterms_in_a_row_do_not_fail_the_digest(
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    # One own failure would end it: interruptions must not count as failures.
    env = env_for(
        stage_delay_seconds="1", worker_shutdown_grace="0", digest_max_tries="1", **FAST_LEASES
    )
    stack = start_api(env)
    task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]

    interrupt(stack, task_id, processes, env, signal.SIGTERM, times=3)

    status = assert_one_outcome(stack, receiver, task_id)
    assert status["status"] == "completed"
    assert status["interruptions"] == 3
    assert status["failures"] == 0


def test_crash_looping_task_fails_after_bounded_interruptions(
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    env = env_for(stage_delay_seconds="1", digest_max_interruptions="2", **FAST_LEASES)
    stack = start_api(env)
    task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]

    interrupt(stack, task_id, processes, env, signal.SIGKILL, times=3)

    status = assert_one_outcome(stack, receiver, task_id)
    assert status["status"] == "failed"
    assert status["error_code"] == "too_many_interruptions"
    assert status["interruptions"] == 3


def test_a_job_arq_gives_up_on_without_running_it_is_put_back(
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
    redis_url: str,
) -> None:
    """arq fails a job whose pickup count is used up without calling our code; the store still
    says the task is active, so the reconciler queues it again and it ends with a callback."""
    env = env_for(**FAST_LEASES)
    stack = start_api(env)
    task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
    client = redis.Redis.from_url(redis_url)
    client.set(f"arq:retry:{task_id}", 1000, ex=3600)
    client.close()

    worker = processes("worker", env)

    status = assert_one_outcome(stack, receiver, task_id)
    assert status["status"] == "completed"
    assert "max retries" in worker.log()


def test_ready_reports_a_missing_worker(
    env_for: Callable[..., dict[str, str]],
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
) -> None:
    env = env_for(**FAST_LEASES)
    stack = start_api(env)

    before = stack.client.get("/ready")
    processes("worker", env)
    wait_until(lambda: stack.client.get("/ready").status_code == 200, timeout=20)
    after = stack.client.get("/ready").json()

    assert before.status_code == 503
    assert before.json()["status"] == "not_ready"
    assert before.json()["checks"]["redis"] == "ok"
    assert before.json()["checks"]["store"] == "ok"
    assert "no live worker" in before.json()["checks"]["workers"]
    assert after["checks"] == {"redis": "ok", "store": "ok", "workers": "ok"}
