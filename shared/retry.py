"""Back-off schedules kept as data, with jitter."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# The longest a server's `Retry-After` may defer us: a misconfigured or hostile server could
# otherwise park a task for days (or forever, with a date far ahead).
MAX_RETRY_AFTER_SECONDS = 3600.0


def backoff_delay(
    schedule: Sequence[float], failures: int, retry_after: float | None = None
) -> float:
    """Seconds before retry number `failures` (1-based).

    The delay is drawn uniformly from the band between the previous step and this one, so
    workers retrying together spread out while successive delays still grow; a server's
    `Retry-After` is a floor.
    """
    index = min(max(failures, 1), len(schedule)) - 1
    low = schedule[index - 1] if index > 0 else 0.0
    delay = random.uniform(low, schedule[index])
    return max(delay, retry_after or 0.0)


def _parse_retry_after(value: str | None) -> float | None:
    """A `Retry-After` header in seconds: delta-seconds or an HTTP date; None if unusable."""
    value = (value or "").strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait a server asks for, capped at `MAX_RETRY_AFTER_SECONDS`: `retry-after-ms` (sent
    by OpenAI-compatible providers), else `retry-after`; None when absent or unreadable.

    `headers` should look names up case-insensitively, as httpx's do."""
    millis = _number(headers.get("retry-after-ms"))
    seconds = (
        millis / 1000 if millis is not None else _parse_retry_after(headers.get("retry-after"))
    )
    if seconds is None:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def is_retryable_status(status: int) -> bool:
    """HTTP statuses another attempt may not see: timeouts, throttling and server errors."""
    return status in {408, 429} or status >= 500


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None
