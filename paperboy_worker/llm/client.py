"""The one OpenAI-compatible client a worker process shares, for the configured provider."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from paperboy_worker.llm.budgets import Budgets
from shared.settings import Settings

OPENAI_BASE_URL = "https://api.openai.com/v1"
FIREWORKS_BASE_URL = "https://api.fireworks.ai/inference/v1"
DEFAULT_TIMEOUT_SECONDS = 60.0


def llm_model(settings: Settings) -> str:
    """The model the configured provider is asked for."""
    if settings.llm_provider == "fireworks":
        return settings.fireworks_model
    return settings.openai_model


def llm_budgets(settings: Settings) -> Budgets:
    """The completion budgets the settings ask for."""
    return Budgets(
        max_tokens=settings.llm_max_tokens,
        reasoning_max_tokens=settings.llm_reasoning_max_tokens,
        reasoning=settings.llm_reasoning,
    )


def llm_client(
    settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> openai.AsyncOpenAI | None:
    """The provider's client, or None when `LLM_PROVIDER=offline`.

    `OPENAI_BASE_URL`, when set, replaces the provider's default base URL (a proxy, a local
    server). The SDK's own retries are off: transient errors go back to the job's retry
    schedule, and 429s to the shared rate limiter. Close it with `await client.close()`.
    """
    if settings.llm_provider == "offline":
        return None
    if settings.llm_provider == "fireworks":
        secret, default_url = settings.fireworks_api_key, FIREWORKS_BASE_URL
    else:
        secret, default_url = settings.openai_api_key, OPENAI_BASE_URL
    if secret is None:
        raise ValueError(f"LLM_PROVIDER={settings.llm_provider} needs an API key")
    # The project's httpx, not the SDK's bundled httpx2: one HTTP stack in every process, and
    # the one respx mocks in tests. The SDK accepts either; its annotation names only httpx2.
    http: Any = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=10),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
    )
    return openai.AsyncOpenAI(
        api_key=secret.get_secret_value(),
        base_url=settings.openai_base_url or default_url,
        max_retries=0,
        timeout=timeout,
        http_client=http,
    )
