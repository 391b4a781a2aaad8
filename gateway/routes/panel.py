"""The admin control panel under /admin/ui (issue 21): server-rendered pages for named admin users.

Jinja2 templates (autoescaped) rendered on the server, no JavaScript and nothing from a CDN: the
panel works offline, every action is a plain HTML form (keyboard and screen readers work as with
any form), and there is no build step. Each page reads the session cookie; each POST also checks
the session's CSRF token (and the Origin header when the browser sends one). What a role may do is
decided in `gateway.auth.identities.Identity`, for the buttons shown and again for the POST itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway.auth import KeyAdmin
from gateway.auth.identities import AdminIdentities, BadCsrf, Identity, NotLoggedIn, csrf_matches
from gateway.auth.oidc import OidcClient
from gateway.errors import APIError, InvalidRequest
from gateway.http.client_address import TrustedProxies, client_address
from gateway.services.feedback import FeedbackService
from gateway.store import AuditContext, Store
from gateway.store.views import audit_view

if TYPE_CHECKING:
    from gateway.routes.panel_memory import MemoryPanelSource
    from gateway.routes.panel_system import SystemView
    from gateway.services.gdpr import Gdpr
    from gateway.store.browse import ObjectBrowser
    from gateway.store.gdpr_store import GdprStore

PREFIX = "/admin/ui"
SESSION_COOKIE = "tantra_admin_session"
LOGIN_CSRF_COOKIE = "tantra_admin_login_csrf"
# A single sign-on session's ID token: the `id_token_hint` of the provider's logout (panel_oidc.py).
ID_TOKEN_COOKIE = "tantra_admin_id_token"

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "panel_templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


class Panel:
    """What every page handler shares: the session lookup, CSRF, rendering and the audit context."""

    def __init__(self, identities: AdminIdentities, *, proxies: TrustedProxies, cookie_secure: str) -> None:
        self.identities = identities
        self.proxies = proxies
        self.cookie_secure = cookie_secure
        # Single sign-on (panel_oidc.py), when it is configured: a link on the login page, and the
        # provider's own logout after the panel's.
        self.sso = False
        self.oidc: OidcClient | None = None

    async def who(self, request: Request) -> tuple[Identity, str]:
        found = await self.identities.session(request.cookies.get(SESSION_COOKIE))
        if found is None:
            raise NotLoggedIn()
        request.state.panel_identity = found[0]
        return found

    async def acting(self, request: Request) -> tuple[Identity, Mapping[str, Any]]:
        """The identity behind a state-changing POST, and its form, once its CSRF token matched."""
        identity, csrf = await self.who(request)
        self.same_origin(request)
        form = await request.form()
        token = form.get("csrf_token")
        if not csrf_matches(csrf, token if isinstance(token, str) else None):
            raise BadCsrf()
        return identity, form

    @staticmethod
    def same_origin(request: Request) -> None:
        """A cross-site form post: refused even before SameSite=Strict and the token are relied on."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise BadCsrf()

    def audit(self, request: Request, identity: Identity | None = None) -> AuditContext:
        return AuditContext(
            actor=identity.actor if identity is not None else "anonymous",
            request_id=getattr(request.state, "request_id", None),
            client_ip=client_address(request),
        )

    def secure(self, request: Request) -> bool:
        if self.cookie_secure != "auto":
            return self.cookie_secure == "always"
        if request.url.scheme == "https":
            return True
        peer = request.client.host if request.client else None
        return self.proxies.trusts(peer) and request.headers.get("x-forwarded-proto", "") == "https"

    def set_cookie(self, response: Response, request: Request, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )


def render(
    request: Request, template: str, status: int = 200, *, csrf: str | None = None, **values: Any
) -> HTMLResponse:
    identity = getattr(request.state, "panel_identity", None)
    nav = getattr(request.app.state, "panel_nav", None) or PanelNav()
    html = _TEMPLATES.get_template(template).render(me=identity, csrf=csrf, prefix=PREFIX, nav=nav, **values)
    # Pages can show one-time secrets and tenants' data: never cached, never framed.
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "cache-control": "no-store",
            "x-frame-options": "DENY",
            "content-security-policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            "referrer-policy": "same-origin",
        },
    )


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(PREFIX + path, status_code=303)


class PanelRoute(APIRoute):
    """A panel route: errors become HTML pages with their status (a GET without a session goes to
    the login page), not the API's JSON envelope; bad form or query values are a 400, never a 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except NotLoggedIn:
                if request.method == "GET":
                    return see_other("/login")
                return render(request, "error.html", 401, message="Your session has ended; log in again.")
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                return render(request, "error.html", 400, message=first.get("msg", "Invalid request."))
            except APIError as exc:
                return render(request, "error.html", exc.status, message=exc.message)

        return handle


@dataclass(frozen=True)
class PanelNav:
    """The optional pages the navigation links to: only those this gateway serves."""

    pii: bool = False
    retention: bool = False
    memory: bool = False
    evals: bool = False


@dataclass(frozen=True)
class PanelSources:
    """What the optional pages read, each page left out without its source: feedback, single
    sign-on, the system page's views, the GDPR registry's counts and its export and erasure jobs,
    the stored objects' views, memory."""

    feedback: FeedbackService | None = None
    oidc: OidcClient | None = None
    system: SystemView | None = None
    gdpr: GdprStore | None = None
    gdpr_jobs: Gdpr | None = None
    objects: ObjectBrowser | None = None
    memory: MemoryPanelSource | None = None


