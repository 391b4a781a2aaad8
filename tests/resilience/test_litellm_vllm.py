"""A fallback chain ending at an external upstream, with real parts: LiteLLM's proxy (with a master
key) in front of the session's vLLM engine, reached as a `kind: openai` upstream whose key comes
from an environment variable, behind a gateway whose local engine is down; clients use the real
`openai` SDK. LiteLLM's proxy comes from the bench's venv (bench/litellm_env.py, bench/servers.py),
installed beside the session's first tests (tests/litellm_install.py).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from bench import servers
from gateway import Settings, create_app
from tests.gateway.helpers import wait_for
from tests.litellm_install import begin_install
from tests.servers import ThreadedServer, free_port

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tantra-tiny"
KEY_ENV = "TANTRA_TEST_LITELLM_KEY"


@pytest.fixture(scope="module")
def litellm_proxy(engine_url: str) -> Iterator[tuple[str, str]]:
    """LiteLLM's proxy serving MODEL from the session's engine; (url, master key)."""
    try:
        venv = begin_install().result()  # begun when collection ended (tests/conftest.py)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"LiteLLM's proxy could not be installed (no package index?): {exc}")
    master_key = "sk-litellm-" + secrets.token_urlsafe(12)
    service, url = servers.litellm(
        ROOT / ".cache" / "test-litellm", venv, MODEL, engine_url, None, master_key=master_key
    )
    with service:
        yield url, master_key


@pytest.fixture
def gateway(
    litellm_proxy: tuple[str, str], gateway_settings: Callable[..., Settings]
) -> Callable[[], ThreadedServer]:
    """A gateway (built when called, after the test has set KEY_ENV) whose `chat` has a dead local
    upstream and falls back to `chat-external`, served by the LiteLLM proxy."""
    proxy_url, _ = litellm_proxy

    def build() -> ThreadedServer:
        settings = gateway_settings(
            auth_enabled=False,
            upstreams={
                "local": {"url": f"http://127.0.0.1:{free_port()}"},  # nothing listens: the engine is down
                "litellm": {"url": proxy_url, "kind": "openai", "api_key_env": KEY_ENV},
            },
            models={
                "chat": {"upstreams": ["local"], "fallbacks": ["chat-external"]},
                "chat-external": {"upstreams": ["litellm"], "served_name": MODEL},
            },
            routing={"default_model": "chat"},
            breaker_open_s=60,
        )
        return ThreadedServer(create_app(settings))

    return build


def upstreams(url: str) -> dict[str, dict[str, object]]:
    states: dict[str, dict[str, object]] = httpx.get(url + "/health/upstreams", timeout=30).json()[
        "upstreams"
    ]
    return states


def test_the_fallback_on_a_litellm_proxy_answers_json_and_streams(
    gateway: Callable[[], ThreadedServer], litellm_proxy: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, litellm_proxy[1])
    with gateway() as server:
        # The client's own key is not what reaches LiteLLM (which would refuse it): the gateway's is.
        with openai.OpenAI(
            base_url=server.url + "/v1", api_key="sk-client", max_retries=0, timeout=120
        ) as client:
            answer = client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "Hello"}], max_tokens=5
            )
            assert answer.choices[0].message.content is not None
            assert answer.usage is not None and answer.usage.completion_tokens > 0

            stream = client.chat.completions.create(
                model="chat",
                messages=[{"role": "user", "content": "Hello"}],
                max_tokens=5,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            assert any(chunk.choices and chunk.choices[0].finish_reason for chunk in chunks)
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
            assert len({chunk.id for chunk in chunks}) == 1

            models = {card.id for card in client.models.list()}
            assert {"chat", "chat-external"} <= models

        states = upstreams(server.url)
        assert states["litellm"]["kind"] == "openai" and states["litellm"]["state"] == "closed"
        assert states["local"]["consecutive_failures"] or states["local"]["state"] == "open"
        # Engine readiness is about the local engines: the dead one makes them unready, the
        # provider is neither probed there nor counted.
        ready = httpx.get(server.url + "/readyz?engines=1", timeout=30)
        assert ready.status_code == 503
        message = ready.json()["error"]["message"]
        assert "local:" in message and "litellm" not in message


def test_a_wrong_provider_key_is_a_server_error_and_opens_its_breaker(
    gateway: Callable[[], ThreadedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-not-the-master-key")
    with (
        gateway() as server,
        openai.OpenAI(base_url=server.url + "/v1", api_key="sk-client", max_retries=0, timeout=120) as client,
    ):
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "Hello"}], max_tokens=5
            )
        assert not isinstance(caught.value, openai.AuthenticationError | openai.PermissionDeniedError)
        assert caught.value.status_code == 502, caught.value.response.text
        error = caught.value.response.json()["error"]
        assert error["code"] == "upstream_auth_failed" and error["type"] == "server_error"

        def opened() -> bool:
            if upstreams(server.url)["litellm"]["state"] == "open":
                return True
            with pytest.raises(openai.APIStatusError) as again:  # retries within the budget
                client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "Hello"}], max_tokens=5
                )
            assert again.value.status_code in (502, 503)
            return False

        wait_for(opened, timeout=60, interval=0.1)
        # Open: the request is refused at once, without asking the provider again.
        with pytest.raises(openai.InternalServerError) as refused:
            client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "Hello"}], max_tokens=5
            )
        assert refused.value.status_code == 503
