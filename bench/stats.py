"""Small statistics: percentiles of samples, and the median (min–max) of repetitions."""

# ruff: noqa: RUF001, RUF002  (typography of the generated document: multiplication sign, dashes)

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100), linear between the closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Spread:
    """One figure over its repetitions: the median, and the smallest and largest value."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        clean = [v for v in values if not math.isnan(v)]
        if not clean:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(statistics.median(clean), min(clean), max(clean), len(clean))

    def fmt(self, digits: int = 0, unit: str = "") -> str:
        if self.n == 0:
            return "n/a"

        def one(value: float) -> str:
            return f"{value:,.{digits}f}"

        if self.n == 1 or one(self.low) == one(self.high):
            return f"{one(self.median)}{unit}"
        return f"{one(self.median)}{unit} ({one(self.low)}–{one(self.high)})"


def spread(values: Sequence[float]) -> Spread:
    return Spread.of(values)
