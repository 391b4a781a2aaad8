"""The chart's own programs (helm/tantra/files/) run for real: the credential generator against a
stand-in of the Kubernetes Secrets API (no cluster here), the engine's preStop drain against a
stand-in of vLLM's /metrics, and `helm test`'s smoke test against a real gateway (its store, Redis,
admin API and keys) in front of a stand-in engine (no vLLM this round; the engine-level run is
`smoke_test.py --api <gateway_url>` on the session's `gateway_url`)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.app import create_app
from gateway.settings.schema import Settings
from tests.deploy.support import CHART
from tests.security.fake_engine import MODEL, FakeEngine
from tests.servers import ThreadedServer

FILES = CHART / "files"
SECRETS = "/api/v1/namespaces/llm/secrets"


class SecretsApi:
    """The few calls of Kubernetes' Secrets API the generator makes, over plain HTTP, with a token."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
                api.calls.append((self.command, self.path, self.headers.get("Content-Type", "")))
                if self.headers.get("Authorization") != "Bearer sa-token":
                    return self._answer(401, {"kind": "Status", "code": 401})
                name = self.path.rsplit("/", 1)[1]
                if self.command == "POST" and self.path == SECRETS:
                    api.secrets[body["metadata"]["name"]] = body
                    return self._answer(201, body)
                if name not in api.secrets:
                    return self._answer(404, {"kind": "Status", "code": 404})
                if self.command == "PATCH":
                    api.secrets[name]["data"].update(body["data"])
                return self._answer(200, api.secrets[name])

            do_GET = do_POST = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def decoded(self, name: str) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in self.secrets[name]["data"].items()}


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[SecretsApi, Callable[..., subprocess.CompletedProcess[str]]]]:
    api = SecretsApi()
    token = tmp_path / "token"
    token.write_text("sa-token\n")

    def generate(*keys: str, adopt: str = "") -> subprocess.CompletedProcess[str]:
        extra = ["--adopt-from", adopt] if adopt else []
        command = [
            sys.executable,
            str(FILES / "generate_secrets.py"),
            "--api",
            api.url,
            "--token-file",
            str(token),
        ]
        command += [
            "--namespace",
            "llm",
            "--name",
            "tantra-generated",
            "--label",
            "app=tantra",
            *extra,
            *keys,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    yield api, generate
    api.server.shutdown()


def test_generator_creates_the_secret_once_and_never_changes_a_value(kube: Any) -> None:
    api, generate = kube
    first = generate("postgres-password=hex", "admin-key=admin")
    assert first.returncode == 0, first.stderr
    created = api.decoded("tantra-generated")
    assert len(created["postgres-password"]) == 48 and created["postgres-password"].isalnum()
    assert created["admin-key"].startswith("sk-admin-") and len(created["admin-key"]) >= 24
    assert api.secrets["tantra-generated"]["metadata"]["labels"] == {"app": "tantra"}
    # A second sync (Argo CD runs PreSync hooks on every sync): nothing written.
    writes = len([c for c in api.calls if c[0] != "GET"])
    again = generate("postgres-password=hex", "admin-key=admin")
    assert "nothing changed" in again.stdout
    assert len([c for c in api.calls if c[0] != "GET"]) == writes
    assert api.decoded("tantra-generated") == created


def test_generator_adds_only_the_missing_keys(kube: Any) -> None:
    api, generate = kube
    generate("postgres-password=hex")
    password = api.decoded("tantra-generated")["postgres-password"]
    added = generate("postgres-password=hex", "admin-key=admin")
    assert added.returncode == 0 and "added ['admin-key']" in added.stdout
    assert ("PATCH", f"{SECRETS}/tantra-generated", "application/merge-patch+json") in api.calls
    assert api.decoded("tantra-generated")["postgres-password"] == password


def test_generator_keeps_the_values_of_a_release_from_before_the_hook(kube: Any) -> None:
    """Chart 0.1.0 kept its generated password in the gateway's Secret: an upgrade must keep it."""
    api, generate = kube
    old = {"postgres-password": base64.b64encode(b"old-password").decode()}
    api.secrets["tantra-gateway"] = {"metadata": {"name": "tantra-gateway"}, "data": old}
    done = generate("postgres-password=hex", "admin-key=admin", adopt="tantra-gateway")
    assert done.returncode == 0, done.stderr
    kept = api.decoded("tantra-generated")
    assert kept["postgres-password"] == "old-password" and kept["admin-key"].startswith("sk-admin-")


def test_generator_fails_loudly_without_rights(kube: Any, tmp_path: Path) -> None:
    api, generate = kube
    (tmp_path / "token").write_text("wrong")
    refused = generate("admin-key=admin")
    assert refused.returncode != 0 and "401" in refused.stderr
    assert not api.secrets


class Metrics:
    """vLLM's /metrics with a scripted sequence of running/waiting counts (the last one repeats)."""

    def __init__(self, counts: list[tuple[int, int]]) -> None:
        self.counts = counts
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                running, waiting = metrics.counts.pop(0) if len(metrics.counts) > 1 else metrics.counts[0]
                label = '{engine="0",model_name="m"}'
                body = (
                    "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                    f"vllm:num_requests_running{label} {running}.0\n"
                    f"vllm:num_requests_waiting{label} {waiting}.0\n"
                    f"vllm:num_requests_waiting_by_reason{label} 9.0\n"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _drain(url: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    command = [sys.executable, str(FILES / "engine_drain.py"), "--url", url, "--sleep", "0.2"]
    command += ["--timeout", str(timeout), "--poll", "0.1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return result, time.monotonic() - started


def test_engine_drain_waits_for_running_and_waiting_requests() -> None:
    metrics = Metrics([(2, 1), (1, 1), (1, 0), (0, 0), (0, 0)])
    result, took = _drain(metrics.url, timeout=20)
    assert result.returncode == 0 and "no request running or waiting" in result.stdout
    assert took < 10 and metrics.counts == [(0, 0)]
    metrics.server.shutdown()


def test_engine_drain_gives_up_at_its_timeout() -> None:
    metrics = Metrics([(3, 0)])
    result, took = _drain(metrics.url, timeout=1)
    assert result.returncode == 0 and "3 requests still in flight after 1 s" in result.stdout
    assert 1 <= took < 10
    metrics.server.shutdown()


def test_engine_drain_returns_at_once_when_the_engine_is_gone() -> None:
    from tests.servers import free_port

    result, took = _drain(f"http://127.0.0.1:{free_port()}", timeout=30)
    assert result.returncode == 0 and "no longer answers" in result.stdout and took < 10


class Engine(FakeEngine):
    """The security tests' stand-in engine, its model listed as vLLM lists it (with `created`)."""

    async def _models(self, _: Request) -> Response:
        model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "vllm"}
        return JSONResponse({"object": "list", "data": [model]})


def _smoke(gateway: str, admin_key_file: Path, model: str = MODEL) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        str(FILES / "smoke_test.py"),
        "--api",
        gateway,
        "--admin",
        gateway,
        "--model",
        model,
    ]
    env = {**os.environ, "TANTRA_ADMIN_KEY_FILE": str(admin_key_file)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_helm_test_passes_on_a_working_gateway_and_leaves_no_key(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "admin-key"
    key_file.write_text(admin_key + "\n")
    with (
        ThreadedServer(Engine().app) as engine,
        ThreadedServer(create_app(gateway_settings(engine_url=engine.url))) as gateway,
    ):
        first = _smoke(gateway.url, key_file)
        assert first.returncode == 0, first.stderr
        assert f"ok: {MODEL} listed, chat answered (6 tokens)" in first.stdout
        again = _smoke(gateway.url, key_file)  # the tenant is reused, a new key made
        assert again.returncode == 0, again.stderr
        headers = {"Authorization": f"Bearer {admin_key}"}
        tenants = httpx.get(f"{gateway.url}/admin/tenants", headers=headers).json()["data"]
        assert len([t for t in tenants if t["name"] == "helm-test"]) == 1
        (tenant,) = [t for t in tenants if t["name"] == "helm-test"]
        keys = httpx.get(f"{gateway.url}/admin/keys", params={"tenant_id": tenant["id"]}, headers=headers)
        states = [key["status"] for key in keys.json()["data"]]
        assert states == ["revoked", "revoked"], states

        missing = _smoke(gateway.url, key_file, model="no-such-model")
        assert missing.returncode != 0 and "not no-such-model" in missing.stderr
        key_file.write_text("wrong-admin-key")
        refused = _smoke(gateway.url, key_file)
        assert refused.returncode != 0 and "401" in refused.stderr
