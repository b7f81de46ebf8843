"""Outputs of paid steps, kept per task across attempts so a resumed digest does not pay again."""

from __future__ import annotations

import json
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys

log = logging.getLogger("paperboy.checkpoints")

TTL_SECONDS = 3 * 86_400


class Checkpoints:
    """A Redis hash per task: step name → the step's output as JSON.

    Redis losing them costs money, not correctness: the step is simply paid for again.
    """

    def __init__(self, redis: Redis, task_id: str) -> None:
        self.redis = redis
        self.key = keys.checkpoint_key(task_id)

    async def load(self) -> dict[str, Any]:
        try:
            raw = await self.redis.hgetall(self.key)  # type: ignore[misc]
        except RedisError as exc:
            log.warning("checkpoints unreadable; paid steps will run again: %s", exc)
            return {}
        return {name.decode(): json.loads(value) for name, value in raw.items()}

    async def save(self, step: str, value: Any) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.key, step, json.dumps(value))
                pipe.expire(self.key, TTL_SECONDS)
                await pipe.execute()
        except RedisError as exc:
            log.warning("checkpoint not saved: %s", exc)
