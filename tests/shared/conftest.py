"""Store fixtures: `backend` runs a test once per backend: SQLite, a fake PostgREST (whose
requests tests can inspect) and a real PostgREST 12 behind a /rest/v1 gateway.

The Supabase client and the fake are imported only when a Supabase test runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shared.store.base import Backend

if TYPE_CHECKING:
    from fake_postgrest import FakePostgrest

    from tests.postgrest_bed import PostgrestBed

SUPABASE_URL = "http://supabase.test"
SUPABASE_KEY = "service-key"


@pytest.fixture
def fake_postgrest() -> Iterator[FakePostgrest]:
    """An empty in-memory PostgREST behind SUPABASE_URL, mocked with respx while the test runs."""
    from fake_postgrest import FakePostgrest  # noqa: PLC0415 - keeps respx out of SQLite runs

    with FakePostgrest(SUPABASE_URL, SUPABASE_KEY).mocked() as fake:
        yield fake


@pytest.fixture
async def supabase_backend(fake_postgrest: FakePostgrest) -> AsyncIterator[Backend]:
    """A SupabaseBackend talking to `fake_postgrest`."""
    from shared.store.supabase import SupabaseBackend  # noqa: PLC0415 - a heavy import

    store = SupabaseBackend(SUPABASE_URL, SUPABASE_KEY)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def postgrest_backend(empty_postgrest: PostgrestBed) -> AsyncIterator[Backend]:
    """A SupabaseBackend on the real PostgREST, with the service-role key, tables emptied."""
    from shared.store.supabase import SupabaseBackend  # noqa: PLC0415 - a heavy import

    store = SupabaseBackend(empty_postgrest.url, empty_postgrest.service_key)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    from shared.store.sqlite import SqliteBackend  # noqa: PLC0415

    store = SqliteBackend(tmp_path / "store.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture(
    params=["sqlite", "supabase", pytest.param("postgrest", marks=pytest.mark.postgrest)]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    """An opened, empty store; every test that uses it runs once per backend."""
    store: Backend = request.getfixturevalue(f"{request.param}_backend")
    return store
