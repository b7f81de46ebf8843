"""The dashboard's history: per-day numbers from a temporary SQLite store, the day's deliveries,
and the chart's geometry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from paperboy_api import chart, history
from shared.models import TaskStatus
from shared.store import Backend
from shared.store.sqlite import SqliteBackend
from shared.store.supabase import SupabaseBackend
from tests.history_rows import add_delivery, add_digest
from tests.shared.fake_postgrest import FakePostgrest

SUPABASE_URL, SUPABASE_KEY = "http://supabase.test", "service-key"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TODAY = NOW.date()


def day(back: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime.combine(TODAY - timedelta(days=back), datetime.min.time(), UTC) + timedelta(
        hours=hour, minutes=minute
    )


@pytest.fixture(params=["sqlite", "supabase"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each test on a SQLite file, and on PostgREST that cuts every answer at three rows."""
    if request.param == "sqlite":
        backend: Backend = SqliteBackend(tmp_path / "store.db")
        await backend.open()
        yield backend
        await backend.close()
        return
    with FakePostgrest(SUPABASE_URL, SUPABASE_KEY, max_rows=3).mocked():
        backend = SupabaseBackend(SUPABASE_URL, SUPABASE_KEY)
        await backend.open()
        yield backend
        await backend.close()


def numbers(past: history.History) -> dict[date, tuple[int, int, int, int, float]]:
    return {
        d.day: (d.digests_completed, d.digests_failed, d.emails_sent, d.emails_failed, d.cost_usd)
        for d in past.days
        if d.digests or d.emails or d.cost_usd
    }


async def test_each_day_counts_what_ended_on_it(store: Backend) -> None:
    await add_digest(store, "a", TaskStatus.COMPLETED, day(0, 8), 0.10)
    await add_digest(store, "b", TaskStatus.COMPLETED, day(0, 9), 0.05)
    await add_digest(store, "c", TaskStatus.FAILED, day(0, 10), 0.02)
    await add_digest(store, "d", TaskStatus.CANCELLED, day(0, 11), 0.01)  # costs, not counted
    await add_digest(store, "e", TaskStatus.PROCESSING, None, 0.50, created=day(0, 11))
    # Started before midnight, ended after: the day it ended.
    await add_digest(store, "f", TaskStatus.COMPLETED, day(3, 0, 10), 0.2, created=day(4, 23, 50))
    await add_digest(store, "g", TaskStatus.COMPLETED, day(13, 0, 0), 0.3)  # the first day
    await add_digest(store, "h", TaskStatus.COMPLETED, day(14, 23, 59), 9.0)  # a day too old
    await add_digest(store, "i", TaskStatus.COMPLETED, day(20), 9.0)
    await add_delivery(store, "s1", "sent", day(0, 8), sent=day(0, 8))
    await add_delivery(store, "s2", "sent", day(0, 9), sent=day(0, 9))
    await add_delivery(store, "f1", "failed", day(0, 9), error="bounced")
    await add_delivery(store, "p1", "pending", day(0, 9))
    await add_delivery(store, "s3", "sent", day(0, 1), sent=day(1, 23, 59))  # sent yesterday
    await add_delivery(store, "s4", "sent", day(15), sent=day(15))

    past = await history.load(store, NOW)

    assert [d.day for d in past.days] == [TODAY - timedelta(days=n) for n in range(13, -1, -1)]
    assert numbers(past) == {
        TODAY: (2, 1, 2, 1, 0.18),
        TODAY - timedelta(days=1): (0, 0, 1, 0, 0.0),
        TODAY - timedelta(days=3): (1, 0, 0, 0, 0.2),
        TODAY - timedelta(days=13): (1, 0, 0, 0, 0.3),
    }
    assert not past.truncated


async def test_pages_follow_the_timestamp_through_ties(store: Backend) -> None:
    # Five rows share one timestamp: a page of two must not lose any of them.
    for n in range(5):
        await add_digest(store, f"tie{n}", TaskStatus.COMPLETED, day(1), 0.01, created=day(1, 8))
    for n in range(3):
        await add_digest(store, f"later{n}", TaskStatus.FAILED, day(0, n), created=day(0, n))
    for n in range(5):
        await add_delivery(store, f"e{n}", "sent", day(0, 7), sent=day(0, 7))

    paged = await history.load(store, NOW, page=2)
    whole = await history.load(store, NOW)

    assert numbers(paged) == numbers(whole)
    assert numbers(paged)[TODAY] == (0, 3, 5, 0, 0.0)
    assert numbers(paged)[TODAY - timedelta(days=1)] == (5, 0, 0, 0, 0.05)
    assert not paged.truncated


async def test_a_window_beyond_the_page_budget_is_marked_truncated(store: Backend) -> None:
    for n in range(history.MAX_PAGES + 2):
        await add_digest(store, f"t{n}", TaskStatus.COMPLETED, day(0, 0, n))

    past = await history.load(store, NOW, page=1)

    assert past.truncated
    assert 0 < past.days[-1].digests_completed < history.MAX_PAGES + 2


