"""The daily slot and its catch-up, with a controlled clock."""

from __future__ import annotations

from datetime import UTC, date, datetime

from paperboy_worker.daily import daily_task_id, last_slot, missed_source_date

SLOT = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)


def test_a_worker_starting_three_hours_after_the_slot_runs_it() -> None:
    now = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)

    assert last_slot(now, 13) == SLOT
    assert missed_source_date(now, 13, catchup_hours=6) == date(2026, 11, 19)


def test_a_worker_starting_thirty_hours_after_the_slot_does_not() -> None:
    now = datetime(2026, 11, 21, 19, 0, tzinfo=UTC)  # 30 h after SLOT, 6 h after the next one

    assert missed_source_date(now, 13, catchup_hours=4) is None
    assert missed_source_date(now, 13, catchup_hours=6) == date(2026, 11, 20)  # the next slot


def test_before_the_slot_the_previous_day_counts() -> None:
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

    assert last_slot(now, 13) == datetime(2026, 11, 19, 13, 0, tzinfo=UTC)
    assert missed_source_date(now, 13, catchup_hours=6) is None
    assert missed_source_date(now, 13, catchup_hours=24) == date(2026, 11, 18)


def test_task_ids_are_derived_from_user_and_date() -> None:
    day = date(2026, 11, 19)

    assert daily_task_id("u1", day) == daily_task_id("u1", day)
    assert daily_task_id("u1", day) != daily_task_id("u2", day)
    assert daily_task_id("u1", day) != daily_task_id("u1", date(2026, 11, 20))
