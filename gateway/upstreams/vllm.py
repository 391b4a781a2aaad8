"""A vLLM OpenAI server as an upstream: everything the Upstream interface offers, over HTTP.

Beyond OpenAI's API it has /health, /tokenize and /metrics, and takes the continuation requests
failover sends (`continue_final_message`): its capabilities say so.
"""

from __future__ import annotations

import time
from typing import ClassVar

import httpx

from gateway.upstreams.http_api import HttpApi, HttpUpstream, probe_failure, served_model
from gateway.upstreams.interface import Capabilities, ProbeFailed, UpstreamSpec

VLLM = Capabilities(
    continues_streams=True,
    counts_tokens=True,
    serves_metrics=True,
    has_health_endpoint=True,
    joins_catalogue=True,
    serves_messages=True,
    serves_responses=True,
)

# A keep-alive connection the engine had just closed: the deep check asks once more, on a fresh one.
_STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class VllmUpstream(HttpUpstream):
    """A vLLM server. The pooled client is shared by every request the gateway relays; `probes`
    (the health probes' own client) carries its health checks, when given."""

    capabilities: ClassVar[Capabilities] = VLLM

    def __init__(
        self, spec: UpstreamSpec, client: httpx.AsyncClient, probes: httpx.AsyncClient | None = None
    ) -> None:
        # No key: vLLM's probes and scrapes send none.
        super().__init__(spec, HttpApi(spec.base_url, client), HttpApi(spec.base_url, probes or client))

    async def is_healthy(self, timeout_s: float) -> bool:
        return await self._probes.answers("/health", timeout_s)

    async def deep_check(self, model: str | None, *, generate: bool) -> str:
        """/health, then its model list, then (when `generate`) a one-token completion: a dead
        engine fails the first, a wedged one (HTTP answering, its core not) the last."""
        try:
            try:
                return await self._check(model, generate)
            except _STALE_CONNECTION:
                # Once more, so that a race with the engine closing it does not flap readiness; a
                # hang is not retried (the caller's clock ends it).
                return await self._check(model, generate)
        except httpx.HTTPError as exc:
            raise probe_failure(exc) from exc

    async def _check(self, model: str | None, generate: bool) -> str:
        health = await self._probes.get("/health")
        if health.status_code != 200:
            raise ProbeFailed(f"/health answered {health.status_code}")
        served = served_model(await self._probes.get("/v1/models"), model)
        if not generate:
            return served
        answer = await self._probes.post(
            "/v1/completions",
            {"model": served, "prompt": "ok", "max_tokens": 1, "temperature": 0},
            headers={"x-request-id": f"tantra-health-{time.monotonic_ns()}"},
        )
        if answer.status_code == 404:
            # A pooling model (an embedding engine): vLLM registers no generation routes for it,
            # so its core is proven by embedding one input instead.
            return await self._embed_once(served)
        if answer.status_code != 200:
            raise ProbeFailed(f"a one-token completion answered {answer.status_code}")
        try:
            choices = answer.json().get("choices")
        except (ValueError, AttributeError):
            choices = None
        if not choices:
            raise ProbeFailed("a one-token completion came back without choices")
        return served

    async def _embed_once(self, served: str) -> str:
        answer = await self._probes.post(
            "/v1/embeddings",
            {"model": served, "input": "ok"},
            headers={"x-request-id": f"tantra-health-{time.monotonic_ns()}"},
        )
        if answer.status_code != 200:
            raise ProbeFailed(f"a one-input embedding answered {answer.status_code}")
        return served

    async def count_tokens(self, model: str, text: str, timeout_s: float) -> int | None:
        """vLLM's /tokenize count of `text`, or None."""
        payload = {"model": model, "prompt": text, "add_special_tokens": False}
        try:
            response = await self._api.post("/tokenize", payload, timeout_s=timeout_s, headers={})
            count = response.json().get("count") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return count if isinstance(count, int) else None

    async def scrape_metrics(self, timeout_s: float) -> str | None:
        """Through the probes' client: a scrape that queued behind the streams for a connection
        would show a loaded engine as down (`tantra_engine_scrape_up 0`) exactly when it matters."""
        try:
            response = await self._probes.get("/metrics", timeout_s)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None


class AdapterCallFailed(Exception):
    """vLLM refused to load or unload a LoRA adapter (its answer's status and text)."""


async def load_lora(upstream: VllmUpstream, name: str, path: str, timeout_s: float = 60.0) -> None:
    """vLLM's runtime adapter loading (VLLM_ALLOW_RUNTIME_LORA_UPDATING=1 on the engine): `name`
    becomes a model of the engine. An adapter already loaded under that name is not an error."""
    answer = await upstream._api.post(
        "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path}, timeout_s=timeout_s, headers={}
    )
    if answer.status_code != 200 and "already been loaded" not in answer.text:
        raise AdapterCallFailed(f"{answer.status_code}: {answer.text[:300]}")


async def unload_lora(upstream: VllmUpstream, name: str, timeout_s: float = 30.0) -> None:
    answer = await upstream._api.post(
        "/v1/unload_lora_adapter", {"lora_name": name}, timeout_s=timeout_s, headers={}
    )
    if answer.status_code not in (200, 404):
        raise AdapterCallFailed(f"{answer.status_code}: {answer.text[:300]}")
