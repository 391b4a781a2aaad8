"""`Tantra` and `AsyncTantra`: the openai SDK's clients (so `client.chat`, `client.files`,
`client.batches`, ... are the SDK's own objects, pointed at the gateway's /v1) plus Tantra's own
resources: `client.admin` (tenants, keys, usage, audit, status) and `client.health`."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any, TypeVar

import openai

from tantra_client._base import AsyncAPIResource, SyncAPIResource
from tantra_client.resources import Admin, AsyncAdmin, AsyncHealth, Health

_S = TypeVar("_S", bound=SyncAPIResource)
_A = TypeVar("_A", bound=AsyncAPIResource)


def _root(base_url: str | None) -> str:
    url = (base_url or os.environ.get("TANTRA_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
    return url.removesuffix("/v1")


class Tantra(openai.OpenAI):
    """`base_url`: the gateway's root (a trailing /v1 is accepted). `api_key` (TANTRA_API_KEY) for
    the OpenAI endpoints; `admin_key` (TANTRA_ADMIN_KEY) for `client.admin`. Other keyword
    arguments are the SDK's (`max_retries`, `timeout`, `http_client`, ...)."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        admin_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.root_url = _root(base_url)
        self.admin_key = admin_key or os.environ.get("TANTRA_ADMIN_KEY")
        key = api_key or os.environ.get("TANTRA_API_KEY") or self.admin_key
        super().__init__(base_url=self.root_url + "/v1", api_key=key, **kwargs)
        self._extensions: dict[type, Any] = {}

    # The openai SDK has an `admin` of its own (OpenAI's organization admin API), which Tantra does
    # not serve: Tantra's admin API takes the name.
    @cached_property
    def admin(self) -> Admin:  # type: ignore[override]
        return Admin(self)

    @cached_property
    def health(self) -> Health:
        return Health(self)

    def resource(self, kind: type[_S]) -> _S:
        """The client's one instance of an extension resource (a `SyncAPIResource` subclass)."""
        if kind not in self._extensions:
            self._extensions[kind] = kind(self)
        return self._extensions[kind]


class AsyncTantra(openai.AsyncOpenAI):
    """The async twin of `Tantra`."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        admin_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.root_url = _root(base_url)
        self.admin_key = admin_key or os.environ.get("TANTRA_ADMIN_KEY")
        key = api_key or os.environ.get("TANTRA_API_KEY") or self.admin_key
        super().__init__(base_url=self.root_url + "/v1", api_key=key, **kwargs)
        self._extensions: dict[type, Any] = {}

    @cached_property
    def admin(self) -> AsyncAdmin:  # type: ignore[override]
        return AsyncAdmin(self)

    @cached_property
    def health(self) -> AsyncHealth:
        return AsyncHealth(self)

    def resource(self, kind: type[_A]) -> _A:
        if kind not in self._extensions:
            self._extensions[kind] = kind(self)
        return self._extensions[kind]
