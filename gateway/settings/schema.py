"""One settings object, read from TANTRA_* environment variables; the app factory builds all from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, HttpUrl, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.settings.fields_abuse import AbuseFields
from gateway.settings.fields_admin import AdminPanelFields
from gateway.settings.fields_audio import AudioFields
from gateway.settings.fields_batches import BatchesFields
from gateway.settings.fields_files import FilesFields
from gateway.settings.fields_fine_tuning import FineTuningFields
from gateway.settings.fields_jobs import JobsFields
from gateway.settings.fields_media import MediaFields
from gateway.settings.fields_memory import MemoryFields
from gateway.settings.fields_moderation import ModerationFields
from gateway.settings.fields_operator import ADMIN_KEY_MIN_CHARS, OperatorFields
from gateway.settings.fields_pii import PiiFields
from gateway.settings.fields_retention import RetentionFields
from gateway.settings.fields_routing import ROUTING_RELOADABLE, RoutingFields
from gateway.settings.fields_stateful import StatefulFields
from gateway.settings.fields_tools import ToolsFields
from gateway.settings.fields_vector_stores import VectorStoresFields
from gateway.settings.load import customise_sources
from gateway.settings.policy import Allowance, Policy
from gateway.settings.sections import (
    LimitsConfig,
    ModelPrice,
    ModelRoute,
    RoutingConfig,
    UpstreamConfig,
    cross_check,
)
from gateway.upstreams.factory import config_problems


class Settings(
    MediaFields,
    AudioFields,
    FilesFields,
    AbuseFields,
    OperatorFields,
    JobsFields,
    BatchesFields,
    FineTuningFields,
    StatefulFields,
    AdminPanelFields,
    ModerationFields,
    MemoryFields,
    RetentionFields,
    RoutingFields,
    PiiFields,
    VectorStoresFields,
    ToolsFields,
    BaseSettings,
):
    """Every knob of the gateway; the mixins' (fields_*.py) are read from TANTRA_* as the fields here."""

    model_config = SettingsConfigDict(env_prefix="TANTRA_", extra="ignore", frozen=True)

    host: str = Field("0.0.0.0", description="Interface the gateway listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the gateway listens on.")
    engine_url: HttpUrl = Field(
        HttpUrl("http://127.0.0.1:8001"), description="Base URL of the vLLM engine (without /v1)."
    )
    connect_timeout_s: float = Field(
        3.0, gt=0, description="Time allowed to open a connection to the engine."
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="Longest wait for the engine's answer or its next streamed bytes."
    )
    models_ttl_s: float = Field(
        5.0, ge=0, description="How long the engine's model list is trusted before it is asked again."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest request body accepted; larger ones get 413."
    )
    max_connections: int = Field(
        512, gt=0, description="Connections the gateway keeps open to the engine, at most."
    )
    engine_transport: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description="The engine client's connection pool: aiohttp's (the default: far less CPU per "
        "request at high concurrency, docs/performance.md), or httpx's own (the former default, kept "
        "as a fallback for operators).",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="The lowest level logged."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="`json` lines (production), `console` (development); `auto`: console on a TTY."
    )
    log_prompts: bool = Field(
        False, description="Log prompts and completions in debug lines; never on by default."
    )

    # What an operator sees and changes.
    config_file: Path | None = Field(
        None, description="A YAML file of settings (models, upstreams, limits, routing); reloaded live."
    )
    config_poll_s: float = Field(2.0, gt=0, description="How often the config file is checked for changes.")
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector for traces (http://collector:4318); unset: tracing off."
    )
    tracing_service_name: str = Field("tantra-gateway", description="The service name on spans.")
    health_interval_s: float = Field(5.0, gt=0, description="Time between deep health checks.")
    health_timeout_s: float = Field(
        10.0, gt=0, description="Longest a deep health check (one generated token) may take."
    )
    health_deep: bool = Field(True, description="Make each upstream generate one token in health checks.")
    profiling_enabled: bool = Field(False, description="Serve /debug/profile (py-spy; admin key).")
    upstreams: dict[str, UpstreamConfig] = Field(
        default_factory=dict,
        description="Named upstreams (vLLM servers, or `kind: openai` providers); empty: one, `engine`, "
        "at engine_url.",
    )
    models: dict[str, ModelRoute] = Field(
        default_factory=dict, description="Which upstreams serve each model."
    )
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig,
        description="Limits on top of the store's: defaults for keys and tenants, overrides by id.",
    )

    # Surviving failures (docs/resilience.md).
    ttft_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for an upstream's first token; then the next replica, or 504."
    )
    inter_token_timeout_s: float = Field(
        30.0, gt=0, description="Longest gap between a stream's tokens before the upstream counts as hung."
    )
    total_timeout_s: float = Field(600.0, gt=0, description="Longest a whole request may take.")
    retry_attempts: int = Field(
        3, ge=1, le=10, description="Tries per request before its first byte (1: no retries)."
    )
    retry_backoff_s: float = Field(0.05, ge=0, description="First retry's backoff; doubles, with jitter.")
    retry_backoff_max_s: float = Field(
        2.0, ge=0, description="Longest backoff, and the longest Retry-After an upstream may ask for."
    )
    retry_budget_ratio: float = Field(
        0.2, ge=0, le=1, description="Retries allowed as a share of requests over the budget window."
    )
    retry_budget_window_s: float = Field(10.0, gt=0, description="The retry budget's sliding window.")
    retry_budget_min: int = Field(
        5, ge=0, description="Retries always allowed per window, so a quiet gateway can still retry."
    )
    breaker_failures: int = Field(
        3, ge=1, description="Consecutive failures that open an upstream's circuit breaker."
    )
    breaker_open_s: float = Field(
        5.0, gt=0, description="How long an open breaker waits before probing the upstream again."
    )
    upstream_max_outstanding: int = Field(
        0, ge=0, description="Requests in flight per upstream before load shedding; 0: unbounded."
    )
    failover_enabled: bool = Field(
        True, description="Continue a stream on another replica when its upstream dies mid-stream."
    )
    failover_max: int = Field(2, ge=0, description="Most mid-stream failovers for one stream.")
    affinity_prefix_chars: int = Field(
        256, ge=0, description="Leading prompt characters hashed to pick a replica (prefix cache); 0: off."
    )
    drain_grace_s: float = Field(
        25.0,
        ge=0,
        description="On SIGTERM, how long in-flight requests may take to finish (uvicorn then has 5 s more).",
    )

    # Who is calling.
    auth_enabled: bool = Field(
        True, description="Require an API key on /v1 routes; false serves everyone, unlimited."
    )
    admin_key: SecretStr | None = Field(
        None,
        description=f"The key that opens /admin (at least {ADMIN_KEY_MIN_CHARS} characters); unset: closed.",
    )
    admin_key_file: Path | None = Field(None, description="A file holding the admin key (first line).")
    auth_cache_ttl_s: float = Field(
        30.0, gt=0, description="How long a looked-up key is trusted while invalidations arrive."
    )
    auth_cache_degraded_ttl_s: float = Field(
        1.0,
        gt=0,
        description="The same while the invalidation channel (Redis) is down or silent (no PING "
        "answered within it; it is PINGed four times per this): the longest a change takes to reach "
        "a replica.",
    )

    # Where state lives.
    database_url: str = Field(
        "sqlite+aiosqlite:///.cache/tantra/tantra.db",
        description="SQLAlchemy URL of the store: SQLite by default, postgresql://... in deployments.",
    )
    database_auto_migrate: bool = Field(
        True, description="Bring the database schema up to date (Alembic) when the gateway starts."
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis shared by every replica; `memory://` keeps the limits in this process "
        "(one replica, no Redis server).",
    )
    redis_max_connections: int = Field(
        64, ge=1, description="Connections to Redis per replica; more requests wait for a free one."
    )
    redis_timeout_s: float = Field(
        1.0, gt=0, description="Longest wait for Redis on the request path before the policy applies."
    )

    # What callers may do.
    limits_failure_mode: Literal["open", "closed"] = Field(
        "open",
        description="When Redis is unreachable: `open` serves without limits (logged and counted), "
        "`closed` answers 503.",
    )
    limits_window_s: int = Field(
        60, ge=1, le=3600, description="Length of the sliding window that RPM and TPM are counted in."
    )
    # A request without max_tokens reserves what the engine may really generate (the model's
    # context less the prompt); the default is only for models whose length is unknown.
    limits_default_completion_tokens: int = Field(
        256,
        ge=1,
        description="Completion tokens reserved for a request that sets no max_tokens, when neither "
        "`limits_max_completion_tokens` nor the model's max_model_len is known.",
    )
    # Sent to the engine as max_tokens when a request sets none, so what is reserved bounds it.
    limits_max_completion_tokens: int | None = Field(
        None,
        ge=1,
        description="Completion tokens a request without max_tokens may generate: reserved, and sent "
        "to the engine as its max_tokens. Unset: such a request reserves the model's whole context.",
    )
    # A concurrency slot is a lease renewed every third of this while its request runs (the
    # heartbeat), so a replica that dies gives its slots back within this many seconds.
    limits_lease_s: float = Field(
        15.0,
        ge=1,
        description="A concurrency slot is a lease of this length, renewed every third of it while its "
        "request runs: a crashed replica's slots free themselves within it.",
    )
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="USD per million tokens per model, as JSON: "
        '{"tantra-tiny": {"prompt": 0.1, "completion": 0.4}}.',
    )

    # What callers used.
    ledger_flush_interval_s: float = Field(
        0.5, gt=0, description="How often the usage ledger writes its buffered rows."
    )
    ledger_batch_size: int = Field(500, ge=1, description="Most ledger rows written in one transaction.")
    _init_values: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        # What the caller passed in by hand wins over every source, on a live reload too.
        self._init_values = {name: value for name, value in values.items() if not name.startswith("_")}

    def init_values(self) -> dict[str, Any]:
        return dict(self._init_values)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, level: Any) -> Any:
        return level.lower() if isinstance(level, str) else level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first, then TANTRA_*_FILE secrets, then the YAML file, then the defaults.
        return customise_sources(settings_cls, init_settings, env_settings)

    @field_validator("admin_key")
    @classmethod
    def _long_admin_key(cls, key: SecretStr | None) -> SecretStr | None:
        # The message never shows the key; an empty value means unset, as in resolved_admin_key.
        if key is not None and 0 < len(key.get_secret_value().strip()) < ADMIN_KEY_MIN_CHARS:
            raise ValueError(f"the admin key must be at least {ADMIN_KEY_MIN_CHARS} characters long")
        return key

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        # Plain URLs name the sync drivers; the gateway talks to the database asynchronously.
        for plain, asynchronous in _ASYNC_DRIVERS.items():
            if url.startswith(plain):
                return asynchronous + url[len(plain) :]
        return url

    def upstream_urls(self) -> dict[str, str]:
        """Every upstream by name; without `upstreams`, the one engine at `engine_url`."""
        if self.upstreams:
            return {name: str(upstream.url).rstrip("/") for name, upstream in self.upstreams.items()}
        return {"engine": str(self.engine_url).rstrip("/")}

    def policy(self) -> Policy:
        """What the request path reads of these settings (it never sees Settings itself)."""
        return Policy(
            max_body_bytes=self.max_body_bytes,
            screen_body_bytes=self.screen_body_bytes,
            max_json_nodes=self.max_json_nodes,
            max_messages=self.max_messages,
            max_content_parts=self.max_content_parts,
            rejections_per_key=Allowance(self.rejection_budget_per_key, self.rejection_window_s),
            rejections_per_address=Allowance(self.rejection_budget_per_address, self.rejection_window_s),
            auth_failures_per_address=Allowance(self.auth_failures_per_address, self.auth_failure_window_s),
            limits=self.limits,
            models=self.models,
            media_default_accepts=tuple(self.media_default_accepts),
            affinity_prefix_chars=self.affinity_prefix_chars,
            failover_enabled=self.failover_enabled,
            failover_max=self.failover_max,
            **self.routing_policy(),
        )

    def problems(self) -> list[str]:
        """What no single field shows, each named by its setting (the loader lists them all)."""
        checks = [*cross_check(self.upstreams, self.models, self.routing), *config_problems(self.upstreams)]
        found = [f"{name}: {message}" for name, message in checks]
        if self.admin_key_file is not None and not self.admin_key_file.is_file():
            found.append(f"admin_key_file (TANTRA_ADMIN_KEY_FILE): {self.admin_key_file} is not a file")
        elif (key := self.resolved_admin_key()) is not None and len(key) < ADMIN_KEY_MIN_CHARS:
            found.append(
                f"admin_key_file (TANTRA_ADMIN_KEY_FILE): the admin key in {self.admin_key_file} must be "
                f"at least {ADMIN_KEY_MIN_CHARS} characters long"
            )
        if self.operator_port and self.operator_port == self.port:
            found.append("operator_port (TANTRA_OPERATOR_PORT): must differ from port (or be 0)")
        return found + self.files_problems() + self.virtual_models_problems(set(self.models))

    def resolved_admin_key(self) -> str | None:
        """The admin key from `admin_key`, else from the first line of `admin_key_file`."""
        if self.admin_key is not None and self.admin_key.get_secret_value():
            return self.admin_key.get_secret_value()
        if self.admin_key_file is not None:
            lines = self.admin_key_file.read_text().splitlines()
            return lines[0].strip() if lines and lines[0].strip() else None
        return None


