"""The panel's single sign-on (docs/governance.md "Single sign-on (OIDC)"): `/admin/ui/login/oidc`
sends the browser to the identity provider, `/admin/ui/login/oidc/callback` takes it back and opens
the panel session of the admin identity its verified ID token names.

The pending login's cookie is `SameSite=Lax`: the callback is a navigation from the provider's site,
which a `Strict` cookie would not follow. For the same reason the callback answers with a page that
moves on to the panel itself (a same-site navigation, so the `Strict` session cookie it set is sent)
rather than a redirect that would continue the provider's cross-site chain.

The verified ID token is kept in a cookie of its own (HttpOnly, `Strict`, the session's lifetime): the
panel's logout hands it to the provider's `end_session_endpoint` as `id_token_hint` (RP-initiated
logout), so leaving the panel also ends the single sign-on session there.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from gateway.auth.identities import OpenedSession, csrf_matches
from gateway.auth.oidc import OidcClient
from gateway.errors import APIError, AuthenticationFailed, InvalidRequest
from gateway.routes.panel import ID_TOKEN_COOKIE, PREFIX, SESSION_COOKIE, Panel, render
from gateway.store import AuditContext

PENDING_COOKIE = "tantra_admin_oidc"
_PATH = "/login/oidc"


def add_oidc_login(router: APIRouter, panel: Panel, oidc: OidcClient) -> None:
    panel.sso, panel.oidc = True, oidc

    def redirect_uri(request: Request) -> str:
        given = oidc.config.redirect_url
        return given or str(request.base_url).rstrip("/") + PREFIX + _PATH + "/callback"

    @router.get(_PATH)
    async def oidc_start(request: Request) -> Response:
        url, pending = await oidc.start(redirect_uri(request))
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(
            PENDING_COOKIE,
            oidc.seal(pending),
            max_age=600,
            path=PREFIX + _PATH,
            httponly=True,
            samesite="lax",
            secure=panel.secure(request),
        )
        return response

    @router.get(_PATH + "/callback")
    async def oidc_callback(request: Request) -> Response:
        audit = panel.audit(request)
        try:
            opened, hint = await _signed_in(request, panel, oidc, redirect_uri(request), audit)
        except APIError as exc:
            failed = AuditContext(actor="oidc", request_id=audit.request_id, client_ip=audit.client_ip)
            details = {"method": "oidc", "error": exc.message[:300]}
            await panel.identities.store.record(failed, "admin.login_failed", details)
            response = render(request, "error.html", exc.status, message=exc.message)
            response.delete_cookie(PENDING_COOKIE, path=PREFIX + _PATH)
            return response
        request.state.panel_identity = opened.identity
        response = render(request, "signed_in.html", next=PREFIX + "/")
        ttl = int(panel.identities.ttl.total_seconds())
        panel.set_cookie(response, request, SESSION_COOKIE, opened.token, max_age=ttl)
        if hint is not None:
            panel.set_cookie(response, request, ID_TOKEN_COOKIE, hint, max_age=ttl)
        response.delete_cookie(PENDING_COOKIE, path=PREFIX + _PATH)
        return response


async def _signed_in(
    request: Request, panel: Panel, oidc: OidcClient, redirect_uri: str, audit: AuditContext
) -> tuple[OpenedSession, str | None]:
    """The session opened, and the ID token to hint the provider's logout with."""
    pending = oidc.unseal(request.cookies.get(PENDING_COOKIE))
    query = request.query_params
    if not csrf_matches(pending.state, query.get("state")):
        raise InvalidRequest("The sign-in's state does not match the one this browser started; start again.")
    if query.get("error"):
        refused = f"{query.get('error')}: {query.get('error_description', '')}".strip(": ")
        raise AuthenticationFailed(f"The identity provider refused the sign-in ({refused[:200]}).")
    code = query.get("code")
    if not code:
        raise InvalidRequest("The identity provider sent no code.")
    user = await oidc.finish(pending, code, redirect_uri)
    return await panel.identities.login_oidc(user, audit=audit), user.id_token
