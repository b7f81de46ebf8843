"""Every name that crosses a process boundary: queues, job ids, Redis keys, tables."""

from __future__ import annotations

# arq queues and functions (a task kind's job ids: shared/lifecycle.py)
QUEUE = "arq:paperboy"
GENERATE_DIGEST = "generate_digest"
DELIVER_CALLBACK = "deliver_callback"
FETCH_SOURCES = "fetch_sources"
DAILY_RUN = "daily_run"
SEND_EMAIL = "send_email"

# Redis keys of our own; arq's own keys are named in `shared.arqstore`, from arq's constants.
PREFIX = "paperboy:"
LEASES = PREFIX + "leases"  # zset task_id -> lease expiry (Redis time, unix ms)
LEASE_SIGHTINGS = PREFIX + "lease-sightings"  # hash task_id -> when a reaper saw it overdue
WORKERS = PREFIX + "workers"  # zset worker_id -> last heartbeat (Redis time, unix ms)
# list: one entry per job queued to run now, trimmed; an idle worker blocks on it to wake
WAKE = PREFIX + "wake"

RATELIMIT = PREFIX + "ratelimit:"
NEWS_HEALTH = PREFIX + "news:health"  # hash: consecutive failures, last error code, since when
EXTRACT_PAUSE = PREFIX + "extract:pause"  # string, expiring when extraction may resume
EXTRACT_RATE_LIMITS = PREFIX + "extract:429s"  # counter of 429s, expiring with the pause window


def extract_key(url_hash: str) -> str:
    """string: one link's extraction (text and class), shared by every digest that picks it."""
    return f"{PREFIX}extract:{url_hash}"


def ratelimit_log_key(name: str) -> str:
    """zset ticket id -> the latest its request can have arrived (Redis time, microseconds)."""
    return f"{RATELIMIT}{{{name}}}:log"


def ratelimit_tokens_key(name: str) -> str:
    """hash ticket id -> tokens the request counts for (estimate, then actual)."""
    return f"{RATELIMIT}{{{name}}}:tokens"


def ratelimit_hold_key(name: str) -> str:
    """string: hold-until (Redis time, microseconds), expiring when the hold ends."""
    return f"{RATELIMIT}{{{name}}}:hold"


# State store tables. The live Supabase project has `digest_tasks`, `fetch_tasks` and
# `daily_sources` of the old service, with other columns and keys; Paperboy's own tables carry a
# prefix so both sets live side by side and a rollback finds the old ones untouched
# (docs/CUTOVER.md). `profiles` is the frontend's table, shared on purpose.
TABLE_PREFIX = "paperboy_"
DIGEST_TASKS = TABLE_PREFIX + "digest_tasks"
FETCH_TASKS = TABLE_PREFIX + "fetch_tasks"
DAILY_SOURCES = TABLE_PREFIX + "daily_sources"
IDEMPOTENCY_KEYS = TABLE_PREFIX + "idempotency_keys"
EMAIL_DELIVERIES = TABLE_PREFIX + "email_deliveries"
PROFILES = "profiles"


def email_job_id(delivery_key: str) -> str:
    """One send job per delivery: queued twice (run, reconciler, webhook retry), it runs once."""
    return f"email:{delivery_key}"


def lease_key(task_id: str) -> str:
    return f"{PREFIX}lease:{task_id}"


def worker_key(worker_id: str) -> str:
    return f"{PREFIX}worker:{worker_id}"


def checkpoint_key(task_id: str) -> str:
    return f"{PREFIX}checkpoint:{task_id}"


def session_key(session_id: str) -> str:
    """string: an open dashboard session, expiring with it; logging out deletes it."""
    return f"{PREFIX}session:{session_id}"


def auth_failures_key(address: str) -> str:
    """string: failed keys and logins from one client address, expiring with the window."""
    return f"{PREFIX}auth-failures:{address}"
