"""OpenAI's HTTP API on an upstream, as both kinds of upstream speak it: the transport, and errors.

`HttpApi` is the shared helper the upstream classes are composed of (one pooled client for every
request the gateway relays); the functions turn an engine's answers into what a client should see.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import aiohttp
import httpx
import orjson
import yarl

from gateway.errors import (
    APIError,
    ContextLengthExceeded,
    EngineTimeout,
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    UpstreamError,
    UpstreamRateLimited,
)
from gateway.upstreams.interface import ProbeFailed, UpstreamAnswer, UpstreamSpec
from gateway.upstreams.transport import EngineTransport, client_timeout


class ErrorMap(Protocol):
    """How an upstream's error answer becomes the APIError a client sees."""

    def __call__(self, status: int, raw: bytes, *, prompt_param: str = "prompt") -> APIError: ...


class HttpApi:
    """One upstream's base URL on the gateway's pooled client, with the headers every call carries
    (a provider's key) and the upstream's way of reading its error answers."""

    def __init__(
        self,
        base_url: str,
        client: httpx.AsyncClient,
        *,
        auth: Mapping[str, str] | None = None,
        error: ErrorMap | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._auth = dict(auth or {})
        self._error: ErrorMap = error or engine_error
        # The request path's sends skip httpx's client layers (URL merge, header and cookie merges,
        # auth and redirect hooks, cookie extraction): 13% of the gateway's CPU at one request in
        # flight under cProfile (docs/performance.md, fix 4). What they did that a
        # relay needs is done once here: the client's default headers, the per-path URL, the
        # timeouts. An engine's cookies are not kept between requests (the shared client kept them,
        # and sent one caller's cookies on every other caller's requests).
        self._transport = _plain_transport(client)
        # On the engine transport (the default): aiohttp's session and response, no httpx objects.
        self._aiohttp = self._transport if isinstance(self._transport, EngineTransport) else None
        self._base_headers = {**dict(client.headers), **_JSON}
        self._auth_lower = {name.lower(): value for name, value in self._auth.items()}
        self._urls: dict[str, httpx.URL] = {}
        self._timeouts: dict[float | None, dict[str, float | None]] = {}
        self._aiohttp_targets: dict[tuple[str, float | None], tuple[yarl.URL, aiohttp.ClientTimeout]] = {}

    async def open(
        self, path: str, body: bytes, headers: dict[str, str], *, connect_timeout_s: float | None = None
    ) -> UpstreamAnswer:
        """Send a request and return the upstream's 200 response with its body still unread.

        Any other status is raised as the APIError a client should see (its `retry_after_s` taken
        from the upstream's Retry-After); the caller owns the returned response and must close it.
        """
        response = await self._send_direct(path, body, headers, connect_timeout_s)
        if response.status_code != 200:
            try:
                raw = await response.aread()
            except httpx.HTTPError as exc:
                raise EngineUnavailable("The engine failed while reporting an error.") from exc
            finally:
                await response.aclose()
            error = self._error(response.status_code, raw, prompt_param=_PROMPT_PARAM.get(path, "prompt"))
            error.retry_after_s = retry_after_seconds(response.headers)
            if error.status == 429 and error.retry_after_s is not None:
                error.headers.setdefault("retry-after", str(max(1, math.ceil(error.retry_after_s))))
            raise error
        return response

    async def get(self, path: str, timeout_s: float | None = None) -> httpx.Response:
        """A whole GET answer; transport failures stay httpx's (probes report them by name)."""
        timeout = timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        return await self._client.get(self.base_url + path, headers=self._auth, timeout=timeout)

    async def post(
        self, path: str, payload: dict[str, Any], *, timeout_s: float | None = None, headers: dict[str, str]
    ) -> httpx.Response:
        """A whole POST answer of a JSON payload; transport failures stay httpx's."""
        timeout = timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        return await self._client.post(
            self.base_url + path, json=payload, headers={**headers, **self._auth}, timeout=timeout
        )

    async def answers(self, path: str, timeout_s: float) -> bool:
        """Whether a GET of `path` answers 200 in time: a breaker's probe."""
        try:
            response = await self.get(path, timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def get_json(self, path: str, timeout_s: float | None = None) -> Any:
        """A GET's JSON body; failures and other statuses raised as APIErrors."""
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

    async def models(self, timeout_s: float) -> list[dict[str, Any]]:
        """The /v1/models cards that name a model; APIError when the upstream cannot say."""
        return model_cards(await self.get_json("/v1/models", timeout_s))

    async def _send_direct(
        self, path: str, body: bytes, headers: dict[str, str], connect_timeout_s: float | None
    ) -> UpstreamAnswer:
        """A POST of `body` to `path`, straight to the client's transport when it has one for every
        URL (no proxies or mounts) and no event hooks (an operator's or a test's, which may be
        added after start: read per request), else through the client as any other call."""
        hooks = self._client.event_hooks
        hooked = bool(hooks["request"] or hooks["response"])
        if self._aiohttp is not None and not hooked:
            return await self._send_aiohttp(self._aiohttp, path, body, headers, connect_timeout_s)
        if self._transport is None or hooked:
            timeout: httpx.Timeout | Any = httpx.USE_CLIENT_DEFAULT
            if connect_timeout_s is not None:
                timeout = self._timeout(connect_timeout_s)
            return await self._send(
                self._client.build_request(
                    "POST",
                    self.base_url + path,
                    content=body,
                    headers={**_JSON, **headers, **self._auth},
                    timeout=timeout,
                )
            )
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.base_url + path)
        timeouts = self._timeouts.get(connect_timeout_s)
        if timeouts is None:
            timeouts = self._timeouts[connect_timeout_s] = self._timeout(connect_timeout_s).as_dict()
        request = httpx.Request(
            "POST",
            url,
            content=body,
            headers={**self._base_headers, **{k.lower(): v for k, v in headers.items()}, **self._auth_lower},
            extensions={"timeout": timeouts},
        )
        with _engine_errors():
            response = await self._transport.handle_async_request(request)
        response.request = request
        return response

    async def _send_aiohttp(
        self,
        transport: EngineTransport,
        path: str,
        body: bytes,
        headers: dict[str, str],
        connect_s: float | None,
    ) -> UpstreamAnswer:
        """`_send_direct`'s send on aiohttp's session: the same URL, headers and timeouts."""
        target = self._aiohttp_targets.get((path, connect_s))
        if target is None:
            limits = client_timeout(self._timeout(connect_s).as_dict())
            target = self._aiohttp_targets[path, connect_s] = (yarl.URL(self.base_url + path), limits)
        sent = {**self._base_headers, **{k.lower(): v for k, v in headers.items()}, **self._auth_lower}
        with _engine_errors():
            return await transport.post(target[0], body, sent, target[1])

    def _timeout(self, connect_timeout_s: float | None) -> httpx.Timeout:
        default = self._client.timeout
        if connect_timeout_s is None:
            return default
        return httpx.Timeout(default.read, connect=connect_timeout_s, write=default.write, pool=default.pool)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        with _engine_errors():
            return await self._client.send(request, stream=True)


@contextlib.contextmanager
def _engine_errors() -> Iterator[None]:
    """httpx's failures to reach or hear from an engine, as the errors a client is shown."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise EngineUnavailable("The engine did not accept a connection in time.") from exc
    except httpx.TimeoutException as exc:
        raise EngineTimeout("The engine did not answer in time.") from exc
    except httpx.HTTPError as exc:
        raise EngineUnavailable("The engine is not reachable; try again shortly.") from exc


_JSON = {"content-type": "application/json", "accept-encoding": "identity"}
# What OpenAI calls the prompt in each route, for errors vLLM reports against `input_tokens`.
_PROMPT_PARAM = {"/v1/chat/completions": "messages", "/v1/completions": "prompt"}


def _plain_transport(client: httpx.AsyncClient) -> httpx.AsyncBaseTransport | None:
    """The transport `client` sends every request through, when it has one: none of httpx's
    mounts (proxies from the environment, a test's per-host transports) to choose between."""
    if client._mounts:  # httpx has no public accessor for either
        return None
    return client._transport


def model_cards(answer: Any) -> list[dict[str, Any]]:
    """The cards of a /v1/models answer that name a model; whatever else it holds is ignored. OpenAI's
    required `object`, `created` and `owned_by` are filled in where a provider leaves them out (vLLM
    always sends them; some OpenAI-compatible servers do not), so the listing stays OpenAI's shape."""
    data = answer.get("data") if isinstance(answer, dict) else None
    return [
        {
            **card,
            "id": str(card["id"]),
            "object": "model",
            "created": _created(card),
            "owned_by": _owner(card),
        }
        for card in data or []
        if isinstance(card, dict) and card.get("id") is not None
    ]


def _created(card: dict[str, Any]) -> int:
    created = card.get("created")
    return created if isinstance(created, int) and not isinstance(created, bool) else 0


def _owner(card: dict[str, Any]) -> str:
    owner = card.get("owned_by")
    return owner if isinstance(owner, str) else "unknown"


def served_model(response: httpx.Response, preferred: str | None) -> str:
    """From a /v1/models answer: `preferred` when listed, else the first model; ProbeFailed when none."""
    try:
        cards = model_cards(response.json()) if response.status_code == 200 else []
    except ValueError:
        cards = []
    if not cards:
        raise ProbeFailed("the engine lists no model")
    ids = [str(card["id"]) for card in cards]
    return preferred if preferred in ids else ids[0]


def probe_failure(exc: httpx.HTTPError) -> ProbeFailed:
    """A transport failure as readiness reports it: the error's name, and its words when it has any."""
    return ProbeFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


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


async def read_body(response: UpstreamAnswer) -> bytes:
    try:
        return await response.aread()
    except httpx.TimeoutException as exc:
        raise EngineTimeout("The engine did not finish its answer in time.") from exc
    except httpx.HTTPError as exc:
        raise EngineUnavailable("The engine broke off its answer.") from exc
    finally:
        await response.aclose()


# vLLM words an over-long prompt several ways across versions; all mean the same to a client.
_CONTEXT_LENGTH = re.compile(
    r"maximum context length|max_model_len|maximum model length|context length|"
    r"longer than the maximum|prompt is too long|exceeds the model",
    re.IGNORECASE,
)


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
    if status == 429:
        return UpstreamRateLimited(message)
    if 400 <= status < 500:
        return InvalidRequest(message, param=param, status=status)
    if status == 503:
        return EngineUnavailable(message)
    return UpstreamError(message, status=status if status >= 500 else 502)


# vLLM's error types (`create_error_response`) and the status each stands for, for an error event
# inside a stream, which carries no status of its own.
_ENGINE_ERROR_STATUS = {
    "BadRequestError": 400,
    "NotFoundError": 404,
    "UnprocessableEntityError": 400,
    "TooManyRequestsError": 429,
    "InternalServerError": 500,
    "ServiceUnavailableError": 503,
}


def engine_stream_error(error: dict[str, Any]) -> APIError | None:
    """An error event the engine sent inside a stream (vLLM's: `type` a class name, `code` the
    HTTP status as an integer), re-typed and re-coded as `engine_error` does for an error answer;
    None for one already in OpenAI's shape (a provider's), passed on as it came."""
    code, kind = error.get("code"), error.get("type")
    if isinstance(code, int) and 400 <= code < 600:
        status = code
    elif kind in _ENGINE_ERROR_STATUS or "object" in error:
        status = _ENGINE_ERROR_STATUS.get(str(kind), 500)
    else:
        return None
    return engine_error(status, orjson.dumps({"error": error}))


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


class HttpUpstream:
    """What both kinds of upstream do the same way over HTTP: their spec, their URL, and the
    request path's one call. Each kind adds its own probes (`is_healthy`, `deep_check`, ...), sent
    through `probes`: the same upstream on the health probes' own client, so that they never wait
    for a connection behind the streams (gateway/clients.py, `probe_client`)."""

    def __init__(self, spec: UpstreamSpec, api: HttpApi, probes: HttpApi | None = None) -> None:
        self._api = api
        self._probes = probes or api
        self._spec = dataclasses.replace(spec, base_url=api.base_url)

    @property
    def kind(self) -> str:
        return self._spec.kind

    @property
    def base_url(self) -> str:
        return self._api.base_url

    def same_as(self, spec: UpstreamSpec) -> bool:
        """Equal specs, key included: a rotated key rebuilds the upstream."""
        return dataclasses.replace(spec, base_url=spec.base_url.rstrip("/")) == self._spec

    async def open(
        self, path: str, body: bytes, headers: dict[str, str], *, connect_timeout_s: float | None = None
    ) -> UpstreamAnswer:
        return await self._api.open(path, body, headers, connect_timeout_s=connect_timeout_s)

    async def list_models(self, timeout_s: float) -> list[dict[str, Any]]:
        return await self._api.models(timeout_s)
