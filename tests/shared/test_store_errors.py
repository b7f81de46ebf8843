"""Which store errors another try could fix (transient) and which it would repeat (permanent)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from shared import keys
from shared.errors import PermanentError, StoreError, StoreRejectedError
from shared.store.base import Backend

if TYPE_CHECKING:
    from fake_postgrest import FakePostgrest


def postgrest(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "details": None, "hint": None, "message": message}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, postgrest("22P05", "unsupported Unicode escape sequence")),
        (400, postgrest("22001", "value too long for type character varying(64)")),
        (409, postgrest("23505", "duplicate key value violates unique constraint")),
        (400, postgrest("23502", "null value in column violates not-null constraint")),
        (400, postgrest("42703", 'column "nope" does not exist')),
        (400, postgrest("PGRST204", "Could not find the 'nope' column in the schema cache")),
        (400, postgrest("PGRST100", "failed to parse filter")),
    ],
    ids=["nul", "too-long", "unique", "not-null", "column", "schema-cache", "bad-filter"],
)
async def test_a_refused_request_is_permanent(
    fake_postgrest: FakePostgrest, supabase_backend: Backend, status: int, body: dict[str, Any]
) -> None:
    fake_postgrest.fail_with(status, body)

    with pytest.raises(StoreRejectedError) as caught:
        await supabase_backend.upsert(keys.DIGEST_TASKS, {"task_id": "t", "status": "pending"})

    assert isinstance(caught.value, PermanentError)
    assert caught.value.code == "store_rejected"
    assert body["code"] in caught.value.message


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, postgrest("PGRST000", "Could not connect with the database")),
        (504, postgrest("PGRST003", "Timed out acquiring connection from connection pool")),
        (500, postgrest("40001", "could not serialize access")),
        (500, postgrest("57014", "canceling statement due to statement timeout")),
        (503, postgrest("53300", "too many connections")),
        (403, postgrest("42501", "permission denied for table paperboy_digest_tasks")),
        (502, None),  # a gateway's page: the code is the HTTP status
    ],
    ids=[
        "no-database",
        "pool-timeout",
        "serialization",
        "statement-timeout",
        "connections",
        "no-privilege",
        "502",
    ],
)
async def test_an_outage_is_transient(
    fake_postgrest: FakePostgrest, supabase_backend: Backend, status: int, body: Any
) -> None:
    fake_postgrest.fail_with(status, body)

    with pytest.raises(StoreError) as caught:
        await supabase_backend.upsert(keys.DIGEST_TASKS, {"task_id": "t", "status": "pending"})

    assert not isinstance(caught.value, PermanentError)


async def test_a_nul_echoed_in_an_error_is_not_stored_again(
    fake_postgrest: FakePostgrest, supabase_backend: Backend
) -> None:
    fake_postgrest.fail_with(400, postgrest("22P05", "bad \x00 value"))

    with pytest.raises(StoreRejectedError) as caught:
        await supabase_backend.upsert(keys.DIGEST_TASKS, {"task_id": "t", "status": "pending"})

    assert "\x00" not in caught.value.message


async def test_sqlite_refuses_an_unknown_column_for_good(sqlite_backend: Backend) -> None:
    with pytest.raises(StoreRejectedError):
        await sqlite_backend.upsert(keys.DIGEST_TASKS, {"task_id": "t", "nope": 1})


async def test_sqlite_refuses_a_broken_constraint_for_good(sqlite_backend: Backend) -> None:
    with pytest.raises(StoreRejectedError):
        await sqlite_backend.upsert(keys.DIGEST_TASKS, {"task_id": "t", "status": None})