async def test_the_day_is_the_latest_source_date_and_todays_welcomes(store: Backend) -> None:
    await add_delivery(store, "old", "sent", day(1), source_date="2026-11-30", sent=day(1))
    await add_delivery(store, "n1", "sent", day(0, 6), source_date="2026-12-01", sent=day(0, 6))
    await add_delivery(store, "n2", "failed", day(0, 5), source_date="2026-12-01", error="422")
    await add_delivery(store, "n3", "ambiguous", day(0, 7), source_date="2026-12-01", attempts=2)
    await add_delivery(store, "n4", "sent", day(0, 8), source_date="2026-12-01", sent=day(0, 8))
    await add_delivery(store, "w1", "sent", day(0, 3), kind="welcome", email="new@example.com")
    await add_delivery(store, "w0", "sent", day(1, 3), kind="welcome")

    the_day = (await history.load(store, NOW)).deliveries

    assert the_day.source_date == "2026-12-01"
    assert the_day.count == 5
    assert {state: n for state, n in the_day.totals.items() if n} == {
        "sent": 3,
        "failed": 1,
        "ambiguous": 1,
    }
    # Failures and ambiguous sends first, each group newest first.
    assert [d.delivery_key for d in the_day.shown] == ["n3", "n2", "n4", "n1", "w1"]
    assert the_day.shown[1].error == "422"
    assert the_day.shown[0].attempts == 2
    assert the_day.shown[-1].kind == "welcome"
    assert the_day.shown[-1].email == "ne\u2026@example.com"


async def test_no_deliveries_is_an_empty_day(store: Backend) -> None:
    the_day = (await history.load(store, NOW)).deliveries

    assert the_day.source_date is None
    assert the_day.count == 0
    assert the_day.shown == []


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("ada.lovelace@example.com", "ad\u2026@example.com"),
        ("a@example.com", "a\u2026@example.com"),
        ("not-an-address", "no\u2026"),
        ("", ""),
    ],
)
def test_addresses_are_masked(address: str, shown: str) -> None:
    assert history.mask_email(address) == shown


@pytest.mark.parametrize(
    ("peak", "whole", "ticks"),
    [
        (0, True, [0, 1, 2, 3, 4]),
        (3, True, [0, 1, 2, 3, 4]),
        (9, True, [0, 3, 6, 9, 12]),
        (37, True, [0, 10, 20, 30, 40]),
        (0.0, False, [0, 0.0025, 0.005, 0.0075, 0.01]),
        (0.009, False, [0, 0.0025, 0.005, 0.0075, 0.01]),
        (0.37, False, [0, 0.1, 0.2, 0.3, 0.4]),
        (1.7, False, [0, 0.5, 1.0, 1.5, 2.0]),
    ],
)
def test_scales_end_on_a_round_number_at_or_above_the_peak(
    peak: float, whole: bool, ticks: list[float]
) -> None:
    assert chart.scale(peak, whole=whole) == pytest.approx(ticks)


@pytest.mark.parametrize(
    ("value", "step", "label"),
    [(0.0075, 0.0025, "$0.0075"), (2.0, 0.5, "$2.00"), (40.0, 10.0, "$40.00"), (0.1, 0.1, "$0.10")],
)
def test_cost_labels_show_the_digits_their_step_needs(
    value: float, step: float, label: str
) -> None:
    assert chart.dollars(value, step) == label


def test_bars_stand_on_the_axis_and_the_peak_reaches_its_tick() -> None:
    days = [history.Day(TODAY - timedelta(days=n)) for n in range(13, -1, -1)]
    days[-1].digests_completed, days[-1].digests_failed = 6, 2
    days[-1].emails_sent = 4
    days[0].cost_usd = 0.4

    drawn = chart.build(days)
    by_series = {bar.series: bar for bar in drawn.bars}

    assert sorted(by_series) == ["digests_completed", "digests_failed", "emails_sent"]
    completed, failed = by_series["digests_completed"], by_series["digests_failed"]
    assert completed.y + completed.height == pytest.approx(drawn.bottom)
    assert failed.y + failed.height == pytest.approx(completed.y)
    assert completed.height == pytest.approx(3 * failed.height)
    assert [tick.label for tick in drawn.counts] == ["0", "2", "4", "6", "8"]
    assert failed.y == pytest.approx(drawn.top)
    assert by_series["emails_sent"].height == pytest.approx(completed.height * 4 / 6)
    assert [tick.label for tick in drawn.costs] == ["$0.00", "$0.10", "$0.20", "$0.30", "$0.40"]
    assert drawn.points[0].y == pytest.approx(drawn.top)
    assert drawn.points[-1].y == pytest.approx(drawn.bottom)
    assert all(drawn.left <= bar.x < bar.x + bar.width <= drawn.right for bar in drawn.bars)
    assert [label.label for label in drawn.days][-2:] == ["Dec 1", "Dec 2"]
