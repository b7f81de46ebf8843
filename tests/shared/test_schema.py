"""One schema in four places: the migration, the SQLite DDL, the store's table specs, the models.

The migration is applied to a throwaway PostgreSQL database and read back from its catalogue;
the SQLite DDL is read back from a fresh file. Both must have the same tables, columns and
nullability, types that agree, the keys the store writes by, and the fields the models hold.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

import pytest
from pg_database import Database, throwaway_database
from pydantic import BaseModel

from shared import keys
from shared.deliveries import Delivery
from shared.fetches import FetchTask
from shared.models import DigestTask
from shared.profiles import Profile
from shared.store.base import TABLES
from shared.store.sqlite import SCHEMA

# Each PostgreSQL type and the SQLite type that stores it (booleans as 0/1, JSON and times as text)
SQLITE_TYPE = {
    "text": "TEXT",
    "uuid": "TEXT",
    "jsonb": "TEXT",
    "timestamp with time zone": "TEXT",
    "integer": "INTEGER",
    "boolean": "INTEGER",
    "double precision": "REAL",
}
# The models that are one row of a table, field for field
ROW_MODELS: dict[str, type[BaseModel]] = {
    keys.DIGEST_TASKS: DigestTask,
    keys.FETCH_TASKS: FetchTask,
    keys.EMAIL_DELIVERIES: Delivery,
}


class Column:
    def __init__(self, type_: str, nullable: bool) -> None:
        self.type, self.nullable = type_, nullable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Column) and (self.type, self.nullable) == (
            other.type,
            other.nullable,
        )

    def __repr__(self) -> str:
        return f"{self.type}{'' if self.nullable else ' NOT NULL'}"


Schema = dict[str, dict[str, Column]]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Database]:
    with throwaway_database("paperboy_schema") as db:
        db.migrate()
        yield db


@pytest.fixture(scope="module")
def pg_schema(postgres: Database) -> Schema:
    schema: Schema = {}
    for table, column, type_, nullable in postgres.rows(
        "select table_name, column_name, data_type, is_nullable from information_schema.columns"
        " where table_schema = 'public' order by table_name, ordinal_position"
    ):
        schema.setdefault(table, {})[column] = Column(type_, nullable == "YES")
    return schema


@pytest.fixture(scope="module")
def sqlite_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(Path(tmp_path_factory.mktemp("schema")) / "store.db")
    conn.executescript(SCHEMA)
    yield conn
    conn.close()


def sqlite_columns(conn: sqlite3.Connection, table: str) -> dict[str, Column]:
    rows = conn.execute(f"pragma table_info({table})").fetchall()
    return {name: Column(type_, not notnull) for _, name, type_, notnull, _, _ in rows}


def pg_keys(db: Database, table: str) -> set[tuple[str, ...]]:
    """The column lists of the table's primary key and unique constraints."""
    rows = db.rows(
        "select string_agg(a.attname, ',' order by k.ord) from pg_index i"
        " cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)"
        " join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum"
        f" where i.indrelid = 'public.{table}'::regclass and i.indisunique group by i.indexrelid"
    )
    return {tuple(columns.split(",")) for (columns,) in rows}


def sqlite_keys(conn: sqlite3.Connection, table: str) -> set[tuple[str, ...]]:
    found = set()
    for _, name, unique, _, _ in conn.execute(f"pragma index_list({table})").fetchall():
        if unique:
            info = conn.execute(f"pragma index_info({name})").fetchall()
            found.add(tuple(column for _, _, column in info))
    pk = conn.execute(f"select name, pk from pragma_table_info('{table}') where pk > 0")
    found.add(tuple(name for name, _ in sorted(pk.fetchall(), key=lambda row: row[1])))
    return found


def accepts_none(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, UnionType) and NoneType in get_args(annotation)


def test_the_migration_and_the_sqlite_ddl_have_the_same_tables_and_columns(
    pg_schema: Schema, sqlite_schema: sqlite3.Connection
) -> None:
    assert set(TABLES) <= set(pg_schema)
    for table in TABLES:
        expected = {
            name: Column(SQLITE_TYPE[c.type], c.nullable) for name, c in pg_schema[table].items()
        }
        assert sqlite_columns(sqlite_schema, table) == expected, table


def test_the_store_specs_name_the_json_and_boolean_columns_and_a_real_key(
    postgres: Database, pg_schema: Schema, sqlite_schema: sqlite3.Connection
) -> None:
    for table, spec in TABLES.items():
        types = {name: c.type for name, c in pg_schema[table].items()}
        assert spec.json_columns == {n for n, t in types.items() if t == "jsonb"}, table
        assert spec.bool_columns == {n for n, t in types.items() if t == "boolean"}, table
        assert spec.key in pg_keys(postgres, table), table
        assert spec.key in sqlite_keys(sqlite_schema, table), table


@pytest.mark.parametrize("table", sorted(ROW_MODELS))
def test_a_row_model_has_every_column_and_its_nullability(table: str, pg_schema: Schema) -> None:
    fields = ROW_MODELS[table].model_fields
    columns = pg_schema[table]

    assert set(fields) == set(columns)
    nullable = {name for name, field in fields.items() if accepts_none(field.annotation)}
    assert nullable == {name for name, c in columns.items() if c.nullable}


def test_the_profile_model_reads_and_writes_columns_of_profiles(pg_schema: Schema) -> None:
    assert set(Profile.model_fields) <= set(pg_schema[keys.PROFILES])