def panel_base(
    identities: AdminIdentities, proxies: TrustedProxies | None, cookie_secure: str
) -> tuple[Panel, APIRouter]:
    """The session handling and router of a set of panel pages: the panel's own, and those a feature
    serves only when it is on (retention, PII)."""
    panel = Panel(identities, proxies=proxies or TrustedProxies(), cookie_secure=cookie_secure)
    return panel, APIRouter(prefix=PREFIX, route_class=PanelRoute, include_in_schema=False)


def panel_router(
    identities: AdminIdentities,
    keys: KeyAdmin,
    store: Store,
    *,
    proxies: TrustedProxies | None = None,
    cookie_secure: str = "auto",
    sources: PanelSources | None = None,
) -> APIRouter:
    from gateway.routes.panel_data import add_data_page
    from gateway.routes.panel_feedback import add_feedback_page
    from gateway.routes.panel_memory import add_memory_page
    from gateway.routes.panel_objects import add_object_pages
    from gateway.routes.panel_oidc import add_oidc_login
    from gateway.routes.panel_pages import add_audit_page, add_tenant_pages
    from gateway.routes.panel_system import add_system_page
    from gateway.routes.panel_usage import add_usage_page
    from gateway.routes.panel_users import add_users_page

    panel, router = panel_base(identities, proxies, cookie_secure)
    given = sources or PanelSources()
    _add_login(router, panel)
    if given.oidc is not None:
        add_oidc_login(router, panel, given.oidc)
    add_tenant_pages(router, panel, keys, store)
    add_audit_page(router, panel, identities)
    add_feedback_page(router, panel, given.feedback)
    add_usage_page(router, panel, store)
    add_users_page(router, panel, identities, store)
    if given.system is not None:
        add_system_page(router, panel, given.system)
    if given.gdpr is not None:
        add_data_page(router, panel, store, given.gdpr, given.gdpr_jobs)
    if given.objects is not None:
        add_object_pages(router, panel, given.objects)
    if given.memory is not None:
        add_memory_page(router, panel, store, given.memory)
    return router


def _add_login(router: APIRouter, panel: Panel) -> None:
    @router.get("")
    @router.get("/")
    async def home(request: Request) -> Response:
        identity, _ = await panel.who(request)
        if identity.all_tenants or identity.tenant_id is None:
            return see_other("/tenants")
        return see_other(f"/tenants/{identity.tenant_id}")

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        token = secrets.token_urlsafe(32)
        response = render(request, "login.html", csrf=token, sso=panel.sso)
        # Double-submit: the login form's token must match this cookie (there is no session yet).
        panel.set_cookie(response, request, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    @router.post("/login")
    async def login(request: Request) -> Response:
        panel.same_origin(request)
        form = await request.form()
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        token = form.get("csrf_token")
        if not expected or not csrf_matches(expected, token if isinstance(token, str) else None):
            raise BadCsrf()
        username, password = str(form.get("username", ""))[:100], str(form.get("password", ""))[:1024]
        if not username or not password:
            raise InvalidRequest("Give a username and a password.")
        opened = await panel.identities.login(username, password, audit=panel.audit(request))
        if opened is None:
            return render(
                request,
                "login.html",
                401,
                csrf=expected,
                error="Wrong username or password.",
                username=username,
                sso=panel.sso,
            )
        response = see_other("/")
        ttl = int(panel.identities.ttl.total_seconds())
        panel.set_cookie(response, request, SESSION_COOKIE, opened.token, max_age=ttl)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
        return response

    _add_logout(router, panel)


def _add_logout(router: APIRouter, panel: Panel) -> None:
    @router.post("/logout")
    async def logout(request: Request) -> Response:
        identity, _ = await panel.acting(request)
        token = request.cookies.get(SESSION_COOKIE, "")
        await panel.identities.logout(token, identity, audit=panel.audit(request, identity))
        response: Response = see_other("/login")
        hint = request.cookies.get(ID_TOKEN_COOKIE)
        if hint and panel.oidc is not None:
            # RP-initiated logout: the provider ends its own session, then sends the browser back.
            given = panel.oidc.config.redirect_url
            login = str(request.base_url).rstrip("/") + PREFIX + "/login"
            back = given.removesuffix("/oidc/callback") if given else login
            provider = await panel.oidc.logout_url(hint, back)
            if provider is not None:
                response = RedirectResponse(provider, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        response.delete_cookie(ID_TOKEN_COOKIE, path=PREFIX)
        return response


def audit_rows(events: list[Any]) -> list[dict[str, Any]]:
    return [audit_view(e) for e in events]
