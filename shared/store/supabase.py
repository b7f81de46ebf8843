"""The production state store: Supabase's PostgREST API through the async supabase-py client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx
from postgrest import (
    APIError,
    APIResponse,
    AsyncRequestBuilder,
    AsyncSelectRequestBuilder,
    CountMethod,
    ReturnMethod,
)
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from shared import keys
from shared.errors import StoreError, StoreRejectedError
from shared.store.base import EVERY_ROW, TABLES, Cond, Query, Row

Request = AsyncSelectRequestBuilder

# PostgreSQL error classes another try would repeat: data exception (22: a NUL in text, a value
# out of range), integrity constraint violation (23), syntax error or access rule (42: an
# unknown column or table). Connection (08), resource (53) and the rest may pass.
_REJECTED_SQLSTATE_CLASSES = frozenset({"22", "23", "42"})
# No privilege (a wrong key, a missing grant) is the operator's to fix, not the request's: the
# task waits for the fix instead of failing.
_OPERATOR_SQLSTATES = frozenset({"42501"})
# PostgREST's own: request errors (PGRST1xx) and schema cache misses such as an unknown column
# (PGRST2xx) are permanent; PGRST0xx (cannot reach the database) is not.
_REJECTED_POSTGREST_PREFIXES = ("PGRST1", "PGRST2")


class SupabaseBackend:
    """Every method is one PostgREST request over the one HTTP client this backend owns."""

    def __init__(self, url: str, key: str, *, timeout: float = 10.0) -> None:
        self._url = url
        self._key = key
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._client: AsyncClient | None = None

    async def open(self) -> None:
        self._http = httpx.AsyncClient(timeout=self._timeout)
        options = AsyncClientOptions(
            httpx_client=self._http,
            # postgrest-py would retry reads after sleeping 1, 2 and 4 s; a StoreError is
            # transient already, so the caller's retry schedule decides instead.
            postgrest_client_retry=False,
            auto_refresh_token=False,
            persist_session=False,
        )
        self._client = await acreate_client(self._url, self._key, options)

    async def close(self) -> None:
        # supabase-py's AsyncClient has no close of its own: the HTTP client we handed it is
        # the only thing holding connections.
        self._client = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def ping(self) -> None:
        await self.select(keys.DIGEST_TASKS, Query(columns=["task_id"], limit=1))

    async def insert(self, table: str, row: Row) -> bool:
        # ON CONFLICT DO NOTHING RETURNING: an empty answer means the key existed.
        key = TABLES[table].key
        query = self._table(table).upsert(row, on_conflict=",".join(key), ignore_duplicates=True)
        response = await _run(query.select(*key), "insert", table)
        return bool(_rows(response, table))

    async def upsert(self, table: str, row: Row) -> None:
        query = self._table(table).upsert(
            row, on_conflict=",".join(TABLES[table].key), returning=ReturnMethod.minimal
        )
        await _run(query, "upsert", table)

    async def get(self, table: str, key: Row) -> Row | None:
        rows = await self.select(table, Query(_key_conds(key), limit=1))
        return rows[0] if rows else None

    async def update(
        self, table: str, key: Row, changes: Row, where: Sequence[Cond] = ()
    ) -> Row | None:
        query = _filtered(self._table(table).update(changes), [*_key_conds(key), *where])
        rows = _rows(await _run(query, "update", table), table)
        return rows[0] if rows else None

    async def delete(self, table: str, key: Row, where: Sequence[Cond] = ()) -> bool:
        query = _filtered(self._table(table).delete(), [*_key_conds(key), *where])
        response = await _run(query.select(*TABLES[table].key), "delete", table)
        return bool(_rows(response, table))

    async def select(self, table: str, query: Query = EVERY_ROW) -> list[Row]:
        request = _filtered(self._table(table).select(*(query.columns or ("*",))), query.where)
        if query.order_by:
            request = request.order(query.order_by, desc=query.descending)
        if query.limit is not None:
            request = request.limit(query.limit)
        return _rows(await _run(request, "select", table), table)

    async def count(self, table: str, where: Sequence[Cond] = ()) -> int:
        key = TABLES[table].key
        query = self._table(table).select(key[0], count=CountMethod.exact, head=True)
        response = await _run(_filtered(query, where), "count", table)
        if response.count is None:
            raise StoreError(
                f"supabase count on {table} failed: no Content-Range total in the answer"
            )
        return response.count

    def _table(self, table: str) -> AsyncRequestBuilder:
        if self._client is None:
            raise RuntimeError("store is not open")
        return self._client.table(table)


def _key_conds(key: Row) -> list[Cond]:
    return [Cond(column, "eq", value) for column, value in key.items()]


def _filtered(query: Request, conds: Sequence[Cond]) -> Request:
    for cond in conds:
        query = _apply(query, cond)
    return query


def _apply(query: Request, cond: Cond) -> Request:
    column, value = cond.column, cond.value
    if cond.op == "in":
        return query.in_(column, value)
    if cond.op == "is_null":
        return (query if value else query.not_).is_(column, None)
    compare = {
        "eq": query.eq,
        "neq": query.neq,
        "lt": query.lt,
        "lte": query.lte,
        "gt": query.gt,
        "gte": query.gte,
    }[cond.op]
    return compare(column, value)


async def _run(query: Request, verb: str, table: str) -> APIResponse:
    try:
        return await query.execute()
    except APIError as exc:
        raise _api_error(exc, verb, table) from exc
    except httpx.HTTPError as exc:
        raise StoreError(f"supabase {verb} on {table} failed: {type(exc).__name__}: {exc}") from exc


def _api_error(exc: APIError, verb: str, table: str) -> StoreError | StoreRejectedError:
    # APIError keeps PostgREST's fields but not the HTTP status (unless the body was not JSON,
    # when the code is the status: three digits, never a five-character SQLSTATE).
    code = f" [{exc.code}]" if exc.code else ""
    detail = f": {str(exc.details)[:300]}" if exc.details else ""
    # The message is stored as the task's error; a NUL echoed back would be refused again.
    message = f"supabase {verb} on {table} failed{code}: {exc.message}{detail}".replace("\x00", "")
    if is_rejection(exc.code):
        return StoreRejectedError(message)
    return StoreError(message)


def is_rejection(code: str | None) -> bool:
    """Whether a PostgREST error code says the request itself is wrong, so retrying is futile."""
    if code is None or code in _OPERATOR_SQLSTATES:
        return False
    if len(code) == 5 and code[:2] in _REJECTED_SQLSTATE_CLASSES:
        return True
    return code.startswith(_REJECTED_POSTGREST_PREFIXES)


def _rows(response: APIResponse, table: str) -> list[Row]:
    data = response.data
    rows = [dict(row) for row in data if isinstance(row, Mapping)] if isinstance(data, list) else []
    if len(rows) != len(data):
        raise StoreError(f"supabase on {table}: expected a JSON array of rows, got {data!r:.200}")
    return rows
