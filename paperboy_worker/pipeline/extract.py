"""A news link's full text through Tavily Extract, and what the attempt showed about the link.

Every outcome is evidence or its absence, never an error: a digest that cannot get an
article's text keeps NewsAPI's preview. Bounded retries cover transport errors, 429s and 5xx.
Tavily's 429s are counted in Redis for every worker; after `extract_pause_after_429s` of them
within the pause window, a key in Redis stops extraction everywhere until it expires.
Each link's outcome is kept in Redis for a day, so readers who pick the same article share it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys
from shared.httpjson import json_object
from shared.metrics import Metrics
from shared.retry import is_retryable_status
from shared.settings import Settings

log = logging.getLogger("paperboy.extract")

EXTRACT_PATH = "/extract"
TEXT_CHARS = 6_000  # as much as an analysis reads of an item's text
CACHE_SECONDS = 86_400


@dataclass(frozen=True)
class Extraction:
    """What Tavily said about one URL: its text, or why it could not fetch it."""

    text: str | None = None
    failure: str | None = None


class Extractor:
    """Tavily Extract for the links of one digest, at most `extract_max_concurrent` at once."""

    def __init__(
        self, http: httpx.AsyncClient, redis: Redis, settings: Settings, metrics: Metrics
    ) -> None:
        self.http = http
        self.redis = redis
        self.settings = settings
        self.metrics = metrics
        self._bound = asyncio.Semaphore(settings.extract_max_concurrent)

    @property
    def enabled(self) -> bool:
        return self.settings.tavily_api_key is not None

    async def extract(self, url: str) -> Extraction | None:
        """The evidence about `url`, or None when there is none (no key, paused, Tavily down)."""
        if not self.enabled:
            return None
        cache = keys.extract_key(hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest())
        cached = await self._cached(cache)
        if cached is not None:
            return cached
        async with self._bound:
            found = await self._attempts(url)
        if found is not None:
            await self._keep(cache, found)
        return found

    async def _attempts(self, url: str) -> Extraction | None:
        for attempt in range(self.settings.extract_retries + 1):
            if attempt:
                await asyncio.sleep(self.settings.extract_retry_delay_seconds)
            if await self._paused():
                self.metrics.inc("paperboy_extract_requests", outcome="paused")
                return None
            outcome = await self._request(url)
            if not isinstance(outcome, str):
                return outcome
            self.metrics.inc("paperboy_extract_requests", outcome=outcome)
            if outcome == "rejected":
                return None
        return None

    async def _request(self, url: str) -> Extraction | str:
        """The extraction, or why there is none: `retry`, `rate_limited` or `rejected`."""
        assert self.settings.tavily_api_key is not None
        headers = {"Authorization": f"Bearer {self.settings.tavily_api_key.get_secret_value()}"}
        body = {"urls": [url], "include_images": False, "extract_depth": "basic"}
        endpoint = self.settings.tavily_base_url.rstrip("/") + EXTRACT_PATH
        try:
            response = await self.http.post(
                endpoint, json=body, headers=headers, timeout=self.settings.extract_timeout
            )
        except httpx.HTTPError as exc:
            log.warning("extract unreachable: %r", exc)
            return "retry"
        if response.status_code == 429:
            await self._count_rate_limit()
            return "rate_limited"
        if is_retryable_status(response.status_code):
            return "retry"
        if response.status_code != 200:
            log.warning("extract refused", extra={"status": response.status_code})
            return "rejected"
        found = _evidence(json_object(response), url)
        if found is None:
            return "rejected"  # an answer about other URLs, or none: asking again will not help
        self.metrics.inc("paperboy_extract_requests", outcome="ok")
        return found

    async def _paused(self) -> bool:
        try:
            return bool(await self.redis.exists(keys.EXTRACT_PAUSE))
        except RedisError as exc:
            log.warning("extract pause unknown, extracting: %r", exc)
            return False

    async def _count_rate_limit(self) -> None:
        window = self.settings.extract_pause_seconds
        try:
            count = int(await self.redis.incr(keys.EXTRACT_RATE_LIMITS))
            if count == 1:
                await self.redis.expire(keys.EXTRACT_RATE_LIMITS, window)
            if count >= self.settings.extract_pause_after_429s:
                await self.redis.set(keys.EXTRACT_PAUSE, "1", ex=window)
                log.warning("extract paused after repeated 429s", extra={"seconds": window})
        except RedisError as exc:
            log.warning("extract 429 not counted: %r", exc)

    async def _cached(self, key: str) -> Extraction | None:
        try:
            raw = await self.redis.get(key)
        except RedisError:
            return None
        if raw is None:
            return None
        try:
            fields = json.loads(raw)
            return Extraction(text=fields.get("text"), failure=fields.get("failure"))
        except (ValueError, AttributeError):
            return None

    async def _keep(self, key: str, found: Extraction) -> None:
        try:
            await self.redis.set(key, json.dumps(asdict(found)), ex=CACHE_SECONDS)
        except RedisError as exc:
            log.warning("extraction not cached: %r", exc)


def _evidence(body: Mapping[str, Any], url: str) -> Extraction | None:
    for result in _entries(body.get("results")):
        text = result.get("raw_content") or result.get("content")
        if isinstance(text, str):
            return Extraction(text=text.replace("\x00", "")[:TEXT_CHARS])
    for failed in _entries(body.get("failed_results")):
        reason = failed.get("error")
        return Extraction(failure=reason if isinstance(reason, str) else "failed")
    log.warning("extract answered nothing about the link", extra={"url": url})
    return None


def _entries(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, Mapping)]
