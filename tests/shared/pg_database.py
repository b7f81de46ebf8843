"""Throwaway databases on the local PostgreSQL server, driven through `psql`.

psycopg is no dependency of ours; the migrations are plain SQL files meant for psql anyway. Each
database gets a unique name and is dropped when its `with` block ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

MIGRATIONS = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
# The live project's tables as the old service and the frontend use them, with a few rows: a copy
# of ../shared/fixtures/upstream-supabase.sql, kept here so the tests run from the repository alone.
UPSTREAM = Path(__file__).resolve().parent / "upstream-supabase.sql"
SERVER = {
    "PGHOST": os.environ.get("PGHOST", "127.0.0.1"),
    "PGPORT": os.environ.get("PGPORT", "5432"),
    "PGUSER": os.environ.get("PGUSER", "postgres"),
    "PGTZ": "UTC",
}


def _client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env={**os.environ, **SERVER}, capture_output=True, text=True, timeout=60, check=False
    )


class SqlError(Exception):
    """psql stopped on an error; the message is its stderr."""


@dataclass(frozen=True)
class Database:
    name: str

    def _psql(self, *args: str) -> str:
        done = _client("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.name, *args)
        if done.returncode != 0:
            raise SqlError(done.stderr.strip())
        return done.stdout

    def apply(self, path: Path) -> None:
        """Run a file in one transaction, as the Supabase CLI applies a migration."""
        self._psql("-1", "-f", str(path))

    def migrate(self) -> None:
        for path in sorted(MIGRATIONS.glob("*.sql")):
            self.apply(path)

    def run(self, sql: str) -> None:
        self._psql("-c", sql)

    def rows(self, sql: str) -> list[tuple[str, ...]]:
        """The result rows, each value as psql prints it (NULL as an empty string)."""
        out = self._psql("-A", "-t", "-F", "\t", "-c", sql)
        return [tuple(line.split("\t")) for line in out.splitlines() if line]

    def value(self, sql: str) -> str:
        [(value,)] = self.rows(sql)
        return value


@contextmanager
def throwaway_database(prefix: str = "paperboy_test") -> Iterator[Database]:
    if shutil.which("psql") is None or shutil.which("createdb") is None:
        pytest.fail("these tests need the PostgreSQL client (psql, createdb) on PATH")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    created = _client("createdb", name)
    if created.returncode != 0:
        pytest.fail(f"cannot create a database on {SERVER['PGHOST']}: {created.stderr.strip()}")
    try:
        yield Database(name)
    finally:
        _client("dropdb", "--if-exists", name)
