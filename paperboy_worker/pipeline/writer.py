"""The paid steps of a digest (rank, analyse, highlights) behind one interface.

`OfflineWriter` is the deterministic version of each step: the local default, and what an LLM
step falls back to when the model's output is unusable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from paperboy_worker.pipeline import offline
from paperboy_worker.pipeline.items import Analysis, Highlight, Pick, ScoredItem
from shared.models import Usage, UserInfo

T = TypeVar("T")


@dataclass
class Step(Generic[T]):
    """A step's output, what it cost, and whether a fallback produced it."""

    value: T
    usage: Usage = field(default_factory=Usage)
    degraded: bool = False


class Writer(Protocol):
    async def rank(
        self, shortlisted: list[ScoredItem], profile: UserInfo, top_n: int
    ) -> Step[list[Pick]]: ...

    async def analyse(self, pick: Pick, profile: UserInfo) -> Step[Analysis]: ...

    async def highlights(self, picks: list[Pick], profile: UserInfo) -> Step[list[Highlight]]: ...

    async def close(self) -> None:
        """Finish what the writer still does in the background (at shutdown)."""


class OfflineWriter:
    async def rank(
        self, shortlisted: list[ScoredItem], profile: UserInfo, top_n: int
    ) -> Step[list[Pick]]:
        return Step(offline.rank(shortlisted, top_n))

    async def analyse(self, pick: Pick, profile: UserInfo) -> Step[Analysis]:
        return Step(offline.analyse(pick.item, profile))

    async def highlights(self, picks: list[Pick], profile: UserInfo) -> Step[list[Highlight]]:
        return Step(offline.highlights(picks, profile))

    async def close(self) -> None:
        pass
