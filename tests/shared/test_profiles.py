"""Subscribers read from the frontend's `profiles`, on every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from shared import keys
from shared.profiles import Profile, ProfileRepository, Skipped
from shared.store.base import Backend

if TYPE_CHECKING:
    from fake_postgrest import FakePostgrest

REMOVED_AT = "2026-11-20T08:00:00+00:00"


def user(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def row(n: int, **fields: object) -> dict[str, object]:
    return {"user_id": user(n), "email": f"u{n}@example.com", "name": f"U{n}", **fields}


async def test_eligible_means_goals_set_and_not_removed(backend: Backend) -> None:
    rows = [
        row(1, goals="retrieval-augmented generation", interests="AI policy", title="ML engineer"),
        row(2, goals="graph neural networks"),
        row(3, goals="reinforcement learning", remove=REMOVED_AT),
        row(4),  # no goals: not subscribed yet
        row(5, goals="   "),
    ]
    for r in rows:
        assert await backend.insert(keys.PROFILES, r)

    found = await ProfileRepository(backend).eligible()

    assert [p.user_id for p in found.profiles] == [user(1), user(2)]
    assert found.profiles[0].interests == "AI policy"
    assert found.skipped == []


async def test_a_malformed_row_is_skipped_and_reported_and_the_rest_are_read(
    backend: Backend,
) -> None:
    await backend.insert(keys.PROFILES, row(1, goals="graphs"))
    await backend.insert(keys.PROFILES, row(2, goals="graphs", name=None))
    await backend.insert(keys.PROFILES, row(3, goals="x" * 4001))
    await backend.insert(keys.PROFILES, row(4, goals="quantum"))

    found = await ProfileRepository(backend).eligible()

    assert [p.user_id for p in found.profiles] == [user(1), user(4)]
    assert [s.user_id for s in found.skipped] == [user(2), user(3)]
    assert found.skipped[0].reason.startswith("name: ")
    assert found.skipped[1].reason.startswith("goals: String should have at most 4000")


async def test_every_page_is_read(backend: Backend) -> None:
    for n in range(23):
        await backend.insert(keys.PROFILES, row(n, goals="graphs"))

    found = await ProfileRepository(backend, page_size=5).eligible()

    assert [p.user_id for p in found.profiles] == [user(n) for n in range(23)]


async def test_an_answer_cut_below_the_page_size_loses_no_subscriber(
    supabase_backend: Backend, fake_postgrest: FakePostgrest
) -> None:
    for n in range(25):
        await supabase_backend.insert(keys.PROFILES, row(n, goals="graphs"))
    fake_postgrest.max_rows = 7  # as Supabase cuts an unpaginated read at max-rows
    fake_postgrest.requests.clear()

    found = await ProfileRepository(supabase_backend, page_size=10).eligible()

    assert len(found.profiles) == 25
    pages = [r.url.params for r in fake_postgrest.requests]
    assert [p.get("limit") for p in pages] == ["10"] * 5
    assert [p.get("user_id") for p in pages] == [
        None,
        *(f"gt.{user(n)}" for n in (6, 13, 20, 24)),
    ]
    assert all(p["remove"] == "is.null" and p["order"] == "user_id.asc" for p in pages)


async def test_admin_upsert_keeps_the_frontends_columns_and_remove_keeps_the_first_time(
    backend: Backend,
) -> None:
    await backend.insert(keys.PROFILES, row(1, goals="graphs", task_html="<p>old</p>"))
    profiles = ProfileRepository(backend)

    await profiles.upsert(Profile(user_id=user(1).upper(), name="Ada", goals="agents"))
    assert await profiles.remove(user(1))
    first = await backend.get(keys.PROFILES, {"user_id": user(1)})
    assert await profiles.remove(user(1))

    assert await backend.get(keys.PROFILES, {"user_id": user(1)}) == first
    assert first is not None
    assert (first["name"], first["goals"], first["task_html"]) == ("Ada", "agents", "<p>old</p>")
    assert first["remove"] is not None and first["id"]
    assert (await profiles.eligible()).profiles == []
    assert not await profiles.remove(user(2))


def test_a_skip_names_every_invalid_field() -> None:
    with pytest.raises(ValidationError) as error:
        Profile.model_validate({"user_id": "not-a-uuid", "name": "", "goals": "g"})

    skip = Skipped.invalid("not-a-uuid", error.value)

    assert skip.user_id == "not-a-uuid"
    assert skip.reason.startswith("user_id: ") and "; name: " in skip.reason
