"""Back-off schedules kept as data, with jitter."""

from __future__ import annotations

import random
from collections.abc import Sequence


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
