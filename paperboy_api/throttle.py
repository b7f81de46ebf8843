"""Failed API keys and dashboard logins, counted per client address in Redis, so every API
process sees the same count; past the limit the address gets 429 until its window ends."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection

from paperboy_api.state import app_state
from shared import keys
from shared.settings import ApiSettings

log = logging.getLogger("paperboy.api")


def client_address(conn: HTTPConnection, settings: ApiSettings) -> str:
    """The trusted proxy's client header when one is configured, else the TCP peer."""
    if settings.client_address_header and (
        forwarded := conn.headers.get(settings.client_address_header)
    ):
        return forwarded.strip()
    return conn.client.host if conn.client else "unknown"


class Throttle:
    """A counter per address that expires a window after its first failure.

    Redis being unreachable lets requests through (logged): the key is still checked, and an
    outage of the queue should not also lock operators out of the API."""

    def __init__(self, redis: Redis, settings: ApiSettings, address: str) -> None:
        self.redis = redis
        self.limit = settings.auth_max_failures
        self.window = settings.auth_failure_window_seconds
        self.key = keys.auth_failures_key(address)
        self.address = address

    @classmethod
    def of(cls, conn: HTTPConnection) -> Throttle:
        state = app_state(conn)
        return cls(state["redis"], state["settings"], client_address(conn, state["settings"]))

    async def retry_after(self) -> int | None:
        """Seconds until this address may try again, or None when it may now."""
        try:
            failures = await self.redis.get(self.key)
            if failures is None or int(failures) < self.limit:
                return None
            return max(1, int(await self.redis.ttl(self.key)))
        except RedisError as exc:
            log.warning("auth throttle unavailable: %s", exc, extra={"client": self.address})
            return None

    async def failed(self) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(self.key, 0, ex=self.window, nx=True)
                pipe.incr(self.key)
                await pipe.execute()
        except RedisError as exc:
            log.warning("auth failure not counted: %s", exc, extra={"client": self.address})
