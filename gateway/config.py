"""One settings object, read from TANTRA_* environment variables; the app factory builds all from it."""

from __future__ import annotations

from pydantic import Field, HttpUrl
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
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
    log_level: str = Field("info", description="uvicorn's log level.")
