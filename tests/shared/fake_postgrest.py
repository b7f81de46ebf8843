"""An in-memory PostgREST for tests, mocked at the HTTP transport with respx.

It serves `/rest/v1/<table>` for the tables the migrations create, with their column types,
defaults and NOT NULL rules, and answers as PostgREST does: status codes, JSON arrays, error
bodies, Content-Range. It records every request so a test can pin what the backend sends, and it
refuses with a 400 every parameter, operator or preference it does not implement, so a test can
never pass on a filter that was silently ignored.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import respx

from shared.store.base import TABLES

Row = dict[str, Any]
Predicate = Callable[[Row], bool]
Prefer = dict[str, str]
Response = httpx.Response

MIGRATIONS = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
TYPES = ("double precision", "timestamptz", "integer", "boolean", "jsonb", "text", "uuid")
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}
PREFERENCES = {
    "return": {"representation", "minimal"},
    "resolution": {"merge-duplicates", "ignore-duplicates"},
    "count": {"exact"},
}


class Reject(Exception):
    """An error answer, in PostgREST's JSON shape."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(self.status)
        body = {"code": self.code, "details": self.details, "hint": None, "message": self.message}
        return httpx.Response(self.status, json=body)


def unsupported(what: str) -> Reject:
    return Reject(400, "FAKE", f"the fake PostgREST does not implement {what}")


# --- the schema, read from the migrations --------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    default: Callable[[], Any] | None = None


def load_schema(directory: Path = MIGRATIONS) -> dict[str, dict[str, Column]]:
    sql = re.sub(r"--[^\n]*", "", "\n".join(p.read_text() for p in sorted(directory.glob("*.sql"))))
    tables: dict[str, dict[str, Column]] = {}
    for match in re.finditer(r"create table (?:if not exists )?(?:public\.)?(\w+)\s*\(", sql, re.I):
        parts = _split_outside_parens(_parenthesised(sql, match.end() - 1))
        columns = [_column(part) for part in parts]
        tables[match.group(1)] = {c.name: c for c in columns if c is not None}
    return tables


def _parenthesised(text: str, start: int) -> str:
    depth = 0
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[start + 1 : index]
    raise ValueError("unbalanced parentheses in the migrations")


