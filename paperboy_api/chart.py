"""The geometry of the dashboard's per-day chart, computed here so the template only places it.

Digests and emails share the left scale (counts) as two stacked bars a day; LLM cost has its own
scale on the right and is drawn as a line. Nothing is drawn by a script: the page's CSP allows none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from paperboy_api.history import Day

WIDTH = 960
HEIGHT = 320
LEFT, RIGHT, TOP, BOTTOM = 56, 72, 44, 48
TICKS = 4
BAR_SHARE = 0.32  # of a day's slot, for each of its two bars

COLOURS = {
    "digests_completed": "#16a34a",
    "digests_failed": "#dc2626",
    "emails_sent": "#2563eb",
    "emails_failed": "#f59e0b",
    "cost": "#7c3aed",
}
LEGEND = (
    ("digests_completed", "Digests completed"),
    ("digests_failed", "Digests failed"),
    ("emails_sent", "Emails sent"),
    ("emails_failed", "Emails failed"),
    ("cost", "LLM cost (right scale)"),
)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    series: str
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class DayLabel:
    x: float
    label: str
    title: str


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Key:
    series: str
    colour: str
    text: str
    x: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    bars: list[Bar]
    counts: list[Tick]
    costs: list[Tick]
    days: list[DayLabel]
    points: list[Point]
    legend: list[Key]
    description: str

    @property
    def line(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def scale(peak: float, *, whole: bool) -> list[float]:
    """Tick values from 0 to a round top at or above `peak`, in TICKS steps of 1, 2, 2.5 or 5
    times a power of ten (whole steps for counts)."""
    raw = max(peak, 1.0 if whole else 0.01) / TICKS
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if whole:
        step = max(1.0, math.ceil(step))
    return [round(step * n, 10) for n in range(TICKS + 1)]


def dollars(value: float, step: float) -> str:
    """`value` with as many decimals as `step` needs (cents at least, four at most)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    places = min(4, max(2, -exponent)) if isinstance(exponent, int) else 2
    return f"${value:.{places}f}"


def _label(day: Day) -> str:
    return f"{day.day:%b} {day.day.day}"


def build(days: Sequence[Day]) -> Chart:
    bottom = HEIGHT - BOTTOM
    plot_height = bottom - TOP
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(days))
    counts = scale(max((max(d.digests, d.emails) for d in days), default=0), whole=True)
    costs = scale(max((d.cost_usd for d in days), default=0.0), whole=False)

    def y_count(value: float) -> float:
        return bottom - plot_height * value / counts[-1]

    def y_cost(value: float) -> float:
        return bottom - plot_height * value / costs[-1]

    bars: list[Bar] = []
    points: list[Point] = []
    labels: list[DayLabel] = []
    for n, day in enumerate(days):
        start = LEFT + slot * n
        width = slot * BAR_SHARE
        bars += _stack(start + slot * 0.15, width, y_count, day, "digests")
        bars += _stack(start + slot * 0.53, width, y_count, day, "emails")
        middle = start + slot / 2
        points.append(
            Point(middle, y_cost(day.cost_usd), f"{day.day}: LLM cost ${day.cost_usd:.4f}")
        )
        labels.append(DayLabel(middle, _label(day), _summary(day)))
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=bottom,
        bars=bars,
        counts=[Tick(y_count(v), f"{v:g}") for v in counts],
        costs=[Tick(y_cost(v), dollars(v, costs[1])) for v in costs],
        days=labels,
        points=points,
        legend=_legend(),
        description=_description(days),
    )


def _stack(x: float, width: float, y: Callable[[float], float], day: Day, kind: str) -> list[Bar]:
    """One day's bar of `kind`: its good part at the bottom, its failures on top."""
    good, bad = ("completed", "failed") if kind == "digests" else ("sent", "failed")
    values = {good: getattr(day, f"{kind}_{good}"), bad: getattr(day, f"{kind}_{bad}")}
    bars: list[Bar] = []
    base = 0
    for part, value in values.items():
        if value:
            top, floor = y(base + value), y(base)
            series = f"{kind}_{part}"
            title = f"{day.day}: {value} {kind[:-1] if value == 1 else kind} {part}"
            bars.append(Bar(x, top, width, floor - top, COLOURS[series], series, title))
        base += value
    return bars


def _summary(day: Day) -> str:
    return (
        f"{day.day}: {day.digests_completed} digests completed, {day.digests_failed} failed; "
        f"{day.emails_sent} emails sent, {day.emails_failed} failed; "
        f"LLM cost ${day.cost_usd:.4f}"
    )


def _legend() -> list[Key]:
    """The legend's entries, laid out left to right."""
    entries: list[Key] = []
    x = float(LEFT)
    for series, text in LEGEND:
        entries.append(Key(series, COLOURS[series], text, x))
        x += 28 + 7 * len(text)
    return entries


def _description(days: Sequence[Day]) -> str:
    if not days:
        return "No days to show."
    return (
        f"From {days[0].day} to {days[-1].day}: {sum(d.digests_completed for d in days)} digests "
        f"completed, {sum(d.digests_failed for d in days)} failed, "
        f"{sum(d.emails_sent for d in days)} emails sent, "
        f"{sum(d.emails_failed for d in days)} failed, "
        f"LLM cost ${sum(d.cost_usd for d in days):.2f}."
    )
