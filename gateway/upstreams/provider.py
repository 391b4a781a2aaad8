"""An external OpenAI-compatible API as an upstream: a hosted provider, or a LiteLLM proxy.

The same HTTP calls as to a vLLM server (the hot path stays one streaming request), with the
differences a provider makes: the gateway's own key on every call (a client's key is never
forwarded), health is `GET /v1/models` answering 200 (there is no /health, no /tokenize, no
/metrics, and a probe completion would cost money), and a 401/403 is the operator's key being
refused (a 502 `upstream_auth_failed`), a failure of this upstream rather than the client's mistake.
"""

from __future__ import annotations

import httpx
import orjson

from gateway.errors import APIError, UpstreamAuthFailed
from gateway.upstreams.engine import EngineUpstream


class ProviderUpstream(EngineUpstream):
    kind = "openai"
    _health_path = "/v1/models"

    def __init__(self, base_url: str, client: httpx.AsyncClient, api_key: str | None) -> None:
        super().__init__(base_url, client)
        self._api_key = api_key
        if api_key:
            self._auth = {"authorization": f"Bearer {api_key}"}

    def _key(self) -> str | None:
        return self._api_key

    async def count_tokens(self, model: str, text: str, timeout_s: float) -> int | None:
        return None  # no tokenizer endpoint: failover counts the streamed events instead

    def _error(self, status: int, raw: bytes, *, prompt_param: str = "prompt") -> APIError:
        if status in (401, 403) or _error_type(raw) in _KEY_REFUSED_TYPES:
            return UpstreamAuthFailed(
                f"The upstream provider refused the gateway's credentials (status {status}); "
                "the gateway's operator must fix its key."
            )
        return super()._error(status, raw, prompt_param=prompt_param)


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


def make_upstream(
    kind: str, base_url: str, client: httpx.AsyncClient, api_key: str | None = None
) -> EngineUpstream:
    """The upstream a configuration entry describes."""
    if kind == "openai":
        return ProviderUpstream(base_url, client, api_key)
    return EngineUpstream(base_url, client)