def _split_outside_parens(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def _column(part: str) -> Column | None:
    if re.match(r"(primary key|constraint|unique|check|foreign key)\b", part, re.I):
        return None
    match = re.match(rf"(\w+)\s+({'|'.join(TYPES)})\b(.*)", part, re.I | re.S)
    if match is None:
        raise ValueError(f"the fake PostgREST does not know the column type in {part!r}")
    name, type_, rest = match.group(1), match.group(2).lower(), match.group(3)
    nullable = not re.search(r"\b(not null|primary key)\b", rest, re.I)
    literal = re.search(r"\bdefault\s+('(?:[^']|'')*'(?:::\w+)?|[\w.]+(?:\(\))?)", rest, re.I)
    return Column(name, type_, nullable, _default(type_, literal.group(1)) if literal else None)


def _default(type_: str, literal: str) -> Callable[[], Any]:
    if literal == "now()":
        return lambda: pg_timestamp(datetime.now(UTC).isoformat())
    if literal == "gen_random_uuid()":
        return lambda: str(uuid.uuid4())
    if literal.endswith("::jsonb"):
        return lambda: json.loads(literal[1:-8])
    if literal.startswith("'"):
        return lambda: literal[1:-1].replace("''", "'")
    value: object = {"true": True, "false": False}.get(literal)
    if value is None:
        value = float(literal) if type_ == "double precision" else int(literal)
    return lambda: value


# --- values -------------------------------------------------------------------------------


def pg_timestamp(text: str) -> str:
    """How PostgREST prints a timestamptz with the database in UTC: `2026-11-23T10:00:00.12+00:00`."""
    moment = datetime.fromisoformat(text)
    moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "+00:00"


def _invalid(column: Column, value: Any) -> Reject:
    return Reject(400, "22P02", f'invalid input syntax for type {column.type}: "{value}"')


def stored(column: Column, value: Any) -> Any:
    """A JSON value from a request body, as the column stores and returns it."""
    if value is None or column.type == "jsonb":
        return value
    checks: dict[str, Callable[[Any], bool]] = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "double precision": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if column.type in checks:
        if not checks[column.type](value):
            raise _invalid(column, value)
        return value
    text = value if isinstance(value, str) else json.dumps(value)
    if column.type == "uuid":
        return _uuid(column, text)
    if column.type == "timestamptz":
        try:
            return pg_timestamp(text)
        except ValueError:
            raise _invalid(column, value) from None
    return text


def _uuid(column: Column, text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise _invalid(column, text) from None


def comparable(column: Column, value: Any) -> Any:
    return datetime.fromisoformat(value) if column.type == "timestamptz" else value


def operand(column: Column, text: str) -> Any:
    """A filter's operand from the query string, as a value comparable with stored ones."""
    try:
        if column.type == "integer":
            return int(text)
        if column.type == "double precision":
            return float(text)
        if column.type == "boolean":
            return {"true": True, "false": False}[text]
        if column.type == "timestamptz":
            return datetime.fromisoformat(pg_timestamp(text))
    except (ValueError, KeyError):
        raise _invalid(column, text) from None
    if column.type == "jsonb":
        raise unsupported("filters on jsonb columns")
    return _uuid(column, text) if column.type == "uuid" else text


def in_list(text: str) -> list[str]:
    """`(a,"b,c","d\\"e")` -> ['a', 'b,c', 'd"e'], as PostgREST reads an `in` list."""
    if not (text.startswith("(") and text.endswith(")")):
        raise Reject(400, "PGRST100", f"failed to parse filter (in.{text})")
    items: list[str] = []
    current, quoted, escaped, was_quoted = "", False, False, False
    for char in text[1:-1]:
        if escaped:
            current, escaped = current + char, False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted, was_quoted = not quoted, True
        elif char == "," and not quoted:
            items.append(current)
            current, was_quoted = "", False
        else:
            current += char
    if quoted:
        raise Reject(400, "PGRST100", f"failed to parse filter (in.{text})")
    return [*items, current] if (current or was_quoted or items) else []


# --- the query string -----------------------------------------------------------------------


@dataclass
class Query:
    select: list[str] | None = None
    filters: list[Predicate] = field(default_factory=list)
    order: list[tuple[str, bool, bool]] = field(default_factory=list)
    limit: int | None = None
    on_conflict: tuple[str, ...] | None = None


def parse_query(table: str, columns: dict[str, Column], params: httpx.QueryParams) -> Query:
    query = Query()
    seen: set[str] = set()
    for name, value in params.multi_items():
        if name in seen and name in {"select", "order", "limit", "on_conflict"}:
            raise unsupported(f"a repeated {name} parameter")
        seen.add(name)
        if name == "select":
            query.select = _select(table, columns, value)
        elif name == "order":
            query.order = [_order_term(table, columns, term) for term in value.split(",")]
        elif name == "limit":
            query.limit = _limit(value)
        elif name == "on_conflict":
            query.on_conflict = tuple(value.split(","))
        elif name in columns:
            query.filters.append(predicate(columns[name], value))
        elif name in {"offset", "or", "and", "not.or", "not.and", "columns"}:
            raise unsupported(f"the {name} parameter")
        else:
            raise _no_column(table, name)
    return query


def _no_column(table: str, name: str) -> Reject:
    return Reject(400, "42703", f"column {table}.{name} does not exist")


def _select(table: str, columns: dict[str, Column], value: str) -> list[str] | None:
    if value == "*":
        return None
    names = value.split(",")
    for name in names:
        if not re.fullmatch(r"\w+", name):
            raise unsupported(f"select={value} (embedding, aliases, casts)")
        if name not in columns:
            raise _no_column(table, name)
    return names


def _order_term(table: str, columns: dict[str, Column], term: str) -> tuple[str, bool, bool]:
    match = re.fullmatch(r"(\w+)(?:\.(asc|desc))?(?:\.(nullsfirst|nullslast))?", term)
    if match is None:
        raise Reject(400, "PGRST100", f"failed to parse order ({term})")
    name, direction, nulls = match.groups()
    if name not in columns:
        raise _no_column(table, name)
    descending = direction == "desc"
    # PostgreSQL sorts NULL above every value: first when descending, last when ascending.
    return name, descending, nulls == "nullsfirst" if nulls else descending


def _limit(value: str) -> int:
    if not value.isdigit():
        raise Reject(400, "PGRST100", f"failed to parse limit ({value})")
    return int(value)


def predicate(column: Column, expression: str) -> Predicate:
    negate = expression.startswith("not.")
    op, dot, text = expression.removeprefix("not.").partition(".")
    if not dot:
        raise Reject(400, "PGRST100", f"failed to parse filter ({expression})")
    if op == "is":
        if text not in {"null", "true", "false"}:
            raise Reject(400, "PGRST100", f"failed to parse filter ({expression})")
        wanted = {"null": None, "true": True, "false": False}[text]
        return lambda row: (row[column.name] is wanted) != negate
    if op == "in":
        values = [operand(column, item) for item in in_list(text)]
        test: Callable[[Any], bool] = lambda value: value in values  # noqa: E731
    elif op in COMPARE:
        expected, compare = operand(column, text), COMPARE[op]
        test = lambda value: compare(value, expected)  # noqa: E731
    else:
        raise unsupported(f"the {op} operator")

    def matches(row: Row) -> bool:
        value = row[column.name]
        # A comparison with NULL is unknown, and so is its negation: the row never matches.
        return value is not None and test(comparable(column, value)) != negate

    return matches


def parse_prefer(request: httpx.Request) -> dict[str, str]:
    prefer: dict[str, str] = {}
    for token in request.headers.get_list("prefer", split_commas=True):
        name, _, value = token.strip().partition("=")
        if value not in PREFERENCES.get(name, ()):
            raise unsupported(f"Prefer: {token.strip()}")
        prefer[name] = value
    return prefer


# --- the server -----------------------------------------------------------------------------


class FakePostgrest:
    """`with FakePostgrest().mocked() as fake:` routes `<url>/rest/v1/...` here via respx."""

    def __init__(
        self, url: str = "http://supabase.test", key: str = "service-key", max_rows: int = 1000
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.max_rows = max_rows  # Supabase's `max-rows`: a longer answer is cut without a word
        self.schema = load_schema()
        self.tables: dict[str, dict[tuple[Any, ...], Row]] = {name: {} for name in self.schema}
        self.requests: list[httpx.Request] = []
        self.failure: tuple[int, Any] | None = None
        self.refusing = False
        self.faults: dict[int, bool] = {}
        self.router = respx.MockRouter(base_url=f"{self.url}/rest/v1", assert_all_called=False)
        self.router.route().mock(side_effect=self.handle)

    @contextmanager
    def mocked(self) -> Iterator[FakePostgrest]:
        with self.router:
            yield self

    def fail_with(self, status: int, body: Any = None) -> None:
        """Answer every later request with this status (and JSON body), as an outage would."""
        self.failure = (status, body)

    def refuse_connections(self) -> None:
        """Fail every later request before it reaches the server, as a network outage would."""
        self.refusing = True

    def fail_request(self, number: int, *, applied: bool) -> None:
        """Fail the `number`-th request from now (1 is the next one), once.

        `applied=False`: the connection drops before the server sees it, so nothing changes.
        `applied=True`: the server does the work and the answer is lost on the way back, so the
        client sees a failure although the write happened.
        """
        self.faults[len(self.requests) + number] = applied

    def rows(self, table: str) -> list[Row]:
        return [dict(row) for row in self.tables[table].values()]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        applied = self.faults.pop(len(self.requests), None)
        if applied is not None:
            return self._fault(request, applied=applied)
        if self.refusing:
            raise httpx.ConnectError("connection refused", request=request)
        if self.failure is not None:
            status, body = self.failure
            return httpx.Response(status, json=body) if body is not None else httpx.Response(status)
        try:
            return self._dispatch(request)
        except Reject as reject:
            return reject.response(request)

    def _fault(self, request: httpx.Request, *, applied: bool) -> httpx.Response:
        if not applied:
            raise httpx.ConnectError("connection dropped (injected)", request=request)
        # A request that fails on its own loses its answer all the same.
        with contextlib.suppress(Reject):
            self._dispatch(request)
        raise httpx.ReadTimeout("answer lost (injected)", request=request)

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        self._authorize(request)
        match = re.fullmatch(r"/rest/v1/(\w+)", request.url.path)
        if match is None or match.group(1) not in self.schema or match.group(1) not in TABLES:
            name = match.group(1) if match else request.url.path
            raise Reject(404, "PGRST205", f"Could not find the table 'public.{name}'")
        table = match.group(1)
        verbs = {
            "GET": self._get,
            "HEAD": self._get,
            "POST": self._post,
            "PATCH": self._patch,
            "DELETE": self._delete,
        }
        if request.method not in verbs:
            raise Reject(405, "PGRST117", f"Unsupported HTTP method: {request.method}")
        query = parse_query(table, self.schema[table], request.url.params)
        return verbs[request.method](request, table, query, parse_prefer(request))

    def _authorize(self, request: httpx.Request) -> None:
        if request.headers.get("apikey") != self.key:
            raise Reject(401, "401", "Invalid API key")
        if request.headers.get("authorization") != f"Bearer {self.key}":
            raise Reject(401, "PGRST301", "JWT could not be decoded")
        profile = "accept-profile" if request.method in {"GET", "HEAD"} else "content-profile"
        if request.headers.get(profile, "public") != "public":
            raise Reject(406, "PGRST106", "The schema must be one of the following: public")

    # reads

    def _get(self, request: httpx.Request, table: str, query: Query, prefer: Prefer) -> Response:
        rows = self._sorted(table, self._matching(table, query), query.order)
        total = len(rows)
        limit = self.max_rows if query.limit is None else min(query.limit, self.max_rows)
        rows = rows[:limit]
        counted = prefer.get("count") == "exact"
        span = f"0-{len(rows) - 1}" if rows else "*"
        headers = {"Content-Range": f"{span}/{total if counted else '*'}"}
        status = 206 if counted and len(rows) < total else 200
        if request.method == "HEAD":
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, headers=headers, json=self._project(rows, query))

    def _matching(self, table: str, query: Query) -> list[Row]:
        return [row for row in self.tables[table].values() if all(f(row) for f in query.filters)]

    def _sorted(
        self, table: str, rows: list[Row], order: list[tuple[str, bool, bool]]
    ) -> list[Row]:
        for name, descending, nulls_first in reversed(order):
            column = self.schema[table][name]
            present = [row for row in rows if row[name] is not None]
            absent = [row for row in rows if row[name] is None]
            present.sort(key=lambda row: comparable(column, row[name]), reverse=descending)
            rows = absent + present if nulls_first else present + absent
        return rows

    @staticmethod
    def _project(rows: list[Row], query: Query) -> list[Row]:
        picked = [{c: row[c] for c in query.select} if query.select else row for row in rows]
        copied: list[Row] = json.loads(json.dumps(picked))
        return copied

    # writes

    def _post(self, request: httpx.Request, table: str, query: Query, prefer: Prefer) -> Response:
        payload = _body(request)
        rows = payload if isinstance(payload, list) else [payload]
        if not rows or not all(isinstance(row, dict) for row in rows):
            raise Reject(400, "PGRST102", "All object keys must match")
        key = TABLES[table].key
        if query.on_conflict is not None and set(query.on_conflict) != set(key):
            raise Reject(
                400,
                "42P10",
                "there is no unique or exclusion constraint matching the ON CONFLICT specification",
            )
        staged = dict(self.tables[table])
        written = [
            row
            for given in rows
            if (row := self._write(table, staged, given, prefer.get("resolution"))) is not None
        ]
        self.tables[table] = staged
        return self._written(201, written, query, prefer)

    def _write(
        self, table: str, staged: dict[tuple[Any, ...], Row], given: Row, resolution: str | None
    ) -> Row | None:
        row = self._complete(table, given)
        key = tuple(row[c] for c in TABLES[table].key)
        if key in staged:
            if resolution == "ignore-duplicates":
                return None
            if resolution != "merge-duplicates":
                raise _duplicate(table, key)
            row = {**staged[key], **{c: row[c] for c in given}}
        staged[key] = row
        return row

    def _complete(self, table: str, given: Row) -> Row:
        columns = self.schema[table]
        row = self._coerced(table, given)
        for name, column in columns.items():
            if name not in row:
                row[name] = column.default() if column.default else None
        _check_not_null(table, columns, row)
        return row

    def _coerced(self, table: str, given: Row) -> Row:
        columns = self.schema[table]
        for name in given:
            if name not in columns:
                message = f"Could not find the '{name}' column of '{table}' in the schema cache"
                raise Reject(400, "PGRST204", message)
        return {name: stored(columns[name], value) for name, value in given.items()}

    def _patch(self, request: httpx.Request, table: str, query: Query, prefer: Prefer) -> Response:
        changes = _body(request)
        if not isinstance(changes, dict):
            raise Reject(400, "PGRST102", "Empty or invalid json")
        if not changes:
            raise unsupported("a PATCH with an empty body")
        coerced = self._coerced(table, changes)
        _check_not_null(table, self.schema[table], coerced)
        matched = self._matching(table, _guarded(query, "UPDATE"))
        staged = self._without(table, matched)
        updated = [{**row, **coerced} for row in matched]
        for row in updated:
            key = tuple(row[c] for c in TABLES[table].key)
            if key in staged:
                raise _duplicate(table, key)
            staged[key] = row
        self.tables[table] = staged
        return self._written(200, updated, query, prefer)

    def _delete(self, request: httpx.Request, table: str, query: Query, prefer: Prefer) -> Response:
        matched = self._matching(table, _guarded(query, "DELETE"))
        self.tables[table] = self._without(table, matched)
        return self._written(200, matched, query, prefer)

    def _without(self, table: str, rows: list[Row]) -> dict[tuple[Any, ...], Row]:
        gone = {id(row) for row in rows}
        return {key: row for key, row in self.tables[table].items() if id(row) not in gone}

    def _written(self, status: int, rows: list[Row], query: Query, prefer: Prefer) -> Response:
        counted = prefer.get("count") == "exact"
        headers = {"Content-Range": f"*/{len(rows) if counted else '*'}"}
        if prefer.get("return") != "representation":
            return httpx.Response(201 if status == 201 else 204, headers=headers)
        return httpx.Response(status, headers=headers, json=self._project(rows, query))


def _body(request: httpx.Request) -> Any:
    if request.headers.get("content-type", "").split(";")[0] != "application/json":
        raise Reject(415, "PGRST107", "The request's Content-Type is not acceptable")
    try:
        return json.loads(request.content)
    except ValueError:
        raise Reject(400, "PGRST102", "Empty or invalid json") from None


def _guarded(query: Query, verb: str) -> Query:
    if query.order or query.limit is not None:
        raise unsupported(f"order or limit on {verb}")
    if not query.filters:
        # Supabase loads pg-safeupdate for the API roles.
        raise Reject(400, "21000", f"{verb} requires a WHERE clause")
    return query


def _check_not_null(table: str, columns: dict[str, Column], row: Row) -> None:
    for name, value in row.items():
        if value is None and not columns[name].nullable:
            message = (
                f'null value in column "{name}" of relation "{table}" violates not-null constraint'
            )
            raise Reject(400, "23502", message)


def _duplicate(table: str, key: tuple[Any, ...]) -> Reject:
    names = ", ".join(TABLES[table].key)
    values = ", ".join(str(v) for v in key)
    return Reject(
        409,
        "23505",
        f'duplicate key value violates unique constraint "{table}_pkey"',
        f"Key ({names})=({values}) already exists.",
    )
