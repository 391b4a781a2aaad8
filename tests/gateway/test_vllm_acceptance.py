"""Issue 17, point 5: the gateway accepts every request body vLLM accepts, and refuses what it refuses.

Each body of the corpus (tests/gateway/protocol/acceptance_corpus.py) goes to the session's real vLLM
directly and through the gateway; the accept (2xx) or reject (4xx) decision must be the same, except
for the refusals the gateway makes on purpose, listed below with their reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.protocol.acceptance_corpus import CORPUS

pytestmark = pytest.mark.engine

# Bodies vLLM 0.32 accepts (or might) that the gateway refuses by design, with the reason.
DELIBERATE = {
    "chat-prediction": "vLLM ignores `prediction`; answering as if it had worked would pretend (point 8)",
    "chat-web-search-options": "no web search is served; vLLM ignores the field (point 8)",
    "chat-service-tier-bogus": "any tier but auto/default is refused; vLLM ignores the field (point 8)",
    "chat-service-tier-flex": "one tier only; vLLM takes flex/scale/priority and ignores them (point 8)",
    "cmpl-service-tier-priority": "one tier only; vLLM takes flex/scale/priority and ignores them (point 8)",
    "chat-audio-output-no-audio": "the gateway speaks answers itself (point 4); `audio` says how, and "
    "OpenAI requires it with audio output",
    "chat-audio-output-bad-format": "a spoken answer in a format OpenAI does not define (point 4)",
    "chat-audio-output-n-2": "one spoken choice per answer (point 4)",
    "chat-typeless-image-part": "media parts need a `type` so the gateway reads the source the engine "
    "would (hardening, adapters/parts.py `screen`)",
    "chat-image-part-two-media-fields": "a part may carry only the media field its type names: vLLM "
    "could read the other one, unchecked (hardening)",
}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120) as http:
        yield http


def decision(response: httpx.Response) -> str:
    assert response.status_code < 500, response.text[:500]
    return "accept" if response.status_code < 300 else "reject"


@pytest.mark.parametrize(("name", "path", "body"), CORPUS, ids=[name for name, _, _ in CORPUS])
def test_gateway_decides_as_vllm_does(
    client: httpx.Client,
    engine_url: str,
    gateway_url: str,
    auth: dict[str, str],
    model: str,
    name: str,
    path: str,
    body: dict[str, Any],
) -> None:
    sent = {"model": model, **body}
    through_gateway = client.post(gateway_url + path, json=sent, headers=auth)
    if name in DELIBERATE:
        assert through_gateway.status_code == 400, through_gateway.text[:500]
        assert through_gateway.json()["error"]["param"], "a deliberate refusal names the field"
        return
    direct = client.post(engine_url + path, json=sent)
    assert decision(through_gateway) == decision(direct), (
        f"vLLM: {direct.status_code} {direct.text[:300]}\ngateway: {through_gateway.status_code} "
        f"{through_gateway.text[:300]}"
    )


def test_the_corpus_is_large_and_mixed() -> None:
    assert len(CORPUS) >= 60
    assert {path for _, path, _ in CORPUS} == {"/v1/chat/completions", "/v1/completions"}
    assert set(DELIBERATE) <= {name for name, _, _ in CORPUS}
