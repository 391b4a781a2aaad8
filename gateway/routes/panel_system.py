"""The panel's system page (/admin/ui/system), for the roles that see every tenant: each upstream's
circuit breaker, load and models as this replica's routing sees them now (what /health/upstreams
answers), the configuration in force with secrets masked, and this replica's reload history (SIGHUP
or a changed file: applied, with what changed and what waits for a restart, or refused, with why).
A tenant admin gets a 403: upstreams and settings are the operator's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.auth.identities import Forbidden
from gateway.routes.panel import Panel, render


class Reload(Protocol):
    """One configuration reload as `gateway.settings.reload.ReloadRecord` keeps it."""

    @property
    def at(self) -> datetime: ...
    @property
    def reason(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def changed(self) -> list[str]: ...
    @property
    def restart_only(self) -> list[str]: ...
    @property
    def problems(self) -> list[str]: ...


@dataclass(frozen=True)
class SystemView:
    """Where the page reads from (the composition root wires them: the request path imports no
    settings loader): the pool's snapshot, the settings in force with secrets masked, the reloads."""

    upstreams: Callable[[], dict[str, dict[str, Any]]]
    settings: Callable[[], dict[str, Any]]
    reloads: Callable[[], Sequence[Reload]]


def add_system_page(router: APIRouter, panel: Panel, view: SystemView) -> None:
    @router.get("/system")
    async def system_page(request: Request) -> Response:
        identity, csrf = await panel.who(request)
        if not identity.all_tenants:
            raise Forbidden("Upstreams and the configuration are the operator's.")
        upstreams = [{"name": name, **state} for name, state in sorted(view.upstreams().items())]
        settings = sorted(view.settings().items())
        return render(
            request,
            "system.html",
            csrf=csrf,
            upstreams=upstreams,
            settings=[(name, _shown(value)) for name, value in settings],
            reloads=list(reversed(view.reloads())),
        )


def _shown(value: Any) -> str:
    """A setting's value in a table cell: plain for scalars, compact JSON-ish for the rest."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)
