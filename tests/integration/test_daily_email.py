"""Every daily digest emailed to its subscriber: the live project's subscribers on the real
PostgREST, API and worker processes, and a real SMTP server in this process that parses each
message it receives."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import keys
from tests.mail_servers import Inbox, smtp_inbox
from tests.postgrest_bed import PostgrestBed
from tests.processes import Proc, Stack, base_env
from tests.support import ROOT, wait_until

pytestmark = pytest.mark.integration

DAY = "2026-11-22"
UPSTREAM = ROOT / "tests" / "shared" / "upstream-supabase.sql"
ADA = "00000000-0000-4000-8000-000000000001"
BOB = "00000000-0000-4000-8000-000000000002"
SENDER = "Paperboy Digest <digest@paper-boy.test>"
RUN_LOGGED = '"msg": "daily run queued digests"'


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as server:
        yield server


@pytest.fixture
def live(empty_postgrest: PostgrestBed) -> PostgrestBed:
    """The bed with the live project's tables and rows: Ada, Bob, Cy (unsubscribed), Dee (no
    goals)."""
    empty_postgrest.apply(UPSTREAM)
    return empty_postgrest


def mail_env(inbox: Inbox, **overrides: Any) -> dict[str, str]:
    return {
        "EMAIL_PROVIDER": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(inbox.port),
        "SMTP_STARTTLS": "false",
        "EMAIL_FROM": SENDER,
        "DAILY_SPREAD_SECONDS": "0",
        **{key.upper(): str(value) for key, value in overrides.items()},
    }


def supabase_env(redis_url: str, tmp_path: Path, bed: PostgrestBed, inbox: Inbox) -> dict[str, str]:
    env = base_env(
        redis_url,
        tmp_path / "unused.db",
        state_backend="supabase",
        supabase_url=bed.url,
        # The old service's name for the key: accepted as SUPABASE_KEY's other name.
        supabase_service_role_key=bed.service_key,
    )
    return {**env, **mail_env(inbox)}


def profiles(bed: PostgrestBed) -> dict[str, dict[str, Any]]:
    headers = {"apikey": bed.service_key, "Authorization": f"Bearer {bed.service_key}"}
    answer = httpx.get(f"{bed.url}/rest/v1/{keys.PROFILES}", headers=headers)
    answer.raise_for_status()
    return {row["name"]: row for row in answer.json()}


def day_status(stack: Stack) -> dict[str, Any]:
    answer = stack.client.get(f"/admin/orchestration/status/{DAY}")
    answer.raise_for_status()
    return answer.json()  # type: ignore[no-any-return]


def run_day(stack: Stack) -> None:
    answer = stack.client.post("/admin/orchestration/run", json={"source_date": DAY})
    assert answer.status_code == 202


def test_a_daily_run_emails_each_subscriber_their_digest_once(
    redis_url: str,
    tmp_path: Path,
    live: PostgrestBed,
    inbox: Inbox,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
) -> None:
    env = supabase_env(redis_url, tmp_path, live, inbox)
    stack = start_api(env)
    worker = processes("arq-worker", env)

    run_day(stack)
    wait_until(lambda: day_status(stack)["totals"]["sent"] == 2, timeout=90, interval=0.3)

    rows = profiles(live)
    by_recipient = {m.rcpt_tos[0]: m for m in inbox.received()}
    assert sorted(by_recipient) == ["ada@example.com", "bob@example.com"]
    for name in ("Ada", "Bob"):
        row = rows[name]
        message = by_recipient[row["email"]]
        assert message.message["To"] == row["email"]
        assert message.message["Subject"] == f"Paperboy | {name}'s Daily Digest"
        assert message.message.get_content_type() == "text/html"
        assert row["task_id"] and row["completed_at"] and row["started_at"]
        # SMTP ends lines with CRLF and the message with a line break.
        assert message.html.replace("\r\n", "\n").rstrip("\n") == row["task_html"].rstrip("\n")
    assert rows["Cy"]["task_id"] is None and rows["Dee"]["task_id"] is None
    totals = day_status(stack)["totals"]
    assert totals == {"eligible": 2, "sent": 2, "failed": 0, "skipped": 0, "ambiguous": 0}
    sent = 'paperboy_emails_total{kind="digest",outcome="sent"} 2.0'
    wait_until(lambda: sent in stack.client.get("/metrics").text, timeout=10)

    run_day(stack)  # the same day again: every delivery is there, and sent
    wait_until(lambda: worker.log().count(RUN_LOGGED) == 2, timeout=30)
    assert '"queued": 0' in worker.log().split(RUN_LOGGED)[-1].splitlines()[0]
    assert len(inbox.received()) == 2


def test_a_worker_killed_mid_send_still_leaves_one_email_per_subscriber(
    redis_url: str,
    tmp_path: Path,
    live: PostgrestBed,
    inbox: Inbox,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
) -> None:
    env = supabase_env(redis_url, tmp_path, live, inbox)
    stack = start_api(env)
    inbox.holding = True  # each message arrives; its answer waits
    first = processes("worker", env)

    run_day(stack)
    wait_until(lambda: len(inbox.received()) == 2, timeout=90, interval=0.2)
    first.signal(signal.SIGKILL)  # between `generated` and `sent`: both are `sending`
    first.process.wait(timeout=10)
    inbox.release()
    assert [d["state"] for d in day_status(stack)["deliveries"]] == ["sending", "sending"]
    quick = mail_env(
        inbox, email_timeout_seconds=1, reconcile_interval_seconds=1, reconcile_grace_seconds=0
    )
    second = processes("worker", {**env, **quick})

    status = wait_until(
        lambda: (s := day_status(stack))["totals"]["ambiguous"] == 2 and s, timeout=60
    )
    run_day(stack)
    wait_until(lambda: second.log().count(RUN_LOGGED) == 1, timeout=30)

    assert sorted(m.rcpt_tos[0] for m in inbox.received()) == ["ada@example.com", "bob@example.com"]
    assert {d["error"] for d in status["deliveries"]} == {"the worker stopped during the send"}


def test_five_hundred_subscribers_one_malformed(
    redis_url: str,
    tmp_path: Path,
    inbox: Inbox,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
) -> None:
    store = tmp_path / "paperboy.db"
    env = {**base_env(redis_url, store, worker_max_jobs=20), **mail_env(inbox)}
    stack = start_api(env)  # its start creates the schema
    with sqlite3.connect(store) as conn:
        conn.executemany(
            f"insert into {keys.PROFILES} (user_id, email, name, goals) values (?, ?, ?, ?)",
            [subscriber(n) for n in range(500)],
        )
    processes("worker", env)

    run_day(stack)
    wait_until(lambda: day_status(stack)["totals"]["sent"] == 499, timeout=110, interval=1)

    status = day_status(stack)
    assert status["digests"] == 499 and status["by_status"]["completed"] == 499
    assert status["totals"] == {
        "eligible": 500,
        "sent": 499,
        "failed": 0,
        "skipped": 1,
        "ambiguous": 0,
    }
    [skip] = status["skipped_profiles"]
    assert skip["user_id"] == subscriber(250)[0]
    assert len(inbox.received()) == 499
    assert len({m.rcpt_tos[0] for m in inbox.received()}) == 499


def subscriber(n: int) -> tuple[str, str, str | None, str]:
    # Number 250 has no name: a row the frontend let through that no digest can be made for.
    name = None if n == 250 else f"Reader {n}"
    return (f"00000000-0000-4000-8000-{n:012d}", f"reader{n}@example.com", name, "graph learning")
