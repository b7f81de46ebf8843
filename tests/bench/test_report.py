"""The benchmark report's verdicts and explanations follow the numbers it is given."""

from __future__ import annotations

from typing import Any

import pytest

from bench import daily, enqueue, links, llm_bound, overhead, report

MACHINE: dict[str, Any] = {
    "date": "2026-12-02 12:00 UTC",
    "cpu": "test CPU",
    "cores": 2,
    "memory_gib": 4.0,
    "kernel": "6.1",
    "python": "3.11.7",
    "redis_server": "7.2.4",
    "versions": {"arq": "0.28.0"},
    "commit": "abc1234",
    "load_before": (0.1, 0.1, 0.1),
    "load_after": (0.2, 0.2, 0.2),
}
FIXED_CLAIMS = (
    "CPython cannot",
    "no margin was needed",
    "a little under 1",
    "run out of CPU",
    "Latency follows from",
)


def enqueue_result(api_rate: float, api_p99_ms: float) -> enqueue.Result:
    def level(rate: float, p50: float, p99: float, cpu: float) -> enqueue.Level:
        return enqueue.Level(rate, p50, p99, cpu, cpu * 0.8, 0.6)

    rep = enqueue.Rep(
        api={c: level(api_rate, api_p99_ms / 2, api_p99_ms, 1.0) for c in (1, 16, 64)},
        bare={c: level(1900.0, 0.5, 1.0, 1.0) for c in (1, 16, 64)},
    )
    return enqueue.Result(reps=[rep, rep])


def overhead_result(paperboy_rate: float, paperboy_cpu_ms: float, bare_cpu_ms: float) -> Any:
    rep = overhead.Rep(
        paperboy_rate=paperboy_rate,
        bare_rate=1300.0,
        paperboy_cpu_ms=paperboy_cpu_ms,
        paperboy_loop_cpu_ms=paperboy_cpu_ms * 0.9,
        bare_cpu_ms=bare_cpu_ms,
        callbacks=600,
        paperboy_commands=40.0,
        bare_commands=12.0,
        paperboy_by_command={"hincrbyfloat": 3.0},
    )
    return overhead.Result(tasks=600, reps=[rep])


def llm_result(makespan: float, refused: int) -> llm_bound.Result:
    runs = {
        workers: [llm_bound.Run(workers, 10, makespan, 30, refused, 10)] for workers in (1, 2, 4)
    }
    return llm_bound.Result(runs=runs)


def render(results: dict[str, Any]) -> str:
    return report.render(MACHINE, results, {name: 1.0 for name in results}, 3.0, 1)


