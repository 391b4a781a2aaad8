"""What every API request passes before its own work, whatever the endpoint: who is calling (the
key, its tenant, the limits in force), a body within the size limit, and a model the key may use."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request

from gateway.auth import Authenticator, Principal
from gateway.auth.keys import PREFIX
from gateway.errors import (
    APIError,
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    StoreUnavailable,
)
from gateway.limits.accounting import Accountant, Tab
from gateway.observability import RequestRecord, bind_request
from gateway.protocol import InvalidParam, parse_request
from gateway.protocol.validation import RequestT
from gateway.settings.sections import LimitsConfig


class Gate:
    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def authenticate(self, request: Request) -> Principal:
        return await self.authenticate_headers(request.headers)

    async def authenticate_headers(self, headers: Mapping[str, str]) -> Principal:
        """The caller of any transport (an HTTP request, a WebSocket's handshake)."""
        try:
            return await self._auth.authenticate(headers)
        except (SQLAlchemyError, ConnectionError, TimeoutError) as exc:
            raise StoreUnavailable("API keys cannot be checked right now; try again shortly.") from exc

    async def identify(self, request: Request, record: RequestRecord | None, config: Any) -> Principal:
        """The caller (401 otherwise), named in the request's logs, with the config file's limits
        (`config`: the settings in force when the request arrived) over the store's."""
        with stage(record, "auth"):
            principal = await self.authenticate(request)
        if record is not None:
            record.tenant, record.key_prefix = principal.tenant_id, key_prefix(request)
            bind_request(tenant=record.tenant, key_prefix=record.key_prefix)
        if config is not None and not config.limits.empty:
            principal = with_file_limits(principal, config.limits)
        return principal


def open_tab(accountant: Accountant, principal: Principal, request: Request, endpoint: str) -> Tab:
    """The request's account, from now until its last byte."""
    return accountant.open(
        tenant_id=principal.tenant_id,
        key_id=principal.key_id,
        endpoint=endpoint,
        request_id=request.state.request_id,
    )


@contextlib.contextmanager
def admitting(tab: Tab, record: RequestRecord | None) -> Iterator[None]:
    """Close `tab` for a request refused (or failed) before its answer starts, and name the limit
    that refused it in its record."""
    try:
        yield
    except APIError as exc:
        tab.close(status=exc.status, outcome="rejected")
        if record is not None and isinstance(exc, RateLimited | QuotaExceeded):
            record.rejected_by = (exc.limit or "unknown", exc.scope or "unknown")
        raise
    except BaseException:
        tab.close(status=500, outcome="failed")
        raise


def check_allowed(model: str, principal: Principal) -> None:
    if not principal.may_use(model):
        raise PermissionDenied(
            f"This API key may not use the model `{model}`.", param="model", code="model_not_allowed"
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The API expects a JSON object; "
            "check that the body is valid JSON and that Content-Type is application/json."
        ) from None


def validate(schema: type[RequestT], payload: Any) -> RequestT:
    """`payload` as `schema`, or OpenAI's 400 naming the first offending field."""
    try:
        return parse_request(schema, payload)
    except InvalidParam as exc:
        raise InvalidRequest(exc.message, param=exc.param) from None


def _too_large(limit: int) -> APIError:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")


@contextlib.contextmanager
def stage(record: RequestRecord | None, name: str) -> Iterator[None]:
    """A child span of the request for one stage of its admission (nothing when tracing is off)."""
    if record is None or not record.tracing.enabled:
        yield
        return
    with record.child(name):
        yield


def key_prefix(request: Request) -> str | None:
    """Enough of the presented key to tell keys apart in logs (`sk-tantra-AbCd`), never more."""
    header = request.headers.get("authorization") or request.headers.get("api-key") or ""
    key = header.partition(" ")[2].strip() if " " in header else header.strip()
    if not key:
        return None
    if key.startswith(PREFIX) and len(key) > len(PREFIX) + 12:
        return key[: len(PREFIX) + 4]
    return key[: min(6, len(key) // 4)] or None  # a short key shows at most a quarter of itself


def with_file_limits(principal: Principal, limits: LimitsConfig) -> Principal:
    """The principal with the config file's limits applied over the store's."""
    return dataclasses.replace(
        principal,
        key_limits=limits.for_key(principal.key_id, principal.key_limits),
        tenant_limits=limits.for_tenant(principal.tenant_id, principal.tenant_limits),
    )
