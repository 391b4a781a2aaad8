"""The API's description: a valid OpenAPI document, and schemathesis against a live gateway on the
real engine finds no 5xx and no answer that breaks its own schema."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from gateway import Settings, create_app
from tests.servers import ThreadedServer

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def open_gateway(
    engine_url: str, gateway_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A gateway of its own (its own store: schemathesis creates tenants and keys) with auth off,
    so generated requests reach the engine; the admin routes take the admin key it sends."""
    database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('schemathesis') / 'tantra.db'}"
    app = create_app(gateway_settings(engine_url=engine_url, database_url=database, auth_enabled=False))
    with ThreadedServer(app) as server:
        yield server.url


def test_openapi_document_is_valid_and_complete(open_gateway: str) -> None:
    document = httpx.get(open_gateway + "/openapi.json").json()
    validate(document)
    paths = document["paths"]
    expected = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/models/{model}", "/livez"}
    expected |= {"/v1/audio/speech", "/v1/messages", "/v1/messages/count_tokens"}
    assert expected | {"/healthz", "/readyz", "/metrics", "/admin/keys"} <= set(paths)
    chat = paths["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["examples"]
    ok = chat["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
    assert "data: [DONE]" in ok["text/event-stream"]["examples"]["stream"]["value"]
    envelope = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path} has no summary"
            error = operation["responses"]["500"]["content"]["application/json"]["schema"]
            if path.startswith("/v1/messages"):  # Anthropic's Messages API answers in its own envelope
                assert error["properties"]["type"] == {"type": "string", "enum": ["error"]}
                continue
            assert error == envelope
            assert "422" not in operation["responses"], f"{method} {path}: 422 is answered as 400"
    assert httpx.get(open_gateway + "/docs").status_code == 200


def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    open_gateway: str, admin_key: str, tmp_path: Path
) -> None:
    """schemathesis' own runner (examples, coverage, fuzzing and stateful phases) against the live
    gateway; auth is off there, and the admin key opens /admin. Its hooks cap generated requests
    at a few tokens (see schemathesis_hooks.py)."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        open_gateway + "/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance",
        "--max-examples",
        "8",
        "--request-timeout",
        "120",
        "--header",
        f"Authorization: Bearer {admin_key}",
        "--generation-deterministic",
        "--no-color",
    ]
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.gateway.schemathesis_hooks", "PYTHONPATH": str(root)}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-30000:] + done.stderr[-2000:]
