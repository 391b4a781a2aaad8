"""An external OpenAI-compatible API as an upstream: a hosted provider, or a LiteLLM proxy.

The same HTTP calls as to a vLLM server (the hot path stays one streaming request), with the
differences a provider makes: the gateway's own key on every call (a client's key is never
forwarded), health is `GET /v1/models` answering 200 (there is no /health, no /tokenize, no
/metrics, and a probe completion would cost money), and a 401/403 is the operator's key being
refused (a 502 `upstream_auth_failed`), a failure of this upstream rather than the client's mistake.

A provider's error text is the operator's account talking (its organisation id, project, quota and
billing state, sometimes URLs), so it never reaches a tenant: the gateway's log keeps it, the client
gets a message of the gateway's own with the provider's status, type, code and a plain `param`. The
gateway's own vLLM engines are not providers: their messages describe the request and pass verbatim.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar

import httpx
import orjson

from gateway.errors import (
    APIError,
    ContextLengthExceeded,
    ModelNotFound,
    RateLimited,
    UpstreamAuthFailed,
)
from gateway.upstreams.http_api import HttpApi, HttpUpstream, engine_error, probe_failure, served_model
from gateway.upstreams.interface import Capabilities, UpstreamAnswer, UpstreamSpec

_log = logging.getLogger("tantra.upstreams")

# Nothing beyond OpenAI's API: no continuation, tokenizer, metrics or /health of its own.
PROVIDER = Capabilities(uses_api_key=True)


class ProviderUpstream(HttpUpstream):
    """A provider or proxy reached with the gateway's key (the spec's `api_key`)."""

    capabilities: ClassVar[Capabilities] = PROVIDER

    def __init__(
        self, spec: UpstreamSpec, client: httpx.AsyncClient, probes: httpx.AsyncClient | None = None
    ) -> None:
        auth = {"authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        super().__init__(
            spec,
            HttpApi(spec.base_url, client, auth=auth, error=provider_error),
            HttpApi(spec.base_url, probes or client, auth=auth, error=provider_error),
        )

    async def open(
        self, path: str, body: bytes, headers: dict[str, str], *, connect_timeout_s: float | None = None
    ) -> UpstreamAnswer:
        return await super().open(path, _without_priority(body), headers, connect_timeout_s=connect_timeout_s)

    async def is_healthy(self, timeout_s: float) -> bool:
        return await self._probes.answers("/v1/models", timeout_s)

    async def deep_check(self, model: str | None, *, generate: bool) -> str:
        """Its model list only, whatever `generate` says: a probe completion would cost money."""
        try:
            return served_model(await self._probes.get("/v1/models"), model)
        except httpx.HTTPError as exc:
            raise probe_failure(exc) from exc

    async def count_tokens(self, model: str, text: str, timeout_s: float) -> int | None:
        return None  # no tokenizer endpoint: failover counts the streamed events instead

    async def scrape_metrics(self, timeout_s: float) -> str | None:
        return None  # its metrics are not the gateway's to federate


def _without_priority(body: bytes) -> bytes:
    """The body without vLLM's `priority` (batch lines carry TANTRA_BATCH_ENGINE_PRIORITY): OpenAI's
    API has no such field and a strict provider refuses unknown ones. Parsed only when it is there."""
    if b'"priority"' not in body:
        return body
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(payload, dict) or "priority" not in payload:
        return body
    del payload["priority"]
    return orjson.dumps(payload)


def provider_error(status: int, raw: bytes, *, prompt_param: str = "prompt") -> APIError:
    """A refused key is the operator's problem (502); anything else reads as an engine's error."""
    if status in (401, 403) or _error_type(raw) in _KEY_REFUSED_TYPES:
        return UpstreamAuthFailed(
            f"The upstream provider refused the gateway's credentials (status {status}); "
            "the gateway's operator must fix its key."
        )
    error = engine_error(status, raw, prompt_param=prompt_param)
    _log.warning("upstream provider answered %s: %s", status, error.message)
    error.message = _own_words(error, status)
    error.args = (error.message,)
    if error.param is not None and not _PLAIN_PARAM.fullmatch(error.param):
        error.param = None
    return error


# A parameter name as OpenAI reports one (`messages`, `tools[0].function.name`): anything else is text.
_PLAIN_PARAM = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")


def _own_words(error: APIError, status: int) -> str:
    """What the client reads instead of the provider's text: the kind of failure, never its words."""
    if isinstance(error, ContextLengthExceeded):
        what = "The request exceeds the model's context length: shorten the input or lower max_tokens"
    elif isinstance(error, RateLimited):
        what = "The upstream provider is rate limiting requests for this model; retry after a while"
    elif isinstance(error, ModelNotFound):
        what = "The upstream provider does not serve this model"
    elif 400 <= status < 500:
        what = "The upstream provider refused the request"
    else:
        what = "The upstream provider failed to answer; try again shortly"
    return f"{what} (upstream status {status})."


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
