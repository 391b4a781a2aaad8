"""The panel's admin users page (/admin/ui/users), the owner's: every named admin user with their
role, tenant, sign-in kind and last login; forms to add one (a password of at least the minimum
length; a tenant admin needs its tenant) and to disable or enable one (a disabled user's sessions end
at once). An owner cannot disable themselves, so the panel always keeps someone who can undo it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.auth.identities import AdminIdentities, Forbidden, Identity
from gateway.errors import InvalidRequest, NotFound
from gateway.routes.panel import Panel, render, see_other
from gateway.store import Store
from gateway.store.admin_users import ROLES, AlreadyExists
from gateway.store.repository import NotFoundInStore


def _require_owner(identity: Identity) -> None:
    if identity.role != "owner":
        raise Forbidden("Only an owner manages admin users.")


def add_users_page(router: APIRouter, panel: Panel, identities: AdminIdentities, store: Store) -> None:
    @router.get("/users")
    async def users_page(request: Request) -> Response:
        identity, csrf = await panel.who(request)
        _require_owner(identity)
        users = await identities.store.list_users()
        tenants = await store.list_tenants()
        return render(request, "users.html", csrf=csrf, users=users, tenants=tenants, roles=ROLES)

    @router.post("/users")
    async def create_user(request: Request) -> Response:
        identity, form = await panel.acting(request)
        _require_owner(identity)
        username = str(form.get("username", "")).strip()[:100]
        role = str(form.get("role", ""))
        tenant_id = str(form.get("tenant_id", "")).strip() or None
        if not username:
            raise InvalidRequest("Give the new admin user a username.", param="username")
        if role not in ROLES:
            raise InvalidRequest(f"The role must be one of {', '.join(ROLES)}.", param="role")
        tenant_id = tenant_id if role == "tenant_admin" else None
        if role == "tenant_admin" and not await _tenant_exists(store, tenant_id):
            raise InvalidRequest("A tenant admin needs an existing tenant.", param="tenant_id")
        try:
            await identities.create_user(
                username,
                str(form.get("password", "")),
                role,
                tenant_id,
                audit=panel.audit(request, identity),
            )
        except AlreadyExists as exc:
            raise InvalidRequest(str(exc), param="username") from exc
        except ValueError as exc:  # the password's length, as hash_password words it
            raise InvalidRequest(f"Cannot create the user: {exc}.", param="password") from exc
        return see_other("/users")

    @router.post("/users/{user_id}/disabled")
    async def set_disabled(request: Request, user_id: str) -> Response:
        identity, form = await panel.acting(request)
        _require_owner(identity)
        disabled = str(form.get("disabled", "")) == "true"
        if disabled and user_id == identity.user_id:
            raise InvalidRequest("You cannot disable yourself; another owner can.", param="user_id")
        try:
            await identities.store.set_disabled(user_id, disabled, audit=panel.audit(request, identity))
        except NotFoundInStore as exc:
            raise NotFound(str(exc)) from exc
        return see_other("/users")


async def _tenant_exists(store: Store, tenant_id: str | None) -> bool:
    if tenant_id is None:
        return False
    try:
        await store.get_tenant(tenant_id)
    except NotFoundInStore:
        return False
    return True
