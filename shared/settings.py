"""Configuration, read from the environment or `.env` once, at each entry point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting Paperboy reads; names the old service used keep their meaning."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Redis and the state store
    redis_url: str = "redis://127.0.0.1:6379/0"
    state_backend: Literal["sqlite", "supabase"] = "sqlite"
    sqlite_path: Path = Path("var/paperboy.db")
    supabase_url: str | None = None
    # The old service read the service-role key as SUPABASE_SERVICE_ROLE_KEY; either name works.
    supabase_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("supabase_key", "supabase_service_role_key")
    )
    # Longest one store call may wait (SQLite's busy timeout, the PostgREST HTTP timeout): a
    # store in trouble answers a prompt 503, not a request held for many seconds.
    store_timeout_seconds: float = Field(default=5, gt=0, le=60)

    # LLM
    llm_provider: Literal["openai", "fireworks", "offline"] = "offline"
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    openai_base_url: str | None = None
    fireworks_api_key: SecretStr | None = None
    fireworks_model: str = "accounts/fireworks/models/llama-v3p1-70b-instruct"
    llm_rpm: int = Field(default=500, ge=1)
    llm_tpm: int = Field(default=200_000, ge=1)
    llm_analysis_concurrency: int = Field(default=4, ge=1, le=32)
    llm_timeout_seconds: float = Field(default=60, gt=0)
    # USD per million prompt and completion tokens, by model; overrides the built-in table.
    llm_prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # A 429 holds the shared limiter, then the call is retried in place this many times.
    llm_rate_limit_retries: int = Field(default=3, ge=0, le=20)
    llm_max_inline_wait_seconds: float = Field(default=60, ge=0)
    llm_max_limiter_wait_seconds: float | None = Field(default=300, ge=0)

    # Sources
    source_mode: Literal["sample", "live"] = "sample"
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_sample_path: Path | None = None
    arxiv_page_size: int = Field(default=200, ge=1, le=2000)
    arxiv_max_results: int = Field(default=1000, ge=1, le=10_000)
    arxiv_page_delay_seconds: float = Field(default=3.0, ge=0)
    newsapi_base_url: str = "https://newsapi.org"
    newsapi_key: SecretStr | None = None
    news_enabled: bool = False

    # Digest shape
    top_n_articles: int = Field(default=5, ge=1, le=20)
    top_n_news: int = Field(default=5, ge=1, le=20)
    ranking_input_max_articles: int = Field(default=40, ge=1, le=500)

    # Queue and worker
    digest_task_timeout: int = Field(default=900, ge=1)
    task_timeout: int = Field(default=600, ge=1)
    digest_max_tries: int = Field(default=5, ge=1, le=50)
    digest_max_interruptions: int = Field(default=5, ge=1, le=50)
    # A fetch has its own budget, apart from the digests that wait for its sources.
    fetch_max_tries: int = Field(default=5, ge=1, le=50)
    fetch_max_interruptions: int = Field(default=5, ge=1, le=50)
    worker_max_jobs: int = Field(default=10, ge=1, le=1000)
    worker_poll_delay: float = Field(default=0.01, gt=0, le=5)
    worker_shutdown_grace: int = Field(default=20, ge=0)
    lease_seconds: float = Field(default=30, gt=0)
    heartbeat_seconds: float = Field(default=10, gt=0)
    reaper_interval_seconds: int = Field(default=10, ge=1, le=60)
    reconcile_interval_seconds: int = Field(default=60, ge=1, le=60)
    # The API writes a task's row before it enqueues the job; the reconciler leaves younger rows.
    reconcile_grace_seconds: float = Field(default=30, ge=0)
    retry_backoff_seconds: tuple[float, ...] = (10, 30, 90, 300, 900)
    idempotency_ttl_seconds: int = Field(default=86_400, ge=1)
    sources_retention_days: int = Field(default=14, ge=1)

    # Callbacks
    callback_signing_secret: SecretStr | None = None
    callback_allow_private_networks: bool = False
    callback_timeout_seconds: float = Field(default=10, gt=0)
    callback_retry_window_seconds: int = Field(default=86_400, ge=0)
    callback_backoff_seconds: tuple[float, ...] = (5, 15, 60, 300, 900, 1800, 3600)
    daily_callback_url: str | None = None

    # Daily run
    orchestration_enabled: bool = False
    orchestration_hour_utc: int = Field(default=13, ge=0, le=23)
    orchestration_catchup_hours: int = Field(default=6, ge=0, le=72)
    # Seconds between the starts of successive daily digests: 0, all queued at once, lets the
    # shared LLM rate limiter pace the run at the provider's limit. A fixed gap adds
    # N x spread to the run whatever the provider allows; kept for operators who want one.
    daily_spread_seconds: float = Field(default=0.0, ge=0, le=600)

    # Fault drills and demos: a pause at every stage boundary, to watch or interrupt a digest.
    stage_delay_seconds: float = Field(default=0, ge=0, le=60)

    # Operations
    log_format: Literal["json", "text"] = "text"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _required_together(self) -> Self:
        if self.state_backend == "supabase" and not (self.supabase_url and self.supabase_key):
            raise ValueError("STATE_BACKEND=supabase needs SUPABASE_URL and SUPABASE_KEY")
        if self.llm_provider == "openai" and self.openai_api_key is None:
            raise ValueError("LLM_PROVIDER=openai needs OPENAI_API_KEY")
        if self.llm_provider == "fireworks" and self.fireworks_api_key is None:
            raise ValueError("LLM_PROVIDER=fireworks needs FIREWORKS_API_KEY")
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("HEARTBEAT_SECONDS must be shorter than LEASE_SECONDS")
        return self

    # Email: each daily digest and the welcome mail, through Resend or an SMTP server.
    email_provider: Literal["resend", "smtp", "none"] = "none"
    resend_api_key: SecretStr | None = None
    resend_base_url: str = "https://api.resend.com"
    resend_from_address: str | None = None
    # The welcome mail's sender; the digest's sender when unset.
    welcome_from_address: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65_535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    email_from: str | None = None
    email_timeout_seconds: float = Field(default=30, gt=0)
    # Waits between sends the provider did not take (429, 5xx, timeouts before sending), and
    # between same-key retries of an ambiguous one; the last wait repeats while the window lasts.
    email_backoff_seconds: tuple[float, ...] = (30, 120, 600, 1800, 3600)
    email_max_tries: int = Field(default=8, ge=1, le=100)

    @model_validator(mode="after")
    def _email_provider_complete(self) -> Self:
        if self.email_provider == "resend" and not (
            self.resend_api_key and self.resend_from_address
        ):
            raise ValueError("EMAIL_PROVIDER=resend needs RESEND_API_KEY and RESEND_FROM_ADDRESS")
        if self.email_provider == "smtp" and not (self.smtp_host and self.email_from):
            raise ValueError("EMAIL_PROVIDER=smtp needs SMTP_HOST and EMAIL_FROM")
        return self

    # LLM provider modes. `chat` speaks chat completions; `responses` speaks OpenAI's Responses
    # API, with the same strict structured output.
    llm_api_mode: Literal["chat", "responses"] = "chat"
    # Completion budgets. A step's own budget (ranking 200 + 80 per pick, analysis 700,
    # highlights 800) leaves no room for a reasoning model's thinking: when such a model answers
    # nothing because the budget ran out, the call is retried once with the reasoning budget,
    # and every later call to that model gets it from the start.
    llm_max_tokens: int | None = Field(default=None, ge=16, le=200_000)
    llm_reasoning_max_tokens: int = Field(default=8_000, ge=256, le=200_000)
    # Declares the model a reasoning one from the first call (no wasted first attempt).
    llm_reasoning: bool = False

    # The digest's call to action: a feedback form, else a mail address; neither hides it.
    feedback_url: str | None = None
    feedback_email: str | None = None

    # News (NewsAPI) and its full text (Tavily Extract). The old service's names and defaults.
    # `/fetch-sources` and readers with no usable interest share this query.
    news_query: str = "AI"
    news_language: str = "en"
    # Comma-separated NewsAPI source ids and domains to include or leave out.
    news_sources: str | None = None
    news_exclude_domains: str | None = None
    # Consecutive failed fetches after which `/ready` names the news source as failing.
    news_failure_alert: int = Field(default=3, ge=1)
    tavily_api_key: SecretStr | None = None
    tavily_base_url: str = "https://api.tavily.com"
    extract_max_concurrent: int = Field(default=3, ge=1, le=20)
    extract_timeout: float = Field(default=10, gt=0, le=120)
    # Attempts after the first on a transport error, a 429 or a 5xx, spaced by the delay.
    extract_retries: int = Field(default=1, ge=0, le=5)
    extract_retry_delay_seconds: float = Field(default=1.0, ge=0, le=60)
    # This many 429s within the pause window stop extraction for every worker for the window.
    extract_pause_after_429s: int = Field(default=2, ge=1)
    extract_pause_seconds: int = Field(default=86_400, ge=1)

    # An idle worker blocks on the wake list that an enqueue pushes to, and looks at the queue
    # anyway after this long: the safety net for a job queued without a push (arq's own retries,
    # a reclaimed job). A deferred job or a cron slot due sooner shortens the wait to its time.
    worker_idle_poll_seconds: float = Field(default=5, gt=0, le=60)


class ApiSettings(Settings):
    """The API's settings: the worker never holds the API's secrets, so only the API needs them."""

    # Clients send this key; the dashboard's login form takes it too.
    api_key: SecretStr = Field(min_length=16)
    # Signs the dashboard's session cookie; a different secret from the key, so that neither
    # reveals, nor can be derived from, the other.
    session_secret: SecretStr = Field(min_length=32)
    # Failed keys and logins from one client address, within the window, before it gets 429.
    auth_max_failures: int = Field(default=10, ge=1)
    auth_failure_window_seconds: int = Field(default=300, ge=1)
    # The header a trusted proxy sets to the client's address (on Fly, `Fly-Client-IP`); without
    # it, the address is the TCP peer's, which behind a proxy is the proxy for every client.
    client_address_header: str | None = None
    # What a client may send before its request line and headers are complete.
    http_max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    http_header_timeout_seconds: float = Field(default=10, gt=0, le=300)


class WorkerProcessSettings(Settings):
    """The worker's settings: a scheduler that would make digests nobody can receive refuses to
    start, as the old service did. The API starts either way: it only accepts work."""

    @model_validator(mode="after")
    def _daily_run_has_a_mailer(self) -> Self:
        if self.orchestration_enabled and self.email_provider == "none":
            raise ValueError(
                "ORCHESTRATION_ENABLED=true needs EMAIL_PROVIDER=resend or smtp: "
                "the daily digests would reach no subscriber"
            )
        return self


SettingsT = TypeVar("SettingsT", bound=Settings)


def load_settings(
    model: type[SettingsT] = Settings,  # type: ignore[assignment]
    **init: Any,
) -> SettingsT:
    """Build the settings at an entry point; a bad setting stops the process with one line."""
    try:
        return model(**init)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "_".join(str(part) for part in first["loc"]).upper() or "settings"
        sys.exit(f"paperboy: invalid configuration: {name}: {first['msg']}")
