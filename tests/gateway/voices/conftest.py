"""A gateway for the custom-voice tests (no engine: the model list is a stand-in, nothing reaches it)
on the session's Redis, store and blob directory, with keys of two tenants."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway import Settings, create_app
from tests.audio_samples import espeak_wav
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

_tenants = itertools.count()


def _models(request: httpx.Request) -> httpx.Response:
    cards = [{"id": "tantra-tiny", "object": "model", "created": 0, "owned_by": "vllm"}]
    return httpx.Response(200, json={"object": "list", "data": cards})


@dataclass
class VoicesGateway:
    url: str
    admin: AdminClient
    blob_dir: Path

    def tenant_key(self, name: str) -> str:
        tenant = self.admin.tenant(f"{name}-{next(_tenants)}")
        secret, _ = self.admin.key(tenant["id"], name)
        return secret

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=300)


def voices_gateway(settings: Settings, admin_key: str) -> Iterator[VoicesGateway]:
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(_models)))
    with ThreadedServer(app) as server:
        admin = AdminClient(server.url, admin_key)
        assert settings.blob_dir is not None
        yield VoicesGateway(server.url, admin, settings.blob_dir)
        admin.close()


@pytest.fixture(scope="module")
def gateway(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: Any
) -> Iterator[Any]:
    cache = tmp_path_factory.mktemp("voice-clips")
    yield from voices_gateway(gateway_settings(voices_clip_cache=str(cache)), admin_key)


@pytest.fixture(scope="module")
def speech_clip() -> bytes:
    """Three seconds or so of real speech (eSpeak NG), a consent phrase read aloud."""
    return espeak_wav("I am the owner of this voice and I agree to have a synthetic version made.")
