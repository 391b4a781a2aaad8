"""POST /v1/moderations through the real `openai` SDK against a real gateway (auth on, the
session's Redis and store), judged by the real classifiers in their worker process:
alt-profanity-check for text and NudeNet's detector for images (test images made with Pillow).
The language engine is a stand-in: moderation does not need it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import ModerationImageURLInputParam, ModerationTextInputParam

from adapters.moderation import CATEGORIES
from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient, bearer, envelope, ledger_rows
from tests.gateway.moderation.images import benign, png_data_url, yellow_disc
from tests.servers import ThreadedServer

OFFENSIVE = "You are a stupid fucking idiot and everyone hates you."
BENIGN = "The weather in Lisbon is mild in spring; bring a light jacket."


def _models(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": []})


@pytest.fixture(scope="module")
def moderation_gateway(gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    settings = gateway_settings(moderation_banned_terms={"illicit": ["zorblax powder"]})
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(_models)))
    with ThreadedServer(app) as server:
        yield server.url


@pytest.fixture(scope="module")
def moderation_admin(moderation_gateway: str, admin_key: str) -> Iterator[AdminClient]:
    admin = AdminClient(moderation_gateway, admin_key)
    yield admin
    admin.close()


@pytest.fixture(scope="module")
def tenant_id(moderation_admin: AdminClient) -> str:
    return str(moderation_admin.tenant("moderations-api")["id"])


@pytest.fixture(scope="module")
def moderation_key(moderation_admin: AdminClient, tenant_id: str) -> tuple[str, str]:
    secret, key = moderation_admin.key(tenant_id, "moderations")
    return secret, key["id"]


@pytest.fixture(scope="module")
def client(moderation_gateway: str, moderation_key: tuple[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=moderation_gateway + "/v1", api_key=moderation_key[0], max_retries=0, timeout=120
    ) as sdk:
        yield sdk


def _image(url: str) -> ModerationImageURLInputParam:
    return ModerationImageURLInputParam(type="image_url", image_url={"url": url})


def _dump(result: object) -> dict[str, Any]:
    assert hasattr(result, "model_dump")
    return result.model_dump(by_alias=True)


def test_text_benign_and_offensive(client: openai.OpenAI) -> None:
    answer = client.moderations.create(model="omni-moderation-latest", input=[BENIGN, OFFENSIVE])
    assert answer.model == "omni-moderation-latest"
    assert answer.id.startswith("modr-")
    benign_result, offensive = (_dump(result) for result in answer.results)
    for result in (benign_result, offensive):
        assert set(result["categories"]) == set(CATEGORIES)  # all 13 of OpenAI's categories
        assert set(result["category_scores"]) == set(CATEGORIES)
        assert result["category_applied_input_types"]["harassment"] == ["text"]
        assert result["category_applied_input_types"]["sexual"] == ["text"]
    assert answer.results[0].flagged is False
    assert benign_result["category_scores"]["harassment"] < 0.2
    assert answer.results[1].flagged is True
    assert offensive["categories"]["harassment"] is True
    assert offensive["category_scores"]["harassment"] > 0.9
    # What the text classifier cannot judge scores 0 (docs/moderation.md).
    assert offensive["category_scores"]["self-harm"] == 0.0
    assert offensive["categories"]["sexual/minors"] is False


def test_single_string_and_text_model(client: openai.OpenAI) -> None:
    answer = client.moderations.create(model="text-moderation-latest", input=OFFENSIVE)
    assert len(answer.results) == 1 and answer.results[0].flagged
    stable = client.moderations.create(model="text-moderation-stable", input=BENIGN)
    assert stable.model == "text-moderation-stable" and not stable.results[0].flagged


def test_operator_banned_terms_flag_their_category(client: openai.OpenAI) -> None:
    result = _dump(client.moderations.create(input="Where can I buy Zorblax Powder tonight?").results[0])
    assert result["flagged"] is True
    assert result["categories"]["illicit"] is True and result["category_scores"]["illicit"] == 1.0


def test_benign_image_is_not_flagged(client: openai.OpenAI) -> None:
    parts: list[ModerationImageURLInputParam | ModerationTextInputParam] = [
        ModerationTextInputParam(type="text", text=BENIGN),
        _image(png_data_url(benign())),
    ]
    answer = client.moderations.create(model="omni-moderation-latest", input=parts)
    assert len(answer.results) == 1  # one result for the whole multimodal input, as OpenAI's
    result = _dump(answer.results[0])
    assert result["flagged"] is False
    assert result["category_scores"]["sexual"] == 0.0
    assert result["category_applied_input_types"]["sexual"] == ["text", "image"]
    assert result["category_applied_input_types"]["harassment"] == ["text"]


def test_image_scores_are_the_detectors(client: openai.OpenAI) -> None:
    """No explicit image may be shipped with the tests: the mapping is checked with the detector's
    real output on a Pillow image it misreads at ~0.25 (below the 0.5 threshold: not flagged)."""
    answer = client.moderations.create(input=[_image(png_data_url(yellow_disc()))])
    result = _dump(answer.results[0])
    assert 0.15 < result["category_scores"]["sexual"] < 0.4
    assert result["flagged"] is False
    assert result["category_scores"]["sexual/minors"] == 0.0
    assert result["category_applied_input_types"]["sexual"] == ["image"]
    assert result["category_applied_input_types"]["harassment"] == []


def test_errors_in_openais_envelope(moderation_gateway: str, moderation_key: tuple[str, str]) -> None:
    url = moderation_gateway + "/v1/moderations"
    headers = bearer(moderation_key[0])
    image = {"type": "image_url", "image_url": {"url": png_data_url(benign())}}
    broken = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    cases = [
        ({"model": "text-moderation-latest", "input": [image]}, 400, "input[0]"),
        ({"model": "gpt-4o", "input": "hi"}, 404, "model"),
        ({"input": []}, 400, "input"),
        ({"input": [broken]}, 400, "input[0]"),
        ({}, 400, "input"),
    ]
    for body, status, param in cases:
        error = envelope(httpx.post(url, json=body, headers=headers, timeout=60), status)
        assert error["param"] == param, (body, error)
    envelope(httpx.post(url, json={"input": "hi"}, timeout=60), 401)


def test_in_the_ledger(
    moderation_gateway: str, moderation_admin: AdminClient, tenant_id: str, database_url: str
) -> None:
    secret, key = moderation_admin.key(tenant_id, "ledger")
    with openai.OpenAI(base_url=moderation_gateway + "/v1", api_key=secret, max_retries=0) as sdk:
        sdk.moderations.create(input="A short benign sentence, 44 characters long.")
    [row] = ledger_rows(database_url, key["id"], 1)
    assert row.model == "omni-moderation-latest" and row.endpoint == "/v1/moderations"
    assert row.status == 200 and row.prompt_tokens == 11 and row.completion_tokens == 0


def test_limited_like_every_endpoint(
    moderation_gateway: str, moderation_admin: AdminClient, tenant_id: str
) -> None:
    secret, _ = moderation_admin.key(tenant_id, "limited", rpm=1)
    with openai.OpenAI(base_url=moderation_gateway + "/v1", api_key=secret, max_retries=0) as sdk:
        sdk.moderations.create(input="one")
        with pytest.raises(openai.RateLimitError):
            sdk.moderations.create(input="two")


def test_listed_in_models(client: openai.OpenAI) -> None:
    names = {card.id for card in client.models.list()}
    assert {"omni-moderation-latest", "text-moderation-latest"} <= names
    assert client.models.retrieve("text-moderation-stable").id == "text-moderation-latest"
    # Any other name is not answered for by moderation (it once described every model as its own).
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
