"""One digest attempt, stage by stage.

Progress is written at every stage boundary and after every analysis: each write is where a
cancelled or superseded attempt stops. Paid steps (rank, each analysis, highlights) are
checkpointed as they complete, so a retried or resumed digest replays them for free.

The analyses run side by side in a task group: when one fails, the others are cancelled and
have stopped before the failure leaves the attempt, so none keeps paying, or writes progress
over the retry message, once the job has recorded how the attempt ended. Every completed call's
usage is in `unsaved` from the moment its answer returns until a write has stored it, and the
failure path stores what a cancelled sibling could not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import TypeAdapter

from paperboy_worker.context import WorkerContext
from paperboy_worker.pipeline.checkpoints import Checkpoints
from paperboy_worker.pipeline.daily_sources import day_news, papers_for
from paperboy_worker.pipeline.extract import Extractor
from paperboy_worker.pipeline.items import Analysis, Highlight, Item, Pick
from paperboy_worker.pipeline.links import choose_news
from paperboy_worker.pipeline.news import news_query, news_reader
from paperboy_worker.pipeline.render import Feedback, render_digest
from paperboy_worker.pipeline.shortlist import shortlist
from paperboy_worker.pipeline.writer import Step, Writer
from shared.errors import NoSourcesError, NothingRelevantError, PaperboyError, PermanentError
from shared.models import DigestTask, Stage, Usage, UserInfo
from shared.store import Row

log = logging.getLogger("paperboy.pipeline")
T = TypeVar("T")

PICKS = TypeAdapter(list[Pick])
ANALYSIS = TypeAdapter(Analysis)
HIGHLIGHTS = TypeAdapter(list[Highlight])


class Attempt:
    """Runs the pipeline for one claimed attempt of a task."""

    def __init__(self, ctx: WorkerContext, task: DigestTask, writer: Writer) -> None:
        self.ctx = ctx
        self.task = task
        self.writer = writer
        self.settings = ctx["settings"]
        self.request = task.digest_request
        self.degraded = False
        self.checkpoints = Checkpoints(ctx["redis"], task.task_id)
        self.replayed: dict[str, Any] = {}
        self._writes = asyncio.Lock()  # concurrent analyses share one task row
        self.unsaved: list[Usage] = []  # paid for, not yet in the task row
        self._stage_started: tuple[Stage, float] | None = None

    async def run(self) -> Row:
        """The digest's columns; the job records them (paperboy_worker/lifecycle.py)."""
        profile = self.request.user_info
        self.replayed = await self.checkpoints.load()
        papers, news = await self._sources(profile)

        await self._stage(Stage.SHORTLIST, 0.15, f"Shortlisting {len(papers) + len(news)} items")
        limit = self.settings.ranking_input_max_articles
        paper_candidates = shortlist(papers, profile, limit)
        news_candidates = shortlist(news, news_reader(profile), limit)

        await self._stage(Stage.RANK, 0.25, f"Ranking {len(paper_candidates)} candidates")
        top_n = self.request.top_n_articles or self.settings.top_n_articles
        picks = await self._paid(
            "rank:papers", PICKS, lambda: self.writer.rank(paper_candidates, profile, top_n)
        )
        if news_candidates:
            top_news = self.request.top_n_news or self.settings.top_n_news
            # Twice as many as wanted: the spares replace broken and paywalled links.
            ranked_news: list[Pick] = await self._paid(
                "rank:news",
                PICKS,
                lambda: self.writer.rank(news_candidates, news_reader(profile), 2 * top_news),
            )
            extractor = Extractor(
                self.ctx["http"], self.ctx["redis"], self.settings, self.ctx["metrics"]
            )
            picks = picks + await choose_news(extractor, ranked_news, top_news)
        if not picks:
            raise NothingRelevantError("None of the day's items matches the profile")

        picks = await self._analyse(picks, profile)

        await self._stage(Stage.HIGHLIGHTS, 0.85, "Writing highlights")
        highlights = await self._paid(
            "highlights", HIGHLIGHTS, lambda: self.writer.highlights(picks, profile)
        )

        await self._stage(Stage.RENDER, 0.95, "Rendering the digest")
        day = self.request.effective_date()
        feedback = Feedback(self.settings.feedback_url, self.settings.feedback_email)
        html = render_digest(
            profile, day, picks, highlights, degraded=self.degraded, feedback=feedback
        )
        self._close_stage()
        return {
            "stage": Stage.DONE.value,
            "progress": 1.0,
            "result": html,
            "articles": [pick.model_dump(mode="json") for pick in picks],
            "degraded": self.degraded,
        }

    async def _sources(self, profile: UserInfo) -> tuple[list[Item], list[Item]]:
        day = self.request.effective_date()
        await self._stage(Stage.SOURCES, 0.05, f"Loading sources for {day.isoformat()}")
        wanted = self.request.digest_sources
        papers: list[Item] = []
        if wanted is None or wanted.arxiv:
            papers = await papers_for(self.ctx, day, self.request.categories)
        news_on = (
            self.settings.news_enabled
            if wanted is None or wanted.news_api is None
            else (wanted.news_api)
        )
        news = await self._news(profile, day) if news_on and self.settings.newsapi_key else []
        if not papers and not news:
            where = ", ".join(self.request.categories)
            raise NoSourcesError(f"No papers or news found for {day.isoformat()} in {where}")
        return papers, news

    async def _news(self, profile: UserInfo, day: Any) -> list[Item]:
        # A reader with no usable interest shares the default query (what /fetch-sources counts).
        query = news_query(profile.news_interest, profile.goals) or self.settings.news_query
        try:
            return await day_news(self.ctx, day, query)
        except PermanentError as exc:
            # The papers still make a digest; say that news is missing instead of failing.
            log.warning("news unavailable: %s", exc.message, extra=self._extra())
            self.degraded = True
            return []

    async def _analyse(self, picks: list[Pick], profile: UserInfo) -> list[Pick]:
        done = 0
        await self._stage(Stage.ANALYSE, 0.3, f"Analysing {len(picks)} picks")
        bound = asyncio.Semaphore(self.settings.llm_analysis_concurrency)

        async def one(pick: Pick) -> Pick:
            nonlocal done
            async with bound:
                analysis = await self._paid(
                    f"analyse:{pick.item.item_id}",
                    ANALYSIS,
                    lambda: self.writer.analyse(pick, profile),
                )
            done += 1
            await self._progress(0.3 + 0.5 * done / len(picks), f"Analysed {done} of {len(picks)}")
            return pick.model_copy(update={"analysis": analysis})

        try:
            async with asyncio.TaskGroup() as group:
                analysing = [group.create_task(one(pick)) for pick in picks]
        except BaseExceptionGroup as failed:
            # Every sibling has stopped by now; the first failure is the attempt's outcome.
            await self._save_unsaved_usage()
            error = failed.exceptions[0]
            raise error from error.__cause__
        except asyncio.CancelledError:  # the attempt timed out or the worker is stopping
            await self._save_unsaved_usage()
            raise
        return [task.result() for task in analysing]

    async def _paid(
        self, name: str, adapter: TypeAdapter[T], produce: Callable[[], Awaitable[Step[T]]]
    ) -> T:
        """A paid step's output: replayed from its checkpoint, else produced and checkpointed."""
        if name in self.replayed:
            saved = self.replayed[name]
            self.degraded = self.degraded or bool(saved["degraded"])
            return adapter.validate_python(saved["value"])
        step = await produce()
        self.degraded = self.degraded or step.degraded
        if step.usage.llm_requests:  # a free step (offline) is cheaper to redo than to keep
            self.unsaved.append(step.usage)  # before any await: a cancel must not lose it
            self._count_usage(step.usage)
            await self._save_usage()
            value = adapter.dump_python(step.value, mode="json")
            await self.checkpoints.save(name, {"value": value, "degraded": step.degraded})
        return step.value

    async def _save_usage(self) -> None:
        """Store the usage paid for so far. `add_usage` writes the row's total from our copy of
        the task, so a write cut short by a cancel is simply written again, never twice."""
        async with self._writes:
            pending = len(self.unsaved)
            if pending:
                total = sum(self.unsaved[:pending], Usage())
                self.task = await self.ctx["tasks"].add_usage(self.task, total)
                del self.unsaved[:pending]

    async def _save_unsaved_usage(self) -> None:
        """On the failure path: store what cancelled analyses were paid for, without hiding the
        failure if the store refuses (the job's own write will meet the same refusal)."""
        try:
            await self._save_usage()
        except PaperboyError as exc:
            log.warning(
                "usage of cancelled analyses not stored: %s", exc.message, extra=self._extra()
            )

    def _count_usage(self, usage: Usage) -> None:
        metrics = self.ctx["metrics"]
        metrics.inc("paperboy_llm_tokens", usage.prompt_tokens, kind="prompt")
        metrics.inc("paperboy_llm_tokens", usage.completion_tokens, kind="completion")
        metrics.inc("paperboy_llm_cost_usd", usage.cost_usd)

    async def _progress(self, progress: float, message: str) -> None:
        assert self._stage_started is not None
        async with self._writes:
            self.task = await self._write_progress(self._stage_started[0], progress, message)

    async def _stage(self, stage: Stage, progress: float, message: str) -> None:
        self._close_stage()
        self._stage_started = (stage, time.monotonic())
        async with self._writes:
            self.task = await self._write_progress(stage, progress, message)
        log.info("digest stage", extra={**self._extra(), "stage": stage.value})
        if self.settings.stage_delay_seconds:
            await asyncio.sleep(self.settings.stage_delay_seconds)

    async def _write_progress(self, stage: Stage, progress: float, message: str) -> DigestTask:
        return await self.ctx["tasks"].progress(
            self.task, message, stage=stage.value, progress=round(progress, 3)
        )

    def _close_stage(self) -> None:
        if self._stage_started is not None:
            stage, began = self._stage_started
            self._stage_started = None
            self.ctx["metrics"].observe(
                "paperboy_stage_duration_seconds", time.monotonic() - began, stage=stage.value
            )

    def _extra(self) -> dict[str, Any]:
        return {"task_id": self.task.task_id, "attempt": self.task.attempt}
