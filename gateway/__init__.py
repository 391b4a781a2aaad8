"""Tantra's gateway: an OpenAI-compatible API in front of vLLM engines.

Nothing is imported eagerly: `import gateway.protocol` (a client's schema) must not load FastAPI,
SQLAlchemy or Redis. `gateway.create_app` and `gateway.Settings` are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import create_app
    from gateway.settings.schema import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from gateway.app import create_app

        return create_app
    if name == "Settings":
        from gateway.settings.schema import Settings

        return Settings
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
