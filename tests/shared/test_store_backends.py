"""One body per behaviour of the store, run against every backend through the `backend` fixture."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest

from shared import keys
from shared.errors import StoreError
from shared.store.base import Backend, Cond, Query

if TYPE_CHECKING:
    from fake_postgrest import FakePostgrest

    from tests.postgrest_bed import PostgrestBed

CREATED = "2026-11-23T10:00:00+00:00"


def digest(task_id: str, **fields: object) -> dict[str, object]:
    return {
        "task_id": task_id,
        "status": "pending",
        "request": {"user_id": "u1", "categories": ["cs.AI"], "options": {"depth": 2}},
        "usage": {"prompt_tokens": 10, "cost": 0.25},
        "articles": [{"title": "A", "score": 0.9}],
        "running": False,
        "degraded": True,
        "attempt": 1,
        "created_at": CREATED,
        "updated_at": CREATED,
        **fields,
    }


async def test_insert_then_get_round_trips_json_and_bool_columns(backend: Backend) -> None:
    assert await backend.insert(keys.DIGEST_TASKS, digest("t1")) is True

    row = await backend.get(keys.DIGEST_TASKS, {"task_id": "t1"})

    assert row is not None
    assert row["request"] == {"user_id": "u1", "categories": ["cs.AI"], "options": {"depth": 2}}
    assert row["usage"] == {"prompt_tokens": 10, "cost": 0.25}
    assert row["articles"] == [{"title": "A", "score": 0.9}]
    assert row["running"] is False
    assert row["degraded"] is True
    assert row["created_at"] == CREATED
    assert await backend.get(keys.DIGEST_TASKS, {"task_id": "missing"}) is None


async def test_composite_key_round_trips(backend: Backend) -> None:
    items = [{"id": "2611.00001", "title": "Paper"}]
    for category in ("cs.AI", "cs.CL"):
        source = {"source_date": "2026-11-23", "category": category, "items": items}
        assert await backend.insert(keys.DAILY_SOURCES, {**source, "fetched_at": CREATED})

    row = await backend.get(keys.DAILY_SOURCES, {"source_date": "2026-11-23", "category": "cs.CL"})

    assert row is not None
    assert (row["category"], row["items"]) == ("cs.CL", items)


async def test_duplicate_insert_returns_false_and_keeps_the_first_row(backend: Backend) -> None:
    assert await backend.insert(keys.DIGEST_TASKS, digest("t1", message="first"))

    assert await backend.insert(keys.DIGEST_TASKS, digest("t1", message="second")) is False

    row = await backend.get(keys.DIGEST_TASKS, {"task_id": "t1"})
    assert row is not None and row["message"] == "first"


async def test_update_applies_when_every_condition_holds(backend: Backend) -> None:
    await backend.insert(keys.DIGEST_TASKS, digest("t1"))

    row = await backend.update(
        keys.DIGEST_TASKS,
        {"task_id": "t1"},
        {"status": "processing", "attempt": 2, "running": True, "usage": {"cost": 1.5}},
        [Cond("attempt", "eq", 1), Cond("status", "in", ("pending", "processing"))],
    )

    assert row is not None
    assert (row["status"], row["attempt"], row["running"]) == ("processing", 2, True)
    assert row["usage"] == {"cost": 1.5}
    assert await backend.get(keys.DIGEST_TASKS, {"task_id": "t1"}) == row


@pytest.mark.parametrize(
    "condition",
    [Cond("attempt", "eq", 7), Cond("status", "in", ("completed", "failed"))],
    ids=["stale-attempt", "wrong-status"],
)
async def test_update_with_a_failing_condition_changes_nothing(
    backend: Backend, condition: Cond
) -> None:
    await backend.insert(keys.DIGEST_TASKS, digest("t1"))
    before = await backend.get(keys.DIGEST_TASKS, {"task_id": "t1"})

    row = await backend.update(
        keys.DIGEST_TASKS, {"task_id": "t1"}, {"status": "completed"}, [condition]
    )

    assert row is None
    assert await backend.get(keys.DIGEST_TASKS, {"task_id": "t1"}) == before


async def test_update_of_a_missing_key_returns_none(backend: Backend) -> None:
    assert (
        await backend.update(keys.DIGEST_TASKS, {"task_id": "nope"}, {"status": "failed"}) is None
    )


async def test_upsert_inserts_then_merges(backend: Backend) -> None:
    key = {"source_date": "2026-11-23", "category": "cs.AI"}
    await backend.upsert(
        keys.DAILY_SOURCES, {**key, "items": [1], "item_count": 1, "fetched_at": CREATED}
    )

    later = "2026-11-23T11:00:00+00:00"
    await backend.upsert(keys.DAILY_SOURCES, {**key, "items": [1, 2], "fetched_at": later})

    row = await backend.get(keys.DAILY_SOURCES, key)
    assert row is not None
    # Only the columns given are merged: item_count keeps its value.
    assert (row["items"], row["item_count"], row["fetched_at"]) == ([1, 2], 1, later)
    assert await backend.count(keys.DAILY_SOURCES) == 1


async def test_select_filters_orders_and_limits(backend: Backend) -> None:
    for n, status in enumerate(["pending", "failed", "pending", "completed", "pending"]):
        created = f"2026-11-23T10:0{n}:00+00:00"
        done = None if status == "pending" else created
        await backend.insert(
            keys.DIGEST_TASKS, digest(f"t{n}", status=status, created_at=created, finished_at=done)
        )

    newest = await backend.select(
        keys.DIGEST_TASKS,
        Query(
            [
                Cond("status", "in", ("pending", "failed")),
                Cond("created_at", "gte", "2026-11-23T10:01:00+00:00"),
            ],
            order_by="created_at",
            descending=True,
            limit=2,
            columns=["task_id", "status"],
        ),
    )
    oldest = await backend.select(keys.DIGEST_TASKS, Query(order_by="created_at", limit=1))
    unfinished = await backend.select(
        keys.DIGEST_TASKS, Query([Cond("finished_at", "is_null", True)])
    )
    finished = await backend.select(
        keys.DIGEST_TASKS, Query([Cond("finished_at", "is_null", False)])
    )
    not_pending = await backend.select(keys.DIGEST_TASKS, Query([Cond("status", "neq", "pending")]))
    before_t2 = Cond("created_at", "lt", "2026-11-23T10:02:00+00:00")
    earlier = await backend.select(keys.DIGEST_TASKS, Query([before_t2]))

    assert newest == [
        {"task_id": "t4", "status": "pending"},
        {"task_id": "t2", "status": "pending"},
    ]
    assert [row["task_id"] for row in oldest] == ["t0"]
    assert oldest[0]["request"]["options"] == {"depth": 2}
    assert sorted(row["task_id"] for row in unfinished) == ["t0", "t2", "t4"]
    assert sorted(row["task_id"] for row in finished) == ["t1", "t3"]
    assert sorted(row["task_id"] for row in not_pending) == ["t1", "t3"]
    assert sorted(row["task_id"] for row in earlier) == ["t0", "t1"]


async def test_in_values_with_reserved_characters(backend: Backend) -> None:
    odd = ["a,b", 'c"d', "e(f)", "g\\h", "i j"]
    for task_id in [*odd, "plain"]:
        await backend.insert(keys.DIGEST_TASKS, digest(task_id))

    rows = await backend.select(
        keys.DIGEST_TASKS, Query([Cond("task_id", "in", odd)], columns=["task_id"])
    )

    assert sorted(row["task_id"] for row in rows) == sorted(odd)


async def test_count(backend: Backend) -> None:
    assert await backend.count(keys.DIGEST_TASKS) == 0
    for n, status in enumerate(["pending", "failed", "pending"]):
        await backend.insert(keys.DIGEST_TASKS, digest(f"t{n}", status=status))

    assert await backend.count(keys.DIGEST_TASKS) == 3
    assert await backend.count(keys.DIGEST_TASKS, [Cond("status", "eq", "pending")]) == 2
    assert await backend.count(keys.DIGEST_TASKS, [Cond("status", "in", ())]) == 0


async def test_delete_with_and_without_conditions(backend: Backend) -> None:
    await backend.insert(keys.DIGEST_TASKS, digest("t1"))
    await backend.insert(keys.DIGEST_TASKS, digest("t2"))

    t1 = {"task_id": "t1"}
    assert await backend.delete(keys.DIGEST_TASKS, t1, [Cond("status", "eq", "failed")]) is False
    assert await backend.delete(keys.DIGEST_TASKS, t1, [Cond("status", "eq", "pending")]) is True
    assert await backend.delete(keys.DIGEST_TASKS, {"task_id": "t2"}) is True
    assert await backend.delete(keys.DIGEST_TASKS, {"task_id": "t2"}) is False
    assert await backend.count(keys.DIGEST_TASKS) == 0


async def test_ping(backend: Backend) -> None:
    await backend.ping()


# --- Supabase only: the requests on the wire ------------------------------------------------


async def test_conditional_update_is_one_filtered_patch(
    supabase_backend: Backend, fake_postgrest: FakePostgrest
) -> None:
    await supabase_backend.insert(keys.DIGEST_TASKS, digest("t1"))
    fake_postgrest.requests.clear()

    row = await supabase_backend.update(
        keys.DIGEST_TASKS,
        {"task_id": "t1"},
        {"status": "processing", "attempt": 2},
        [Cond("attempt", "eq", 1), Cond("status", "in", ("pending", "processing"))],
    )

    assert row is not None
    [request] = fake_postgrest.requests
    assert request.method == "PATCH"
    assert request.url.path == f"/rest/v1/{keys.DIGEST_TASKS}"
    assert request.url.params.multi_items() == [
        ("task_id", "eq.t1"),
        ("attempt", "eq.1"),
        ("status", "in.(pending,processing)"),
    ]
    assert request.headers["prefer"] == "return=representation"
    assert json.loads(request.content) == {"status": "processing", "attempt": 2}


async def test_insert_is_one_upsert_that_ignores_duplicates(
    supabase_backend: Backend, fake_postgrest: FakePostgrest
) -> None:
    assert await supabase_backend.insert(keys.DAILY_SOURCES, {"source_date": "d", "category": "c"})
    assert not await supabase_backend.insert(
        keys.DAILY_SOURCES, {"source_date": "d", "category": "c"}
    )

    first, second = fake_postgrest.requests
    assert first.method == second.method == "POST"
    assert first.url.params.multi_items() == [
        ("on_conflict", "source_date,category"),
        ("select", "source_date,category"),
    ]
    # .select() on the upsert moves return=representation to the end of Prefer.
    assert first.headers["prefer"] == "resolution=ignore-duplicates,return=representation"
    assert first.headers["apikey"] == "service-key"
    assert first.headers["authorization"] == "Bearer service-key"


async def test_reads_send_the_expected_queries(
    supabase_backend: Backend, fake_postgrest: FakePostgrest
) -> None:
    await supabase_backend.count(keys.DIGEST_TASKS, [Cond("finished_at", "is_null", False)])
    await supabase_backend.select(
        keys.DIGEST_TASKS,
        Query([Cond("worker_id", "is_null", True)], order_by="created_at", limit=5),
    )
    await supabase_backend.ping()

    count, select, ping = fake_postgrest.requests
    assert count.method == "HEAD"
    assert count.url.params.multi_items() == [("select", "task_id"), ("finished_at", "not.is.null")]
    assert count.headers["prefer"] == "count=exact"
    assert select.url.params.multi_items() == [
        ("select", "*"),
        ("worker_id", "is.null"),
        ("order", "created_at.asc"),
        ("limit", "5"),
    ]
    assert (ping.method, ping.url.path) == ("GET", f"/rest/v1/{keys.DIGEST_TASKS}")
    assert ping.url.params.multi_items() == [("select", "task_id"), ("limit", "1")]


async def test_an_unavailable_api_raises_store_error(
    supabase_backend: Backend, fake_postgrest: FakePostgrest
) -> None:
    fake_postgrest.fail_with(503, {"message": "upstream unavailable"})

    with pytest.raises(
        StoreError, match="update on paperboy_digest_tasks failed: upstream unavailable"
    ):
        await supabase_backend.update(keys.DIGEST_TASKS, {"task_id": "t1"}, {"status": "failed"})
    fake_postgrest.fail_with(503)  # a gateway answer: no PostgREST JSON body
    with pytest.raises(
        StoreError, match=r"select on paperboy_digest_tasks failed \[503\]: Service Unavailable"
    ):
        await supabase_backend.ping()

    assert len(fake_postgrest.requests) == 2  # no hidden retries


async def test_a_network_failure_raises_store_error(
    supabase_backend: Backend, fake_postgrest: FakePostgrest
) -> None:
    fake_postgrest.refuse_connections()

    with pytest.raises(StoreError, match="insert on paperboy_digest_tasks failed: ConnectError"):
        await supabase_backend.insert(keys.DIGEST_TASKS, digest("t1"))


async def test_the_fake_rejects_what_it_does_not_understand(fake_postgrest: FakePostgrest) -> None:
    headers = {"apikey": "service-key", "authorization": "Bearer service-key"}
    async with httpx.AsyncClient(base_url="http://supabase.test/rest/v1", headers=headers) as http:
        like = await http.get(f"/{keys.DIGEST_TASKS}", params={"status": "like.pend*"})
        unknown = await http.get(f"/{keys.DIGEST_TASKS}", params={"nope": "eq.1"})
        unfiltered = await http.patch(f"/{keys.DIGEST_TASKS}", json={"status": "failed"})

    assert like.status_code == 400 and "like" in like.json()["message"]
    assert (unknown.status_code, unknown.json()["code"]) == (400, "42703")
    assert (unfiltered.status_code, unfiltered.json()["code"]) == (400, "21000")


# --- Real PostgREST only: what the Supabase roles and gateway enforce -----------------------


async def test_row_level_security_hides_the_store_from_the_anon_key(
    postgrest_backend: Backend, empty_postgrest: PostgrestBed
) -> None:
    from shared.store.supabase import SupabaseBackend  # noqa: PLC0415 - a heavy import

    await postgrest_backend.insert(keys.DIGEST_TASKS, digest("t1"))
    anon = SupabaseBackend(empty_postgrest.url, empty_postgrest.anon_key)
    await anon.open()
    try:
        assert await anon.select(keys.DIGEST_TASKS) == []
        with pytest.raises(StoreError, match=r"\[42501\].*row-level security"):
            await anon.insert(keys.DIGEST_TASKS, digest("t2"))
    finally:
        await anon.close()
    assert await postgrest_backend.count(keys.DIGEST_TASKS) == 1


async def test_the_gateway_turns_away_an_unknown_key(empty_postgrest: PostgrestBed) -> None:
    from shared.store.supabase import SupabaseBackend  # noqa: PLC0415 - a heavy import

    stranger = SupabaseBackend(empty_postgrest.url, "not-a-key")
    await stranger.open()
    try:
        with pytest.raises(StoreError, match="Invalid API key"):
            await stranger.ping()
    finally:
        await stranger.close()
