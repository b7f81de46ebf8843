"""`make bench` (`python -m bench`): run every figure, then rewrite docs/BENCHMARKS.md.

python -m bench                       # every figure, 3 repetitions, docs/BENCHMARKS.md
python -m bench --only pickup,memory  # some figures, printed (or --out FILE)
python -m bench --reps 1 --no-profile # a quick look
python -m bench --only daily --daily-subscribers 10000  # figure 8 at 10,000 subscribers
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import (
    daily,
    enqueue,
    links,
    llm_bound,
    memory,
    overhead,
    pickup,
    profile,
    quality,
    report,
    retry_cost,
)
from bench.servers import ROOT, Bench, Lab, start_receiver, start_redis

FIGURES: dict[str, Callable[..., Awaitable[Any]]] = {
    "enqueue": enqueue.run,
    "pickup": pickup.run,
    "overhead": overhead.run,
    "llm": llm_bound.run,
    "retry": retry_cost.run,
    "memory": memory.run,
    "daily": daily.run,
    "quality": quality.run,
    "links": links.run,
}
DEFAULT_OUT = ROOT / "docs" / "BENCHMARKS.md"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    chosen = list(FIGURES) if not args.only else args.only.split(",")
    unknown = [name for name in chosen if name not in FIGURES]
    if unknown:
        log(f"unknown figure(s): {', '.join(unknown)}; known: {', '.join(FIGURES)}")
        return 2
    machine = report.machine_info()
    lab = Lab()
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    try:
        bench = Bench(lab, start_redis(lab), start_receiver(lab))
        for name in chosen:
            log(f"{name} ...")
            began = time.perf_counter()
            extra = {"subscribers": args.daily_subscribers} if name == "daily" else {}
            results[name] = await FIGURES[name](bench, args.reps, log, **extra)
            timings[name] = time.perf_counter() - began
            log(f"{name}: {timings[name]:.1f}s")
        if args.profile:
            began = time.perf_counter()
            results["profile"] = await profile.run(bench, results, log)
            timings["profile"] = time.perf_counter() - began
            log(f"profile: {timings['profile']:.1f}s")
    finally:
        lab.close()
    total = time.perf_counter() - started
    machine["load_after"] = os.getloadavg()
    out = Path(args.out) if args.out else (DEFAULT_OUT if not args.only else None)
    text = report.render(machine, results, timings, total, args.reps)
    if out is not None:
        out.write_text(text)
        log(f"wrote {out} ({total:.0f}s in all)")
    else:
        print(text)
    return 0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each figure (>= 1)")
    parser.add_argument("--only", default="", help=f"comma-separated: {','.join(FIGURES)}")
    parser.add_argument("--out", default="", help="where to write the markdown")
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the py-spy profiles"
    )
    parser.add_argument(
        "--daily-subscribers",
        type=int,
        default=daily.SUBSCRIBERS,
        help="subscribers of figure 8's daily run (10000 for the dated large run)",
    )
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    return args


def _terminate(signum: int, frame: object) -> None:
    # Unwind through every `finally`, so the servers started so far are stopped.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    sys.exit(asyncio.run(main(parse())))
