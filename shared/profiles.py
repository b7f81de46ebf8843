"""User profiles, read by the daily run (on Supabase the application owns the table)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from shared import keys
from shared.models import stamp
from shared.store import Backend, Cond


class Profile(BaseModel):
    """The body of `POST /admin/profiles` and one row of `profiles`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    user_id: Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[\w.@:-]+$")]
    email: Annotated[StrictStr | None, Field(max_length=320)] = None
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    title: Annotated[StrictStr | None, Field(max_length=200)] = None
    goals: Annotated[StrictStr, Field(min_length=1, max_length=4000)]
    interests: Annotated[StrictStr | None, Field(max_length=500)] = None
    removed: bool = False


class ProfileRepository:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def upsert(self, profile: Profile) -> None:
        now = stamp()
        existing = await self.backend.get(keys.PROFILES, {"user_id": profile.user_id})
        row: dict[str, Any] = {
            **profile.model_dump(),
            "removed": False,
            "updated_at": now,
            "created_at": existing["created_at"] if existing else now,
        }
        await self.backend.upsert(keys.PROFILES, row)

    async def remove(self, user_id: str) -> bool:
        changed = await self.backend.update(
            keys.PROFILES, {"user_id": user_id}, {"removed": True, "updated_at": stamp()}
        )
        return changed is not None

    async def all(self, limit: int = 1000) -> list[Profile]:
        rows = await self.backend.select(keys.PROFILES, order_by="user_id", limit=limit)
        return [Profile.model_validate(row) for row in rows]

    async def eligible(self) -> list[Profile]:
        """Profiles the daily run writes for: goals set, not removed."""
        rows = await self.backend.select(
            keys.PROFILES,
            [Cond("removed", "eq", False), Cond("goals", "is_null", False)],
            order_by="user_id",
        )
        return [p for p in map(Profile.model_validate, rows) if p.goals.strip()]
