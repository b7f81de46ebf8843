"""supabase/migrations on a real PostgreSQL: on an empty database and on the live project's shape.

The old service's statements are written here as the SQL its supabase-py calls become, so a
rollback to it is known to work after the migrations ran.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_database import UPSTREAM, Database, throwaway_database

from shared import keys

PAPERBOY_TABLES = {
    keys.DIGEST_TASKS,
    keys.FETCH_TASKS,
    keys.DAILY_SOURCES,
    keys.IDEMPOTENCY_KEYS,
    keys.EMAIL_DELIVERIES,
    keys.PROFILES,
}
LIVE_TABLES = ("profiles", "digest_tasks", "fetch_tasks", "daily_sources")
OLD_TASK = "5b0c2f6d-0000-4000-8000-000000000001"


@pytest.fixture
def database() -> Iterator[Database]:
    with throwaway_database("paperboy_migrations") as db:
        yield db


@pytest.fixture
def live(database: Database) -> Database:
    """A database shaped like the live project, with its rows, before Paperboy's migrations."""
    database.apply(UPSTREAM)
    return database


def tables(db: Database) -> set[str]:
    rows = db.rows("select tablename from pg_tables where schemaname = 'public'")
    return {name for (name,) in rows}


def counts(db: Database) -> dict[str, int]:
    return {t: int(db.value(f"select count(*) from public.{t}")) for t in sorted(tables(db))}


def columns(db: Database, table: str) -> list[tuple[str, ...]]:
    return db.rows(
        "select column_name, data_type, is_nullable, coalesce(column_default, '')"
        f" from information_schema.columns where table_name = '{table}' order by ordinal_position"
    )


def test_the_migrations_apply_to_an_empty_database_twice(database: Database) -> None:
    database.migrate()
    database.migrate()

    assert tables(database) == PAPERBOY_TABLES


def test_on_the_live_project_every_row_and_column_survives(live: Database) -> None:
    rows_before = counts(live)
    columns_before = {t: columns(live, t) for t in LIVE_TABLES}

    live.migrate()
    live.migrate()

    assert tables(live) == PAPERBOY_TABLES | set(LIVE_TABLES)
    assert {t: n for t, n in counts(live).items() if t in LIVE_TABLES} == rows_before
    assert {t: columns(live, t) for t in LIVE_TABLES} == columns_before
    assert live.value("select relrowsecurity from pg_class where relname = 'profiles'") == "t"


def test_the_old_services_statements_still_run_after_the_migrations(live: Database) -> None:
    live.migrate()

    live.run(
        "insert into public.digest_tasks"
        " (task_id, status, message, user_info, source_date, digest_type, callback_url)"
        f" values ('{OLD_TASK}', 'pending', 'Task created', '{{\"name\": \"Ada\"}}',"
        " '2026-11-21', 'mixed', 'https://hooks.example.com/digest')"
    )
    live.run(
        "update public.digest_tasks set status = 'completed', message = 'Digest generated',"
        " result = '<html>new</html>', articles = '[{\"title\": \"A\"}]', updated_at = now()"
        f" where task_id = '{OLD_TASK}'"
    )
    task = live.rows(
        f"select status, result, user_info->>'name' from public.digest_tasks"
        f" where task_id = '{OLD_TASK}'"
    )
    subscribers = live.rows(
        "select id, user_id, email, name, title, goals, interests from public.profiles"
        " where goals is not null and remove is null order by email"
    )
    sources = live.rows(
        "select fetch_status from public.daily_sources where source_date = '2026-11-20'"
    )

    assert task == [("completed", "<html>new</html>", "Ada")]
    assert [row[3] for row in subscribers] == ["Ada", "Bob"]
    assert sources == [("completed",)]


def test_paperboys_statements_run_beside_the_old_rows(live: Database) -> None:
    live.migrate()
    ada = "00000000-0000-4000-8000-000000000001"

    # PostgREST's upsert on user_id, as POST /admin/profiles sends it
    live.run(
        "insert into public.profiles (user_id, name, goals, remove)"
        f" values ('{ada}', 'Ada L.', 'agents', null)"
        " on conflict (user_id) do update set name = excluded.name, goals = excluded.goals,"
        " remove = excluded.remove"
    )
    live.run(
        f"insert into public.{keys.DIGEST_TASKS} (task_id, status, user_id, source_date)"
        f" values ('{OLD_TASK}', 'pending', '{ada}', '2026-11-21')"
    )

    profile = live.rows(
        f"select name, goals, email, interests from profiles where user_id = '{ada}'"
    )
    assert profile == [("Ada L.", "agents", "ada@example.com", "AI policy")]
    assert live.value(f"select count(*) from public.{keys.DIGEST_TASKS}") == "1"
    assert live.value("select count(*) from public.digest_tasks") == "1"  # the old row only
