"""What the last days looked like, read from the store: digests, emails and LLM cost per day, and
the latest day's email deliveries.

Every read is bounded by a window on a timestamp and names only the columns it needs.
PostgREST cuts a long answer at its `max-rows` without a word, so a window is read in pages that
follow the timestamp and stops at an empty page, never at a short one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared import keys
from shared.models import TaskStatus, stamp
from shared.store import Backend, Cond, Query, Row
from shared.store.base import TABLES

DAYS = 14
PAGE = 1000
MAX_PAGES = 20  # reads of one table; a window that needs more is shown as truncated
# A digest is counted on the day it ended; reading from a day earlier by `created_at` (indexed)
# still finds one that started before midnight and ended after.
STARTED_BEFORE = timedelta(days=1)
# As shared/deliveries.py on the delivery branch names them (DeliveryState), in their order.
DELIVERY_STATES = (
    "pending",
    "generating",
    "generated",
    "sending",
    "sent",
    "failed",
    "ambiguous",
)
SHOWN_DELIVERIES = 200
DELIVERY_COLUMNS = (
    "kind",
    "email",
    "source_date",
    "state",
    "attempts",
    "error",
    "sent_at",
    "created_at",
)


@dataclass
class Day:
    day: date
    digests_completed: int = 0
    digests_failed: int = 0
    emails_sent: int = 0
    emails_failed: int = 0
    cost_usd: float = 0.0

    @property
    def digests(self) -> int:
        return self.digests_completed + self.digests_failed

    @property
    def emails(self) -> int:
        return self.emails_sent + self.emails_failed


@dataclass(frozen=True)
class Delivery:
    delivery_key: str
    kind: str
    email: str
    state: str
    attempts: int
    error: str
    updated_at: datetime | None


@dataclass
class DayDeliveries:
    source_date: str | None
    shown: list[Delivery] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    truncated: bool = False

    @property
    def count(self) -> int:
        return sum(self.totals.values())


@dataclass
class History:
    days: list[Day]
    deliveries: DayDeliveries
    truncated: bool = False


@dataclass
class _Window:
    rows: list[Row]
    truncated: bool


def moment(value: Any) -> datetime | None:
    """A stored timestamp (ISO text from SQLite or PostgREST) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


class _Reader:
    """Reads one table's window in pages of `page` rows, at most MAX_PAGES round trips.

    Ordered by the timestamp alone, a page can end inside a run of rows that share its last
    timestamp; those rows are then read by key, so the next page can start strictly after it.
    """

    def __init__(
        self, backend: Backend, table: str, column: str, columns: Sequence[str], page: int
    ) -> None:
        (self.key,) = TABLES[table].key
        self.backend, self.table, self.column, self.page = backend, table, column, page
        self.columns = list(dict.fromkeys([self.key, column, *columns]))
        self.rows: dict[Any, Row] = {}
        self.reads = 0

    async def window(self, since: str) -> _Window:
        """Every row whose timestamp is at or after `since`."""
        after = Cond(self.column, "gte", since)
        while (found := await self._read([after], self.column)) is not None:
            if not found:
                return _Window(list(self.rows.values()), truncated=False)
            last = found[-1][self.column]
            if not await self._ties(last):
                break
            after = Cond(self.column, "gt", last)
        return _Window(list(self.rows.values()), truncated=True)

    async def _ties(self, moment: Any) -> bool:
        """Read every row at `moment`, by key; False when the read budget ran out first."""
        where = [Cond(self.column, "eq", moment)]
        while (found := await self._read(where, self.key)) is not None:
            if not found:
                return True
            where = [where[0], Cond(self.key, "gt", found[-1][self.key])]
        return False

    async def _read(self, where: list[Cond], order_by: str) -> list[Row] | None:
        if self.reads >= MAX_PAGES:
            return None
        self.reads += 1
        found = await self.backend.select(
            self.table, Query(where, order_by=order_by, limit=self.page, columns=self.columns)
        )
        self.rows.update((row[self.key], row) for row in found)
        return found


