"""Tantra's Python client: the openai SDK for OpenAI's endpoints, typed resources for Tantra's own."""

from tantra_client import errors, types
from tantra_client._base import AsyncAPIResource, Call, SyncAPIResource
from tantra_client._client import AsyncTantra, Tantra
from tantra_client.errors import RateLimitError, TantraError, retry_after

__all__ = [
    "AsyncAPIResource",
    "AsyncTantra",
    "Call",
    "RateLimitError",
    "SyncAPIResource",
    "Tantra",
    "TantraError",
    "errors",
    "retry_after",
    "types",
]
