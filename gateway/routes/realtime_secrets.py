"""Ephemeral client secrets of the Realtime API, in OpenAI's shapes (gateway/auth/ephemeral.py).

GA: POST /v1/realtime/client_secrets with `{expires_after: {anchor: "created_at", seconds},
session: {...}}`, answered `{value: "ek_...", expires_at, session}`. Beta: POST
/v1/realtime/sessions with the session configuration itself (and `client_secret.expires_after`),
answered with the session and `client_secret: {value, expires_at}`. Either needs an API key (an
ephemeral secret cannot mint another); the session's model is checked as a connect checks it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from gateway.auth import Principal
from gateway.auth.ephemeral import DEFAULT_TTL_S, MAX_TTL_S, MIN_TTL_S, EphemeralKeys
from gateway.errors import APIError, InvalidRequest
from gateway.http.client_address import client_address
from gateway.protocol.realtime import SessionUpdate, TranscriptionSessionUpdate
from gateway.realtime import ga
from gateway.realtime.events import new_id
from gateway.routes.realtime import model_for
from gateway.upstreams import ModelCatalog


def realtime_secrets_router(
    catalog: ModelCatalog,
    authenticate: Callable[[Mapping[str, str], str | None], Awaitable[Principal]],
    keys: EphemeralKeys,
) -> APIRouter:
    router = APIRouter()

    async def mint(request: Request, *, beta: bool) -> Response:
        try:
            principal = await authenticate(request.headers, client_address(request))
            body = await _body(request)
            expiry = (body.get("client_secret") or {}) if beta else body
            ttl_s = _ttl(expiry.get("expires_after") if isinstance(expiry, dict) else None)
            session = {k: v for k, v in body.items() if k != "client_secret"} if beta else body.get("session")
            session = _session(session if session is not None else {}, ga_shape=not beta)
            session["model"] = await model_for(catalog, principal, _model(session))
            value, expires_at = await keys.mint(principal.key_id, session, ttl_s)
        except APIError as exc:
            return exc.response()
        described = {"object": "realtime.session", "id": new_id("sess"), **session}
        if beta:
            return JSONResponse({**described, "client_secret": {"value": value, "expires_at": expires_at}})
        return JSONResponse({"value": value, "expires_at": expires_at, "session": described})

    @router.post("/v1/realtime/client_secrets")
    async def client_secrets(request: Request) -> Response:
        return await mint(request, beta=False)

    @router.post("/v1/realtime/sessions")
    async def beta_sessions(request: Request) -> Response:
        return await mint(request, beta=True)

    return router


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return body


def _ttl(expires_after: Any) -> int:
    """`expires_after: {anchor: "created_at", seconds}`: 60 s when not given, 10 to 7200."""
    if expires_after is None:
        return DEFAULT_TTL_S
    if not isinstance(expires_after, dict) or expires_after.get("anchor", "created_at") != "created_at":
        raise InvalidRequest("`expires_after.anchor` must be `created_at`.", param="expires_after.anchor")
    seconds = expires_after.get("seconds", DEFAULT_TTL_S)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not MIN_TTL_S <= seconds <= MAX_TTL_S:
        raise InvalidRequest(
            f"`expires_after.seconds` must be an integer from {MIN_TTL_S} to {MAX_TTL_S}.",
            param="expires_after.seconds",
        )
    return seconds


def _model(session: dict[str, Any]) -> str | None:
    model = session.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("`session.model` must be a string.", param="session.model")
    return model


def _session(session: Any, *, ga_shape: bool) -> dict[str, Any]:
    """The configuration the secret's sessions open with (their first `session.update`), checked
    now so that a mistake is a 400 here, not an `error` event on every connect."""
    if not isinstance(session, dict):
        raise InvalidRequest("`session` must be a JSON object.", param="session")
    if ga_shape:
        session = {"type": "realtime", **session}
        if session["type"] not in ("realtime", "transcription"):
            raise InvalidRequest(
                "`session.type` must be `realtime` or `transcription`.", param="session.type"
            )
    event = {"type": "session.update", "session": session}
    event = ga.client_event(event) if ga_shape else event
    shape = TranscriptionSessionUpdate if event["type"] == "transcription_session.update" else SessionUpdate
    try:
        shape.model_validate(event["session"])
    except ValidationError as exc:
        where = str(exc.errors()[0]["loc"][0])  # the field (a union names its branches after it)
        raise InvalidRequest(
            f"`session.{where}`: {exc.errors()[0]['msg']}", param=f"session.{where}"
        ) from None
    return dict(session)
