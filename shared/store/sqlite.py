"""The embedded state store: one SQLite file in WAL mode, shared by the API and workers."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from string import Template
from typing import Any, TypeVar

from shared import keys
from shared.errors import StoreError, StoreRejectedError
from shared.store.base import EVERY_ROW, TABLES, Cond, Query, Row, Table

T = TypeVar("T")

# The columns every task table has; each table adds its own before them.
_TASK_COLUMNS = """\
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 0,
    running INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    interruptions INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 5,
    result TEXT,
    error TEXT,
    error_code TEXT,
    callback_url TEXT,
    callback_status TEXT NOT NULL DEFAULT 'none',
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    callback_error TEXT,
    delivery_id TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT"""

# The same tables and columns as supabase/migrations (tests/shared/test_schema.py holds them to
# it), in SQLite's types: jsonb and timestamptz are TEXT, booleans are INTEGER 0/1.
SCHEMA = Template("""
CREATE TABLE IF NOT EXISTS $digest_tasks (
    task_id TEXT PRIMARY KEY NOT NULL,
    stage TEXT NOT NULL DEFAULT 'queued',
    progress REAL NOT NULL DEFAULT 0,
    request TEXT NOT NULL DEFAULT '{}',
    user_id TEXT,
    source_date TEXT,
    articles TEXT,
    degraded INTEGER NOT NULL DEFAULT 0,
    usage TEXT NOT NULL DEFAULT '{}',
$task_columns
);
CREATE INDEX IF NOT EXISTS ${digest_tasks}_status_created
    ON $digest_tasks (status, created_at DESC);
