"""API fixtures: an app whose store is the Supabase backend talking to the in-memory PostgREST."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.support import SUPABASE_KEY, SUPABASE_URL
from tests.shared.fake_postgrest import FakePostgrest


@pytest.fixture
def postgrest() -> Iterator[FakePostgrest]:
    """An empty in-memory PostgREST behind SUPABASE_URL while the test runs."""
    with FakePostgrest(SUPABASE_URL, SUPABASE_KEY).mocked() as fake:
        yield fake
