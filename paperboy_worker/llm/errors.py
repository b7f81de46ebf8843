"""How a failed LLM request is classified: retry later, or give up on the task."""

from __future__ import annotations

import openai

from paperboy_worker.pipeline.items import without_nul
from shared.errors import PaperboyError, PermanentError, TransientError
from shared.retry import is_retryable_status, retry_after

_CONTEXT_LENGTH_HINTS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "prompt is too long",
    "too many tokens",
)


def is_quota_exhausted(exc: openai.RateLimitError) -> bool:
    """A 429 for an exhausted billing quota, which waiting does not cure."""
    return exc.code == "insufficient_quota"


def classify(exc: openai.APIError) -> PaperboyError:
    """The Paperboy error a failed request becomes; `error_code` names the cause."""
    if isinstance(exc, openai.RateLimitError):
        if is_quota_exhausted(exc):
            return PermanentError("LLM provider quota exhausted", code="llm_quota_exceeded")
        return TransientError(
            "LLM provider rate limit (429)",
            code="llm_rate_limited",
            retry_after=retry_after(exc.response.headers),
        )
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return TransientError(f"LLM provider unreachable: {exc.message}", code="llm_unavailable")
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc)
    return TransientError(f"LLM request failed: {exc.message}", code="llm_unavailable")


def _classify_status(exc: openai.APIStatusError) -> PaperboyError:
    status, detail = exc.status_code, _detail(exc)
    if is_retryable_status(status) or status == 409:  # 409: the provider's conflict, retried
        return TransientError(
            f"LLM provider error {status}: {detail}",
            code="llm_unavailable",
            retry_after=retry_after(exc.response.headers),
        )
    if status in (401, 403):
        return PermanentError(f"LLM provider refused our credentials ({status})", code="llm_auth")
    if is_context_length(exc):
        return PermanentError(f"LLM prompt too long: {detail}", code="llm_context_too_long")
    return PermanentError(
        f"LLM provider rejected the request ({status}): {detail}", code="llm_bad_request"
    )


def is_context_length(exc: openai.APIStatusError) -> bool:
    text = f"{exc.code or ''} {exc.message}".lower()
    return exc.status_code in (400, 413) and any(hint in text for hint in _CONTEXT_LENGTH_HINTS)


def _detail(exc: openai.APIStatusError) -> str:
    return without_nul(exc.message)[:300]  # it ends up in the task's stored error
