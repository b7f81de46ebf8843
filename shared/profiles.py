"""Subscribers: the frontend's `profiles` rows, which the daily run writes a digest for."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError

from shared import keys
from shared.models import stamp
from shared.store import Backend, Cond, Query, Row

# PostgREST answers at most `max-rows` rows a request (1,000 on Supabase) and says nothing when it
# cuts; the reader asks for pages and stops only at an empty one, so a lower cap loses nothing.
PAGE_SIZE = 1000
# With email on, a subscriber the digest cannot reach is skipped like a malformed row.
NO_ADDRESS = "email: no address to send the digest to"


def parse_user_id(value: str) -> str:
    """The frontend's user id (an auth.users uuid) in canonical form, or ValueError."""
    return str(uuid.UUID(value))


class Profile(BaseModel):
    """The body of `POST /admin/profiles` and one subscriber row of `profiles`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    user_id: Annotated[StrictStr, AfterValidator(parse_user_id)]
    email: Annotated[StrictStr | None, Field(max_length=320)] = None
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    title: Annotated[StrictStr | None, Field(max_length=200)] = None
    goals: Annotated[StrictStr, Field(min_length=1, max_length=4000)]
    interests: Annotated[StrictStr | None, Field(max_length=500)] = None
    remove: datetime | None = None  # set = unsubscribed, as the frontend marks it


@dataclass(frozen=True)
class Skipped:
    """A subscriber row the run could not use, and why."""

    user_id: str
    reason: str

    @classmethod
    def invalid(cls, user_id: object, error: ValidationError) -> Skipped:
        reasons = (f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in error.errors())
        return cls(str(user_id), "; ".join(reasons))


@dataclass
class Subscribers:
    """The valid profiles of a read, and the rows it skipped."""

    profiles: list[Profile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def add(self, row: Row) -> None:
        try:
            self.profiles.append(Profile.model_validate(row))
        except ValidationError as exc:
            self.skipped.append(Skipped.invalid(row.get("user_id"), exc))


def _has_goals(row: Row) -> bool:
    goals = row.get("goals")
    return not isinstance(goals, str) or bool(goals.strip())


class ProfileRepository:
    def __init__(self, backend: Backend, page_size: int = PAGE_SIZE) -> None:
        self.backend = backend
        self.page_size = page_size

    async def upsert(self, profile: Profile) -> None:
        """Insert or update by `user_id`; the frontend's other columns keep their values."""
        await self.backend.upsert(keys.PROFILES, profile.model_dump(mode="json"))

    async def remove(self, user_id: str) -> bool:
        """Mark the profile unsubscribed (keeping the first time); False if there is none."""
        key = {"user_id": user_id}
        changed = await self.backend.update(
            keys.PROFILES, key, {"remove": stamp()}, [Cond("remove", "is_null", True)]
        )
        return changed is not None or await self.backend.get(keys.PROFILES, key) is not None

    async def digest_started(self, user_id: str, task_id: str) -> None:
        """Write back, as the old service did, which digest is being made for the subscriber."""
        await self.backend.update(
            keys.PROFILES, {"user_id": user_id}, {"task_id": task_id, "started_at": stamp()}
        )

    async def digest_completed(self, user_id: str, task_id: str, html: str) -> None:
        """Write back the finished digest, which the frontend shows."""
        changes = {"task_id": task_id, "task_html": html, "completed_at": stamp()}
        await self.backend.update(keys.PROFILES, {"user_id": user_id}, changes)

    async def get(self, user_id: str) -> Row | None:
        return await self.backend.get(keys.PROFILES, {"user_id": user_id})

    async def all(self) -> Subscribers:
        """Every profile with goals, unsubscribed ones included."""
        return await self._read([Cond("goals", "is_null", False)])

    async def eligible(self) -> Subscribers:
        """Subscribers the daily run writes for: goals not empty, not removed."""
        return await self._read([Cond("goals", "is_null", False), Cond("remove", "is_null", True)])

    async def _read(self, where: Sequence[Cond]) -> Subscribers:
        # A frontend profile without goals is not a subscriber yet, not a malformed one.
        found = Subscribers()
        async for rows in self._pages(where):
            for row in filter(_has_goals, rows):
                found.add(row)
        return found

    async def _pages(self, where: Sequence[Cond]) -> AsyncIterator[list[Row]]:
        # Keyset pages by user_id: a profile added or removed during the read shifts no page, so
        # none is read twice or missed, as offset pages could.
        after: str | None = None
        while True:
            conds = [*where, Cond("user_id", "gt", after)] if after is not None else list(where)
            rows = await self.backend.select(
                keys.PROFILES, Query(conds, order_by="user_id", limit=self.page_size)
            )
            if not rows:
                return
            yield rows
            after = str(rows[-1]["user_id"])
