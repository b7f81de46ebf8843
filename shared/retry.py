"""Back-off schedules kept as data, with jitter."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


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


def parse_retry_after(value: str | None) -> float | None:
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
