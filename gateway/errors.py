"""The gateway's errors: a small hierarchy, mapped to OpenAI's envelope in one place."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from gateway.http.sse import sse_event
from gateway.protocol.anthropic import error_body as anthropic_body


class APIError(Exception):
    """An error the client should see, with OpenAI's status, type, param and code."""

    status = 500
    type = "server_error"
    code: str | None = None
    # What an upstream asked for in its Retry-After, when this error came from one.
    retry_after_s: float | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        return error_response(self.status, self.body(), self.headers)


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


def no_such_model(model: str) -> ModelNotFound:
    """A model that is unknown or that the key may not use: one answer for both, as OpenAI gives,
    so a key cannot learn which models exist beyond its own."""
    return ModelNotFound(
        f"The model `{model}` does not exist or you do not have access to it.", param="model"
    )


class MethodNotAllowed(APIError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class AuthenticationFailed(APIError):
    """No key, a wrong one, a revoked or expired one: OpenAI's 401, typed `invalid_request_error`
    with code `invalid_api_key` exactly as OpenAI sends it (SDKs map 401 by status alone)."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"www-authenticate": 'Bearer realm="tantra"'})


class PermissionDenied(APIError):
    """A valid key asking for what it may not have (a model outside its list, the admin API)."""

    status = 403
    type = "permission_error"


class Conflict(APIError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RateLimited(APIError):
    """Over requests per minute, tokens per minute or concurrent requests: OpenAI's 429."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"
    # Which limit refused, for metrics: rpm, tpm or concurrency; and its scope, key or tenant.
    limit: str | None = None
    scope: str | None = None


class UpstreamRateLimited(RateLimited):
    """An upstream (a provider, a busy engine) answered 429: a rate limit, passed on as one, with
    its Retry-After, so the client's SDK backs off as it would against the provider itself."""

    limit: str | None = "upstream"


class QuotaExceeded(APIError):
    """Over a token or spend budget: OpenAI's 429 `insufficient_quota`; retrying will not help."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"
    limit: str | None = "budget"
    scope: str | None = None


class LimiterUnavailable(APIError):
    """Redis cannot be reached and the policy is to refuse rather than serve unlimited."""

    status = 503
    type = "server_error"
    code = "rate_limiter_unavailable"


class StoreUnavailable(APIError):
    """The database cannot be reached to look a key up or record an admin change."""

    status = 503
    type = "server_error"
    code = "store_unavailable"


class EngineUnavailable(APIError):
    status = 503
    type = "server_error"
    code = "engine_unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        # Retry-After (not the `retry_after_s` attribute, which is an upstream's own ask): no engine
        # can answer now, and the client's SDK backs off and retries (issue 26, point 6).
        super().__init__(message, headers={"retry-after": str(retry_after_s)})


class Overloaded(APIError):
    """Every upstream that could serve the request is at its limit: shed now rather than queue."""

    status = 503
    type = "server_error"
    code = "engine_overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after_s)})


class ShuttingDown(APIError):
    """The gateway is draining before it exits; another replica (or a retry) will serve."""

    status = 503
    type = "server_error"
    code = "shutting_down"

    def __init__(self) -> None:
        super().__init__(
            "This gateway is shutting down; retry the request.",
            headers={"retry-after": "1", "connection": "close"},
        )


class EngineTimeout(APIError):
    status = 504
    type = "server_error"
    code = "engine_timeout"


class UpstreamError(APIError):
    """The engine answered with an error the gateway passes on, with the engine's status."""

    type = "server_error"


class UpstreamAuthFailed(APIError):
    """An external provider refused the gateway's own key (its 401/403): the operator's problem,
    never shown as the client's key being wrong, and a failure of that upstream for its breaker."""

    status = 502
    type = "server_error"
    code = "upstream_auth_failed"


def error_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def is_anthropic(path: str) -> bool:
    """Whether `path` is Anthropic's Messages API, whose errors are in Anthropic's envelope."""
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def anthropic_error_body(error: APIError) -> dict[str, Any]:
    """`error` in Anthropic's envelope, `{"type": "error", "error": {"type", "message"}}`, typed as
    Anthropic types its status. Anthropic has no `param`: the field is put in front of the message."""
    message = error.message
    if error.param and error.param not in message:
        message = f"{error.param}: {message}"
    return anthropic_body(error.status, message)


def anthropic_error(error: APIError) -> Response:
    """`error` as Anthropic answers it: its envelope, with the same status and headers
    (Retry-After, x-ratelimit-*)."""
    return error_response(error.status, anthropic_error_body(error), error.headers)


def error_for(path: str, error: APIError) -> Response:
    """`error` as the API of `path` answers it: Anthropic's envelope on its Messages API, OpenAI's
    everywhere else. Every error of the Messages routes, the middleware's included, goes through
    here (or through `anthropic_error`, where the route is known)."""
    return anthropic_error(error) if is_anthropic(path) else error.response()


def sse_error_event(error: APIError) -> bytes:
    """An error inside a stream that has begun: one `data:` event, as OpenAI sends it."""
    return sse_event(error.body())
