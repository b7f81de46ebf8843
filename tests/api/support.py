"""The settings the API tests start the app with: the one place to change when they change."""

from __future__ import annotations

from typing import Any

from shared.settings import ApiSettings
from tests.support import API_KEY, SESSION_SECRET

SUPABASE_URL = "http://supabase.test"
SUPABASE_KEY = "service-key"


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
