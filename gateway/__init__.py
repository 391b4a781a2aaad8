"""Tantra's gateway: an OpenAI-compatible API in front of vLLM engines."""

from gateway.app import create_app
from gateway.config import Settings

__all__ = ["Settings", "create_app"]
