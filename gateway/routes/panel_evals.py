"""The panel's evals page (/admin/ui/evals): the eval sets a panel user may see, each with its runs'
scores per model version as an inline SVG line (no JavaScript) and the regression alerts
(docs/orchestration.md "Self-monitoring"). Sets are created and run through /admin/evals."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.auth.identities import AdminIdentities
from gateway.http.client_address import TrustedProxies
from gateway.routes.panel import panel_base, render
from gateway.services.eval_runs import EvalRuns
from gateway.store.evals import EvalRunRow

# The chart's size in SVG units, and how many of a set's latest runs it draws.
WIDTH, HEIGHT, RUNS = 600, 120, 30


def panel_evals_router(
    identities: AdminIdentities,
    evals: EvalRuns,
    *,
    proxies: TrustedProxies | None = None,
    cookie_secure: str = "auto",
) -> APIRouter:
    panel, router = panel_base(identities, proxies, cookie_secure)

    @router.get("/evals")
    async def evals_page(request: Request) -> Response:
        identity, csrf = await panel.who(request)
        rows = await evals.store.sets(every_tenant=True)
        shown = [
            row
            for row in rows
            if identity.all_tenants or (row.tenant_id and identity.sees_tenant(row.tenant_id))
        ]
        sets = []
        for row in shown:
            runs = await evals.store.runs(row.id, limit=RUNS)
            sets.append(
                {"id": row.id, "name": row.name, "model": row.model, "tenant": row.tenant_id, **chart(runs)}
            )
        return render(request, "evals.html", csrf=csrf, sets=sets, width=WIDTH, height=HEIGHT)

    return router


def chart(runs: list[EvalRunRow]) -> dict[str, Any]:
    """The runs' points (x across the width, y from the score: 1 at the top), a row per version with
    its latest score, and the latest run's alert."""
    step = WIDTH / max(len(runs) - 1, 1)
    points = [
        {"x": round(i * step, 1), "y": round(HEIGHT - run.score * HEIGHT, 1), "run": run}
        for i, run in enumerate(runs)
    ]
    versions: dict[str, dict[str, Any]] = {}
    for run in runs:
        versions[run.version] = {
            "version": run.version,
            "score": run.score,
            "runs": versions.get(run.version, {}).get("runs", 0) + 1,
        }
    return {
        "points": points,
        "line": " ".join(f"{p['x']},{p['y']}" for p in points),
        "versions": list(versions.values()),
        "latest": runs[-1] if runs else None,
    }
