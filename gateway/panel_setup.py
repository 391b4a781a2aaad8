"""The control panel's wiring (issue 21; docs/governance.md "Control panel"): its pages under
/admin/ui for named admin users, each optional page given its source, and what the navigation
shows (a link only to a page this gateway serves)."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.auth.oidc import OidcClient
from gateway.components import Components
from gateway.governance import Governance
from gateway.http.client_address import TrustedProxies
from gateway.routes.panel import PanelNav, PanelSources, panel_router
from gateway.routes.panel_memory import MemoryPanelSource
from gateway.routes.panel_system import SystemView
from gateway.settings.load import redacted_dump
from gateway.store.browse import ObjectBrowser
from gateway.store.gdpr_store import GdprStore
from gateway.store.memory_recalls import RecallStore


def include_panel(app: FastAPI, parts: Components, governed: Governance, *, pii: bool) -> None:
    sso = parts.settings.oidc_config()  # single sign-on, when a provider is configured
    memory = _memory_source(parts)
    app.state.panel_nav = PanelNav(
        pii=pii,
        retention=governed.retention is not None,
        memory=memory is not None,
        evals=governed.evals is not None,
    )
    app.include_router(
        panel_router(
            parts.access.identities,
            parts.access.key_admin,
            parts.shared.store,
            proxies=TrustedProxies(parts.settings.trusted_proxies),
            cookie_secure=parts.settings.admin_cookie_secure,
            sources=PanelSources(
                feedback=parts.feedback,
                oidc=OidcClient(sso) if sso is not None else None,
                system=SystemView(
                    parts.pool.snapshot,
                    lambda: redacted_dump(parts.live.current),
                    lambda: parts.reloader.history,
                ),
                gdpr=GdprStore(parts.shared.database),
                gdpr_jobs=governed.gdpr,
                objects=ObjectBrowser(parts.shared.database),
                memory=memory,
            ),
        )
    )


def _memory_source(parts: Components) -> MemoryPanelSource | None:
    """The memory page's reads, when memory is on. The entity graph shows once a graph store
    implementing `MemoryGraphView` is passed as `graph` (docs/memory.md)."""
    if parts.memory is None:
        return None
    return MemoryPanelSource(parts.memory.core, RecallStore(parts.shared.database))
