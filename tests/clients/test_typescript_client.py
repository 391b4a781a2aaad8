"""The TypeScript client (clients/typescript): its request bodies against the gateway's OpenAPI
description, and its Node test suite (`npm ci && npm run build && node --test`, in a temporary copy)
against the session's real gateway and engine. Without node or npm the suite is skipped, loudly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import Settings, create_app

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"


def _interfaces() -> dict[str, set[str]]:
    """Field names of each interface in src/types.ts, with those of the interface it extends."""
    source = (PACKAGE / "src" / "types.ts").read_text()
    found: dict[str, set[str]] = {}
    for name, parent, body in re.findall(
        r"export interface (\w+)(?: extends (\w+))? \{(.*?)\n\}", source, re.S
    ):
        fields = set(re.findall(r"^\s+(\w+)\??:", body, re.M))
        found[name] = fields | found.get(parent, set())
    return found


@pytest.mark.parametrize("name", ["TenantCreate", "TenantUpdate", "KeyCreate", "KeyUpdate", "KeyRotate"])
def test_request_bodies_have_the_gateways_fields(
    gateway_settings: Callable[..., Settings], name: str
) -> None:
    schema = create_app(gateway_settings()).openapi()["components"]["schemas"][name]
    assert _interfaces()[name] == set(schema["properties"])


def _npm(tmp: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["npm", *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"npm {' '.join(args)}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.engine
def test_node_suite_against_the_real_gateway(
    gateway_url: str, api_key: str, admin_key: str, model: str, tmp_path: Path
) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        warnings.warn("node/npm not found: the TypeScript client is NOT tested", stacklevel=1)
        pytest.skip("node and npm are needed for the TypeScript client's tests")
    copy = tmp_path / "typescript"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("node_modules", "dist"))
    _npm(copy, "ci", "--no-audit", "--no-fund")
    _npm(copy, "run", "build")
    env: dict[str, Any] = {
        **os.environ,
        "TANTRA_BASE_URL": gateway_url,
        "TANTRA_API_KEY": api_key,
        "TANTRA_ADMIN_KEY": admin_key,
        "TANTRA_MODEL": model,
    }
    output = _npm(copy, "test", env=env)
    assert re.search(r"# pass [1-9]", output) and "# fail 0" in output, output
