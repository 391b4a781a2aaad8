"""One vLLM engine reached over HTTP: the transport, and the engine's errors in OpenAI's terms."""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson

from gateway.errors import (
    APIError,
    ContextLengthExceeded,
    EngineTimeout,
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    UpstreamError,
)


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After (seconds, or OpenAI's retry-after-ms) of an upstream's answer; dates are ignored."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None


# vLLM words an over-long prompt several ways across versions; all mean the same to a client.
_CONTEXT_LENGTH = re.compile(
    r"maximum context length|max_model_len|maximum model length|context length|"
    r"longer than the maximum|prompt is too long|exceeds the model",
    re.IGNORECASE,
)


class EngineUpstream:
    """A vLLM OpenAI server. The pooled client is shared by every request the gateway relays."""

    kind = "vllm"

    def __init__(self, base_url: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._auth: dict[str, str] = {}  # headers every call carries (a provider's key)

    def same_as(self, kind: str, base_url: str, api_key: str | None) -> bool:
        """Whether this upstream is the one a (reloaded) configuration describes."""
        return (kind, base_url.rstrip("/"), api_key) == (self.kind, self.base_url, self._key())

    def _key(self) -> str | None:
        return None

    async def open(
        self, path: str, body: bytes, headers: dict[str, str], *, connect_timeout_s: float | None = None
    ) -> httpx.Response:
        """Send a request and return the engine's 200 response with its body still unread.

        Any other status is raised as the APIError a client should see (its `retry_after_s` taken
        from the engine's Retry-After); the caller owns the returned response and must close it.
        """
        timeout: httpx.Timeout | Any = httpx.USE_CLIENT_DEFAULT
        if connect_timeout_s is not None:
            default = self._client.timeout
            timeout = httpx.Timeout(
                default.read, connect=connect_timeout_s, write=default.write, pool=default.pool
            )
        request = self._client.build_request(
            "POST",
            self.base_url + path,
            content=body,
            headers={**_JSON, **headers, **self._auth},
            timeout=timeout,
        )
        response = await self._send(request)
        if response.status_code != 200:
            try:
                raw = await response.aread()
            except httpx.HTTPError as exc:
                raise EngineUnavailable("The engine failed while reporting an error.") from exc
            finally:
                await response.aclose()
            error = self._error(response.status_code, raw, prompt_param=_PROMPT_PARAM.get(path, "prompt"))
            error.retry_after_s = retry_after_seconds(response.headers)
            raise error
        return response

    async def count_tokens(self, model: str, text: str, timeout_s: float) -> int | None:
        """How many tokens `text` is to the engine's tokenizer (vLLM's /tokenize), or None."""
        try:
            response = await self._client.post(
                self.base_url + "/tokenize",
                json={"model": model, "prompt": text, "add_special_tokens": False},
                timeout=timeout_s,
            )
            count = response.json().get("count") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return count if isinstance(count, int) else None

    async def get_json(self, path: str, timeout_s: float | None = None) -> Any:
        request = self._client.build_request(
            "GET",
            self.base_url + path,
            headers=self._auth,
            timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
        )
        response = await self._send(request)
        raw = await read_body(response)
        if response.status_code != 200:
            raise self._error(response.status_code, raw)
        return orjson.loads(raw)

    # What the breaker's probe asks: vLLM's /health (a provider has none; see ProviderUpstream).
    _health_path = "/health"

    async def is_healthy(self, timeout_s: float) -> bool:
        try:
            response = await self._client.get(
                self.base_url + self._health_path, headers=self._auth, timeout=timeout_s
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _error(self, status: int, raw: bytes, *, prompt_param: str = "prompt") -> APIError:
        return engine_error(status, raw, prompt_param=prompt_param)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._client.send(request, stream=True)
        except httpx.ConnectTimeout as exc:
            raise EngineUnavailable("The engine did not accept a connection in time.") from exc
        except httpx.TimeoutException as exc:
            raise EngineTimeout("The engine did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise EngineUnavailable("The engine is not reachable; try again shortly.") from exc


_JSON = {"content-type": "application/json", "accept-encoding": "identity"}
# What OpenAI calls the prompt in each route, for errors vLLM reports against `input_tokens`.
_PROMPT_PARAM = {"/v1/chat/completions": "messages", "/v1/completions": "prompt"}


async def read_body(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except httpx.TimeoutException as exc:
        raise EngineTimeout("The engine did not finish its answer in time.") from exc
    except httpx.HTTPError as exc:
        raise EngineUnavailable("The engine broke off its answer.") from exc
    finally:
        await response.aclose()


def engine_error(status: int, raw: bytes, *, prompt_param: str = "prompt") -> APIError:
    """The engine's error body, re-typed and re-coded the way OpenAI reports the same case."""
    message, param = _engine_message(raw)
    message = message or f"The engine answered with status {status}."
    if param == "input_tokens":
        param = prompt_param
    if status == 400 and _CONTEXT_LENGTH.search(message):
        return ContextLengthExceeded(message, param=param or prompt_param)
    if status == 404 and "model" in message.lower():
        return ModelNotFound(message, param="model")
    if status == 404:
        return NotFound(message)
    if 400 <= status < 500:
        return InvalidRequest(message, param=param, status=status)
    if status == 503:
        return EngineUnavailable(message)
    return UpstreamError(message, status=status if status >= 500 else 502)


def _engine_message(raw: bytes) -> tuple[str | None, str | None]:
    """The message and param of an engine error body, whatever shape it came in."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip()[:2000] or None, None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail")
            param = error.get("param")
            return (str(message) if message else None), (param if isinstance(param, str) else None)
        if isinstance(error, str):
            return error, None
    return None, None
