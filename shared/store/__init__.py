"""The state store: the source of truth for every task, behind one interface."""

from __future__ import annotations

from shared.settings import Settings
from shared.store.base import Backend, Cond, Query, Row
from shared.store.sqlite import SqliteBackend

__all__ = ["Backend", "Cond", "Query", "Row", "open_backend"]


async def open_backend(settings: Settings) -> Backend:
    """Open the configured backend; the caller closes it."""
    backend: Backend
    if settings.state_backend == "supabase":
        from shared.store.supabase import SupabaseBackend

        assert settings.supabase_url and settings.supabase_key
        backend = SupabaseBackend(
            settings.supabase_url,
            settings.supabase_key.get_secret_value(),
            timeout=settings.store_timeout_seconds,
        )
    else:
        backend = SqliteBackend(settings.sqlite_path, timeout=settings.store_timeout_seconds)
    await backend.open()
    return backend
