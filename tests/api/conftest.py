"""API fixtures: an app whose store is the Supabase backend talking to the in-memory PostgREST."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.settings import ApiSettings
from tests.shared.fake_postgrest import FakePostgrest
from tests.support import API_KEY, SESSION_SECRET

SUPABASE_URL = "http://supabase.test"
SUPABASE_KEY = "service-key"


@pytest.fixture
def postgrest() -> Iterator[FakePostgrest]:
    """An empty in-memory PostgREST behind SUPABASE_URL while the test runs."""
    with FakePostgrest(SUPABASE_URL, SUPABASE_KEY).mocked() as fake:
        yield fake


def api_settings(**fields: Any) -> ApiSettings:
    """The settings these tests start the API with: the one place to change when they change."""
    return ApiSettings(api_key=API_KEY, session_secret=SESSION_SECRET, **fields)


def supabase_settings(redis_url: str) -> ApiSettings:
    return api_settings(
        state_backend="supabase",
        supabase_url=SUPABASE_URL,
        supabase_key=SUPABASE_KEY,
        redis_url=redis_url,
    )
