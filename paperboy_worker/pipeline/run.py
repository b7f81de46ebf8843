"""One digest attempt, stage by stage; progress is written at every stage boundary."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TypeVar

from paperboy_worker.context import WorkerContext
from paperboy_worker.pipeline.items import Pick, Profile
from paperboy_worker.pipeline.render import render_digest
from paperboy_worker.pipeline.shortlist import shortlist
from paperboy_worker.pipeline.sources import load_items
from paperboy_worker.pipeline.writer import Step, Writer
from shared.errors import NoSourcesError, NothingRelevantError
from shared.models import DigestTask, Stage

log = logging.getLogger("paperboy.pipeline")
T = TypeVar("T")


class Attempt:
    """Runs the pipeline for one claimed attempt of a task."""

    def __init__(self, ctx: WorkerContext, task: DigestTask, writer: Writer) -> None:
        self.ctx = ctx
        self.task = task
        self.writer = writer
        self.settings = ctx["settings"]
        self.request = task.digest_request
        self.degraded = False
        self._stage_started: tuple[Stage, float] | None = None

    async def _stage(self, stage: Stage, progress: float, message: str) -> None:
        await self._close_stage()
        self._stage_started = (stage, time.monotonic())
        self.task = await self.ctx["tasks"].progress(self.task, stage, progress, message)
        log.info(
            "digest stage",
            extra={
                "task_id": self.task.task_id,
                "attempt": self.task.attempt,
                "stage": stage.value,
            },
        )
        if self.settings.stage_delay_seconds:
            await asyncio.sleep(self.settings.stage_delay_seconds)

    async def run(self) -> DigestTask:
        user = self.request.user_info
        profile = Profile(
            name=user.name, title=user.title, goals=user.goals, news_interest=user.news_interest
        )
        day = self.request.effective_date()
        await self._stage(Stage.SOURCES, 0.05, f"Loading sources for {day.isoformat()}")
        items = await load_items(self.ctx["http"], self.settings, day, self.request.categories)
        if not items:
            raise NoSourcesError(
                f"No papers found for {day.isoformat()} in {', '.join(self.request.categories)}"
            )

        await self._stage(Stage.SHORTLIST, 0.15, f"Shortlisting {len(items)} candidates")
        candidates = shortlist(items, profile, self.settings.ranking_input_max_articles)

        await self._stage(Stage.RANK, 0.25, f"Ranking {len(candidates)} candidates")
        top_n = self.request.top_n_articles or self.settings.top_n_articles
        ranked = await self.writer.rank(candidates, profile, top_n)
        picks = await self._account(ranked)
        if not picks:
            raise NothingRelevantError("None of the day's papers matches the profile")

        picks = await self._analyse(picks, profile)

        await self._stage(Stage.HIGHLIGHTS, 0.85, "Writing highlights")
        highlights = await self._account(await self.writer.highlights(picks, profile))

        await self._stage(Stage.RENDER, 0.95, "Rendering the digest")
        html = render_digest(profile, day, picks, highlights, degraded=self.degraded)
        await self._close_stage()
        return await self.ctx["tasks"].complete(
            self.task,
            result=html,
            articles=[pick.model_dump(mode="json") for pick in picks],
            degraded=self.degraded,
        )

    async def _analyse(self, picks: list[Pick], profile: Profile) -> list[Pick]:
        done: list[Pick] = []
        for index, pick in enumerate(picks):
            progress = 0.3 + 0.5 * index / len(picks)
            await self._stage(
                Stage.ANALYSE, progress, f"Analysing pick {index + 1} of {len(picks)}"
            )
            analysis = await self._account(await self.writer.analyse(pick, profile))
            done.append(pick.model_copy(update={"analysis": analysis}))
        return done

    async def _close_stage(self) -> None:
        if self._stage_started is not None:
            stage, began = self._stage_started
            self._stage_started = None
            await self.ctx["metrics"].observe(
                "paperboy_stage_duration_seconds", time.monotonic() - began, stage=stage.value
            )

    async def _account(self, step: Step[T]) -> T:
        self.degraded = self.degraded or step.degraded
        if step.usage.llm_requests:
            self.task = await self.ctx["tasks"].add_usage(self.task, step.usage)
            metrics = self.ctx["metrics"]
            await metrics.inc("paperboy_llm_tokens", step.usage.prompt_tokens, kind="prompt")
            await metrics.inc(
                "paperboy_llm_tokens", step.usage.completion_tokens, kind="completion"
            )
            await metrics.inc("paperboy_llm_cost_usd", step.usage.cost_usd)
        return step.value