CREATE INDEX IF NOT EXISTS ${digest_tasks}_created ON $digest_tasks (created_at DESC);
CREATE INDEX IF NOT EXISTS ${digest_tasks}_callback ON $digest_tasks (callback_status);
CREATE INDEX IF NOT EXISTS ${digest_tasks}_user ON $digest_tasks (user_id);
CREATE TABLE IF NOT EXISTS $fetch_tasks (
    task_id TEXT PRIMARY KEY NOT NULL,
    source_date TEXT NOT NULL,
    categories TEXT NOT NULL DEFAULT '[]',
$task_columns
);
CREATE TABLE IF NOT EXISTS $daily_sources (
    source_date TEXT NOT NULL,
    category TEXT NOT NULL,
    items TEXT NOT NULL DEFAULT '[]',
    item_count INTEGER NOT NULL DEFAULT 0,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (source_date, category)
);
CREATE TABLE IF NOT EXISTS $idempotency_keys (
    key TEXT PRIMARY KEY NOT NULL,
    request_hash TEXT NOT NULL,
    task_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS $email_deliveries (
    delivery_key TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    email TEXT NOT NULL,
    source_date TEXT,
    task_id TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    provider_message_id TEXT,
    error TEXT,
    first_send_at TEXT,
    sent_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ${email_deliveries}_date ON $email_deliveries (source_date);
CREATE INDEX IF NOT EXISTS ${email_deliveries}_state ON $email_deliveries (state);
CREATE TABLE IF NOT EXISTS $profiles (
    id TEXT PRIMARY KEY NOT NULL DEFAULT (
        lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
        || substr(lower(hex(randomblob(2))), 2) || '-'
        || substr('89ab', 1 + abs(random()) % 4, 1) || substr(lower(hex(randomblob(2))), 2)
        || '-' || lower(hex(randomblob(6)))
    ),
    user_id TEXT NOT NULL UNIQUE,
    email TEXT,
    name TEXT,
    title TEXT,
    goals TEXT,
    interests TEXT,
    remove TEXT,
    task_id TEXT,
    task_html TEXT,
    started_at TEXT,
    completed_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
""").substitute(
    {name.removeprefix(keys.TABLE_PREFIX): name for name in TABLES}, task_columns=_TASK_COLUMNS
)

_SQL_OPS = {"eq": "=", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _where(key: Row, conds: Sequence[Cond]) -> tuple[str, list[Any]]:
    clauses = [f'"{column}" = ?' for column in key]
    params: list[Any] = list(key.values())
    for cond in conds:
        if cond.op == "in":
            values = list(cond.value)
            clauses.append(f'"{cond.column}" IN ({", ".join("?" * len(values)) or "NULL"})')
            params.extend(values)
        elif cond.op == "is_null":
            clauses.append(f'"{cond.column}" IS {"" if cond.value else "NOT "}NULL')
        else:
            clauses.append(f'"{cond.column}" {_SQL_OPS[cond.op]} ?')
            params.append(cond.value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class SqliteBackend:
    """Runs statements on a few threads, each with its own connection, so the event loop never
    waits on the file and one call held by a lock never stalls unrelated ones (WAL lets readers
    go on while a writer waits). Every write is one autocommit statement, conditional in SQL,
    so which connection runs it does not matter."""

    def __init__(self, path: Path, *, timeout: float = 5.0, threads: int = 4) -> None:
        self._path = path
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sqlite")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._open = False

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on its first call."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            assert self._open, "store is not open"
            return fn(self._connection())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.Error as exc:
            raise store_error(exc) from exc

    async def open(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)

        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._open = True
        await self._run(create)

    async def close(self) -> None:
        self._open = False
        self._executor.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def insert(self, table: str, row: Row) -> bool:
        spec = TABLES[table]
        encoded = _encode(spec, row)
        columns = ", ".join(f'"{c}"' for c in encoded)
        sql = (
            f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(encoded))}) "
            "ON CONFLICT DO NOTHING"
        )
        cursor = await self._run(lambda conn: conn.execute(sql, list(encoded.values())))
        return cursor.rowcount == 1

    async def upsert(self, table: str, row: Row) -> None:
        spec = TABLES[table]
        encoded = _encode(spec, row)
        columns = ", ".join(f'"{c}"' for c in encoded)
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in encoded if c not in spec.key)
        conflict = ", ".join(spec.key)
        sql = (
            f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(encoded))}) "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
        )
        await self._run(lambda conn: conn.execute(sql, list(encoded.values())))

    async def get(self, table: str, key: Row) -> Row | None:
        rows = await self.select(table, Query([Cond(c, "eq", v) for c, v in key.items()], limit=1))
        return rows[0] if rows else None

    async def update(
        self, table: str, key: Row, changes: Row, where: Sequence[Cond] = ()
    ) -> Row | None:
        spec = TABLES[table]
        encoded = _encode(spec, changes)
        assignments = ", ".join(f'"{c}" = ?' for c in encoded)
        clause, params = _where(key, where)
        sql = f"UPDATE {table} SET {assignments}{clause} RETURNING *"
        rows = await self._run(
            lambda conn: conn.execute(sql, [*encoded.values(), *params]).fetchall()
        )
        return _decode(spec, dict(rows[0])) if rows else None

    async def delete(self, table: str, key: Row, where: Sequence[Cond] = ()) -> bool:
        clause, params = _where(key, where)
        cursor = await self._run(lambda conn: conn.execute(f"DELETE FROM {table}{clause}", params))
        return cursor.rowcount > 0

    async def select(self, table: str, query: Query = EVERY_ROW) -> list[Row]:
        spec = TABLES[table]
        clause, params = _where({}, query.where)
        wanted = ", ".join(f'"{c}"' for c in query.columns) if query.columns else "*"
        sql = f"SELECT {wanted} FROM {table}{clause}"
        if query.order_by:
            sql += f' ORDER BY "{query.order_by}" {"DESC" if query.descending else "ASC"}'
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)}"
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [_decode(spec, dict(row)) for row in rows]

    async def count(self, table: str, where: Sequence[Cond] = ()) -> int:
        clause, params = _where({}, where)
        sql = f"SELECT COUNT(*) FROM {table}{clause}"
        row = await self._run(lambda conn: conn.execute(sql, params).fetchone())
        return int(row[0])


def _encode(spec: Table, row: Row) -> Row:
    return {
        column: json.dumps(value) if column in spec.json_columns and value is not None else value
        for column, value in row.items()
    }


def _decode(spec: Table, row: Row) -> Row:
    for column in spec.json_columns & row.keys():
        if isinstance(row[column], str):
            row[column] = json.loads(row[column])
    for column in spec.bool_columns & row.keys():
        row[column] = bool(row[column])
    return row


# OperationalError also means "database is locked" or a full disk, which pass; these do not.
_SCHEMA_PROBLEMS = ("no such column", "has no column named", "no such table")
_REFUSED = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.NotSupportedError,
)


def store_error(exc: sqlite3.Error) -> StoreError | StoreRejectedError:
    """A refused statement (a constraint, a value SQLite cannot bind, an unknown column) is
    permanent; anything else about the file may clear on the next try."""
    message = f"sqlite: {exc}"
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        rejected = any(problem in text for problem in _SCHEMA_PROBLEMS)
        return StoreRejectedError(message) if rejected else StoreError(message)
    return StoreRejectedError(message) if isinstance(exc, _REFUSED) else StoreError(message)