def summary(text: str) -> dict[str, str]:
    """Figure name -> verdict cell of the summary table."""
    section = text.split("## Summary\n\n", 1)[1].split("\n\n", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {row[0].lstrip("| "): row[3].rstrip(" |") for row in rows[1:]}


FAST = {
    "enqueue": enqueue_result(api_rate=1500.0, api_p99_ms=12.0),
    "overhead": overhead_result(paperboy_rate=600.0, paperboy_cpu_ms=1.5, bare_cpu_ms=0.7),
    "llm": llm_result(makespan=14.8, refused=0),
}
SLOW = {
    "enqueue": enqueue_result(api_rate=400.0, api_p99_ms=60.0),
    "overhead": overhead_result(paperboy_rate=120.0, paperboy_cpu_ms=8.0, bare_cpu_ms=0.5),
    "llm": llm_result(makespan=19.5, refused=7),
}


def test_verdicts_follow_the_targets() -> None:
    fast, slow = summary(render(FAST)), summary(render(SLOW))

    assert fast.keys() == slow.keys()
    assert all(verdict.startswith("**met**") for verdict in fast.values())
    assert slow["1. enqueue, c=16: API ÷ bare"] == "**missed** by 58%"
    assert slow["1. enqueue, c=16: p99"] == "**missed** by 35.0 ms"
    assert slow["3. worker overhead: Paperboy ÷ bare"] == "**missed** by 63%"
    assert slow["4. LLM-bound, 2 workers: makespan ÷ bound"] == "**missed**"


def test_misses_are_explained_only_when_there_are_some() -> None:
    fast, slow = render(FAST), render(SLOW)

    assert "## Why the misses" not in fast
    assert "why-the-misses" not in fast
    assert "## Why the misses" in slow
    assert "Why: see [why the misses](#why-the-misses)." in slow


def test_explanations_are_computed_from_the_run() -> None:
    slow = render(SLOW)
    cheaper_bare = render({**SLOW, "overhead": overhead_result(120.0, 8.0, bare_cpu_ms=1.0)})

    # 0.25 of bare arq's rate leaves 0.5 / 0.25 = 2 ms per task; 8 ms is 4 times that.
    assert "0.25× of its rate leaves a CPU-bound worker 2.00 ms per task" in slow
    assert "this run spent 4.0× that" in slow
    assert "leaves a CPU-bound worker 4.00 ms per task" in cheaper_bare
    assert "this run spent 2.0× that" in cheaper_bare
    # The API and bare arq both used one full CPU: CPU per request predicts the rate ratio.
    assert "the API would reach 0.21× the bare rate; it reached 0.21×" in slow
    assert "CPU per request accounts for the gap" in slow


def test_refusals_are_reported_as_measured() -> None:
    assert "the provider refused none of the calls in any run" in render(FAST)
    assert "the provider refused up to 7 calls in a run" in render(SLOW)


def test_no_fixed_conclusion_survives() -> None:
    for text in (render(FAST), render(SLOW)):
        for claim in FIXED_CLAIMS:
            assert claim not in text


def links_result(broken: int, paywalled: int, unavoidable: int) -> links.Result:
    rep = links.Rep(40, 5, 200, broken, paywalled, unavoidable, 30, 25, 300)
    return links.Result(reps=[rep])


def test_the_links_verdicts_follow_the_counts() -> None:
    good = render({"links": links_result(broken=0, paywalled=4, unavoidable=4)})
    bad = render({"links": links_result(broken=2, paywalled=4, unavoidable=1)})

    assert set(summary(good).values()) == {"**met**"}
    assert summary(bad) == {
        "links: broken links in digests": "**missed**",
        "links: paywalled links in digests": "**missed**",
    }
    assert "| 1 | 200 | 2 / 30 | 4 / 25 | 1 | 300 |" in bad


def daily_run(
    workers: int, makespan: float, *, subscribers: int = 1000, emails: int = 1000, dup: int = 0
) -> daily.Run:
    return daily.Run(
        store="sqlite",
        workers=workers,
        subscribers=subscribers,
        makespan=makespan,
        calls=subscribers * 7,
        refused=0,
        tokens=subscribers * 9000,
        completed=subscribers,
        digest_rows=subscribers,
        emails=emails,
        recipients=emails - dup,
        duplicated_emails=dup,
        redis_commands=subscribers * 300,
        redis_peak_bytes=8 * 2**20,
        redis_base_bytes=2 * 2**20,
        store_trips=None,
    )


def daily_result(*runs: daily.Run) -> daily.Result:
    result = daily.Result()
    for run in runs:
        result.runs.setdefault((run.store, run.workers), []).append(run)
    return result


def test_the_daily_verdict_follows_the_ratio_at_two_and_four_workers() -> None:
    # 7,000 calls at 6,000/min: a bound of 70 s.
    slow_single = daily_result(daily_run(1, 140.0), daily_run(2, 72.0), daily_run(4, 73.0))
    assert report.daily_verdicts(slow_single) == (73.0 / 70.0, 0, 0, True)
    slow_four = daily_result(daily_run(2, 72.0), daily_run(4, 77.0))
    worst, _, _, met = report.daily_verdicts(slow_four)
    assert worst == pytest.approx(1.1) and not met
    text = report.render(MACHINE, {"daily": slow_four}, {"daily": 1.0}, 1.0, 1)
    assert "## 8. The daily run" in text and "worst 1.100, 0 lost, 0 duplicated: **missed**" in text


def test_the_daily_verdict_counts_losses_and_duplicates() -> None:
    lossy = daily_result(daily_run(2, 70.0, emails=998), daily_run(4, 70.0, emails=1001, dup=1))
    assert report.daily_verdicts(lossy) == (1.0, 2, 1, False)


def test_a_small_daily_run_cannot_meet_the_thousand_subscriber_target() -> None:
    small = daily_result(daily_run(2, 7.0, subscribers=100, emails=100))
    assert report.daily_verdicts(small) == (None, 0, 0, False)
    text = report.render(MACHINE, {"daily": small}, {"daily": 1.0}, 1.0, 1)
    assert "no run of 1,000 subscribers" in text
