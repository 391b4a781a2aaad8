"""An external OpenAI-compatible API as an upstream: a hosted provider, or a LiteLLM proxy.

The same HTTP calls as to a vLLM server (the hot path stays one streaming request), with the
differences a provider makes: the gateway's own key on every call (a client's key is never
forwarded), health is `GET /v1/models` answering 200 (there is no /health, no /tokenize, no
/metrics, and a probe completion would cost money), and a 401/403 is the operator's key being
refused (a 502 `upstream_auth_failed`), a failure of this upstream rather than the client's mistake.
"""

from __future__ import annotations

from typing import ClassVar

import httpx
import orjson

from gateway.errors import APIError, UpstreamAuthFailed
from gateway.upstreams.http_api import HttpApi, HttpUpstream, engine_error, probe_failure, served_model
from gateway.upstreams.interface import Capabilities, UpstreamSpec

# Nothing beyond OpenAI's API: no continuation, tokenizer, metrics or /health of its own.
PROVIDER = Capabilities(uses_api_key=True)


class ProviderUpstream(HttpUpstream):
    """A provider or proxy reached with the gateway's key (the spec's `api_key`)."""

    capabilities: ClassVar[Capabilities] = PROVIDER

    def __init__(self, spec: UpstreamSpec, client: httpx.AsyncClient) -> None:
        auth = {"authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        super().__init__(spec, HttpApi(spec.base_url, client, auth=auth, error=provider_error))

    async def is_healthy(self, timeout_s: float) -> bool:
        return await self._api.answers("/v1/models", timeout_s)

    async def deep_check(self, model: str | None, *, generate: bool) -> str:
        """Its model list only, whatever `generate` says: a probe completion would cost money."""
        try:
            return served_model(await self._api.get("/v1/models"), model)
        except httpx.HTTPError as exc:
            raise probe_failure(exc) from exc

    async def count_tokens(self, model: str, text: str, timeout_s: float) -> int | None:
        return None  # no tokenizer endpoint: failover counts the streamed events instead

    async def scrape_metrics(self, timeout_s: float) -> str | None:
        return None  # its metrics are not the gateway's to federate


def provider_error(status: int, raw: bytes, *, prompt_param: str = "prompt") -> APIError:
    """A refused key is the operator's problem (502); anything else reads as an engine's error."""
    if status in (401, 403) or _error_type(raw) in _KEY_REFUSED_TYPES:
        return UpstreamAuthFailed(
            f"The upstream provider refused the gateway's credentials (status {status}); "
            "the gateway's operator must fix its key."
        )
    return engine_error(status, raw, prompt_param=prompt_param)


# Error types that mean the gateway's key was refused whatever the status: a LiteLLM proxy without a
# database answers any key but its master key with 400 `no_db_connection` (it would look the key up).
_KEY_REFUSED_TYPES = frozenset({"no_db_connection"})


def _error_type(raw: bytes) -> str | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None
