"""What a state-store backend offers: rows in, rows out, with conditional writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shared import keys

Row = dict[str, Any]
Op = Literal["eq", "neq", "in", "lt", "lte", "gt", "gte", "is_null"]


@dataclass(frozen=True)
class Cond:
    """One filter on a column: `Cond("status", "in", ("pending", "processing"))`."""

    column: str
    op: Op
    value: Any = None


@dataclass(frozen=True)
class Query:
    """Which rows `select` reads: filters, an order, a cap and the columns to return."""

    where: Sequence[Cond] = ()
    order_by: str | None = None
    descending: bool = False
    limit: int | None = None
    columns: Sequence[str] | None = None


EVERY_ROW = Query()


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    json_columns: frozenset[str] = frozenset()
    bool_columns: frozenset[str] = frozenset()


TABLES = {
    t.name: t
    for t in (
        Table(
            keys.DIGEST_TASKS,
            ("task_id",),
            frozenset({"request", "articles", "usage"}),
            frozenset({"running", "degraded", "cancel_requested"}),
        ),
        Table(
            keys.FETCH_TASKS,
            ("task_id",),
            frozenset({"result", "categories"}),
            frozenset({"running", "cancel_requested"}),
        ),
        Table(keys.DAILY_SOURCES, ("source_date", "category"), frozenset({"items"})),
        Table(keys.PROFILES, ("user_id",)),
        Table(keys.IDEMPOTENCY_KEYS, ("key",)),
        Table(keys.EMAIL_DELIVERIES, ("delivery_key",)),
    )
}


class Backend(Protocol):
    """A state store. Every method is a single round trip and never blocks the event loop."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError unless the store answers."""

    async def insert(self, table: str, row: Row) -> bool:
        """Insert a row; False (and no change) when its key exists already."""

    async def upsert(self, table: str, row: Row) -> None: ...

    async def get(self, table: str, key: Row) -> Row | None: ...

    async def update(
        self, table: str, key: Row, changes: Row, where: Sequence[Cond] = ()
    ) -> Row | None:
        """Apply `changes` to the keyed row only if every condition holds; the new row or None."""

    async def delete(self, table: str, key: Row, where: Sequence[Cond] = ()) -> bool: ...

    async def select(self, table: str, query: Query = EVERY_ROW) -> list[Row]: ...

    async def count(self, table: str, where: Sequence[Cond] = ()) -> int: ...