def _days(today: date) -> dict[date, Day]:
    return {
        today - timedelta(days=n): Day(today - timedelta(days=n)) for n in range(DAYS - 1, -1, -1)
    }


def _count_digests(days: dict[date, Day], rows: Iterable[Row]) -> None:
    for row in rows:
        ended = moment(row.get("finished_at"))
        day = days.get(ended.date()) if ended else None
        if day is None:
            continue
        if row["status"] == TaskStatus.COMPLETED:
            day.digests_completed += 1
        elif row["status"] == TaskStatus.FAILED:
            day.digests_failed += 1
        usage = row.get("usage")
        cost = usage.get("cost_usd") if isinstance(usage, dict) else None
        if isinstance(cost, int | float):
            day.cost_usd = round(day.cost_usd + cost, 6)


def _count_emails(days: dict[date, Day], rows: Iterable[Row]) -> None:
    for row in rows:
        if row["state"] == "sent":
            sent = moment(row.get("sent_at")) or moment(row.get("updated_at"))
            day = days.get(sent.date()) if sent else None
            if day is not None:
                day.emails_sent += 1
        elif row["state"] == "failed":
            failed = moment(row.get("updated_at"))
            day = days.get(failed.date()) if failed else None
            if day is not None:
                day.emails_failed += 1


def mask_email(address: str) -> str:
    """Enough of an address to tell subscribers apart on a screen, not enough to copy it."""
    local, at, domain = address.partition("@")
    if not at:
        return address[:2] + "\u2026" if address else ""
    return f"{local[:2]}\u2026@{domain}"


def _delivery(row: Row) -> Delivery:
    return Delivery(
        delivery_key=str(row["delivery_key"]),
        kind=str(row.get("kind") or ""),
        email=mask_email(str(row.get("email") or "")),
        state=str(row.get("state") or ""),
        attempts=int(row.get("attempts") or 0),
        error=str(row.get("error") or ""),
        updated_at=moment(row.get("updated_at")),
    )


def _urgency(delivery: Delivery) -> tuple[bool, float]:
    """Failed and ambiguous first, then the most recently changed."""
    changed = delivery.updated_at.timestamp() if delivery.updated_at else 0.0
    return delivery.state not in ("failed", "ambiguous"), -changed


def _the_day(rows: Sequence[Row], today: date, truncated: bool) -> DayDeliveries:
    """Digest emails of the latest source date, and welcome emails created today."""
    source_date = max((str(r["source_date"]) for r in rows if r.get("source_date")), default=None)
    chosen = [
        _delivery(row)
        for row in rows
        if (source_date and row.get("source_date") == source_date)
        or (row.get("kind") == "welcome" and _on(row.get("created_at"), today))
    ]
    totals = dict.fromkeys(DELIVERY_STATES, 0)
    for delivery in chosen:
        totals[delivery.state] = totals.get(delivery.state, 0) + 1
    chosen.sort(key=_urgency)
    return DayDeliveries(source_date, chosen[:SHOWN_DELIVERIES], totals, truncated)


def _on(value: Any, day: date) -> bool:
    when = moment(value)
    return when is not None and when.date() == day


async def load(backend: Backend, now: datetime, page: int = PAGE) -> History:
    """The last DAYS days (UTC) up to and including `now`'s, oldest first, zero days included;
    `page` rows a read."""
    today = now.astimezone(UTC).date()
    days = _days(today)
    first = datetime.combine(min(days), datetime.min.time(), UTC)
    digests = await _Reader(
        backend, keys.DIGEST_TASKS, "created_at", ("status", "finished_at", "usage"), page
    ).window(stamp(first - STARTED_BEFORE))
    # A sent email's updated_at is at or after its sent_at, so this window holds every send; the
    # latest day's deliveries, changed since, are in it too.
    emails = await _Reader(
        backend, keys.EMAIL_DELIVERIES, "updated_at", DELIVERY_COLUMNS, page
    ).window(stamp(first))
    _count_digests(days, digests.rows)
    _count_emails(days, emails.rows)
    return History(
        list(days.values()),
        _the_day(emails.rows, today, emails.truncated),
        truncated=digests.truncated or emails.truncated,
    )