# What a live reload may change; anything else needs a restart (a reload that changes it says so).
RELOADABLE = frozenset(
    {
        "log_level",
        "log_format",
        "log_prompts",
        "health_interval_s",
        "health_timeout_s",
        "health_deep",
        "upstreams",
        "models",
        "routing",
        *ROUTING_RELOADABLE,
        "limits",
        "max_body_bytes",
        "screen_body_bytes",
        "max_json_nodes",
        "max_messages",
        "max_content_parts",
        "rejection_budget_per_key",
        "rejection_budget_per_address",
        "rejection_window_s",
        "auth_failures_per_address",
        "auth_failure_window_s",
        "ttft_timeout_s",
        "inter_token_timeout_s",
        "total_timeout_s",
        "retry_attempts",
        "retry_backoff_s",
        "retry_backoff_max_s",
        "failover_enabled",
        "failover_max",
        "affinity_prefix_chars",
        "realtime_max_audio_buffer_s",
        "realtime_max_items",
        "realtime_transcription_model",
        "realtime_speech_model",
        "realtime_max_sessions",
        "realtime_max_sessions_per_key",
        "realtime_idle_timeout_s",
    }
)

_ASYNC_DRIVERS = {
    "sqlite:///": "sqlite+aiosqlite:///",
    "postgresql://": "postgresql+asyncpg://",
    "postgres://": "postgresql+asyncpg://",
    "postgresql+psycopg2://": "postgresql+asyncpg://",
}
