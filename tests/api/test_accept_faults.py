"""Accepting a digest while the store or Redis fails at any step: one task or none, and answers
that agree with what was stored.

The store is the Supabase backend talking to the in-memory PostgREST, which can drop a request
before it arrives or lose the answer after the write is done; Redis is real.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from paperboy_api.app import create_app
from shared import keys
from tests.api.support import supabase_settings
from tests.processes import RedisServer
from tests.shared.fake_postgrest import FakePostgrest
from tests.support import API_KEY, digest_body

HEADERS = {"X-API-Key": API_KEY}
# Where a fault can land: the key binding, the repeat's look-up, the task insert, the take-back.
STEPS = (1, 2, 3)
FAULTS = [(step, applied) for step in STEPS for applied in (False, True)]
FAULT_IDS = [
    f"request {step} {'answer lost' if applied else 'dropped'}" for step, applied in FAULTS
]


@pytest.fixture
def fake(postgrest: FakePostgrest) -> FakePostgrest:
    return postgrest


@pytest.fixture
def client(fake: FakePostgrest, redis_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(supabase_settings(redis_url)), headers=HEADERS) as test_client:
        yield test_client


@pytest.fixture
def queued(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def post(client: TestClient, key: str | None, body: dict[str, Any] | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/generate-digest", json=body or digest_body(), headers=headers)


def task_ids(fake: FakePostgrest) -> set[str]:
    return {row["task_id"] for row in fake.rows(keys.DIGEST_TASKS)}


def queued_jobs(client: redis.Redis) -> set[str]:
    return {member.decode() for member in client.zrange(keys.QUEUE, 0, -1)}


def assert_answer_agrees(response: httpx.Response, fake: FakePostgrest, jobs: set[str]) -> None:
    """A 2xx names a stored, queued task; a 503 says when to come back."""
    if response.status_code == 503:
        assert response.headers["Retry-After"]
        assert response.json()["detail"]
        return
    assert response.status_code in {200, 202}, response.text
    task_id = response.json()["task_id"]
    assert task_id in task_ids(fake)
    assert task_id in jobs


@pytest.mark.parametrize(("step", "applied"), FAULTS, ids=FAULT_IDS)
def test_store_fault_without_a_key_leaves_the_task_only_if_accepted(
    client: TestClient, fake: FakePostgrest, queued: redis.Redis, step: int, applied: bool
) -> None:
    fake.fail_request(step, applied=applied)

    response = post(client, None)

    assert_answer_agrees(response, fake, queued_jobs(queued))
    expected = {response.json()["task_id"]} if response.status_code == 202 else set()
    assert task_ids(fake) == expected


@pytest.mark.parametrize(("step", "applied"), FAULTS, ids=FAULT_IDS)
def test_store_fault_with_a_key_then_a_retry_makes_one_task(
    client: TestClient, fake: FakePostgrest, queued: redis.Redis, step: int, applied: bool
) -> None:
    fake.fail_request(step, applied=applied)

    # The fault lands on one request of the exchange; the client retries each 503 once more.
    responses = [post(client, "fault-key") for _ in range(3)]

    for response in responses:
        assert_answer_agrees(response, fake, queued_jobs(queued))
    assert responses[-1].status_code in {200, 202}
    named = {r.json()["task_id"] for r in responses if r.status_code != 503}
    assert task_ids(fake) == named
    assert len(named) == 1


@pytest.mark.parametrize(("step", "applied"), FAULTS, ids=FAULT_IDS)
def test_concurrent_requests_with_one_key_under_a_fault_make_one_task(
    client: TestClient, fake: FakePostgrest, queued: redis.Redis, step: int, applied: bool
) -> None:
    fake.fail_request(step, applied=applied)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: post(client, "shared-key"), range(8)))
    responses.append(post(client, "shared-key"))

    jobs = queued_jobs(queued)
    for response in responses:
        assert_answer_agrees(response, fake, jobs)
    named = {r.json()["task_id"] for r in responses if r.status_code != 503}
    assert len(task_ids(fake)) == 1
    assert named == task_ids(fake)
    assert jobs == named
    assert sum(r.status_code == 202 for r in responses) <= 1


@pytest.mark.parametrize(("step", "applied"), FAULTS, ids=FAULT_IDS)
def test_concurrent_requests_without_a_key_under_a_fault(
    client: TestClient, fake: FakePostgrest, queued: redis.Redis, step: int, applied: bool
) -> None:
    fake.fail_request(step, applied=applied)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: post(client, None), range(8)))

    jobs = queued_jobs(queued)
    for response in responses:
        assert_answer_agrees(response, fake, jobs)
    accepted = {r.json()["task_id"] for r in responses if r.status_code == 202}
    assert task_ids(fake) == accepted
    assert jobs == accepted
    assert len(accepted) >= 7


def test_one_key_with_two_bodies_at_once_is_one_task_and_a_conflict(
    client: TestClient, fake: FakePostgrest
) -> None:
    bodies = [digest_body(top_n_articles=n) for n in (3, 4)] * 4

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda body: post(client, "contested", body), bodies))

    codes = sorted(r.status_code for r in responses)
    assert codes.count(409) == 4
    assert codes.count(202) == 1
    assert len(task_ids(fake)) == 1


@pytest.fixture
def private_client(fake: FakePostgrest, private_redis: RedisServer) -> Iterator[TestClient]:
    with TestClient(
        create_app(supabase_settings(private_redis.url)), headers=HEADERS
    ) as test_client:
        yield test_client


@pytest.mark.parametrize("key", [None, "redis-key"], ids=["no key", "with a key"])
def test_redis_down_at_enqueue_then_back(
    private_client: TestClient, fake: FakePostgrest, private_redis: RedisServer, key: str | None
) -> None:
    private_redis.stop()

    down = post(private_client, key)

    assert down.status_code == 503
    assert down.headers["Retry-After"]
    # With a key the stored task waits for the retry (or the reconciler); without one it is gone.
    assert len(task_ids(fake)) == (1 if key else 0)

    private_redis.start()
    retry = post(private_client, key)

    assert retry.status_code in {200, 202}
    assert task_ids(fake) == {retry.json()["task_id"]}
    with private_redis.client() as client:
        assert queued_jobs(client) == {retry.json()["task_id"]}


@pytest.mark.parametrize("applied", [False, True], ids=["dropped", "answer lost"])
def test_a_fetch_whose_insert_fails_leaves_no_fetch_task(
    client: TestClient, fake: FakePostgrest, applied: bool
) -> None:
    fake.fail_request(1, applied=applied)

    response = client.post("/fetch-sources", json={"source_date": "2026-11-22"})

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert fake.rows(keys.FETCH_TASKS) == []
