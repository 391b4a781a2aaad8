"""Confidence, self-consistency and ensembles on the real engine (the session's tiny random-weight
chat engine; none started here). A gateway of its own for the virtual models in its settings. The
session has one chat engine of this kind, so the ensemble's three members are that engine under
three model names (`tiny-b` and `tiny-c` are model routes with `served_name`): three calls through
the dispatcher, answered independently (sampled at temperature 1). The random weights answer
anything, so the answers are constrained by vLLM's structured outputs (a choice among three words,
a JSON object) to make the votes meaningful."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from gateway import Settings, create_app
from gateway.services.confidence import measure
from tests.conftest import MODEL
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

WORDS = ["alpha", "beta", "gamma"]
CHOICE: dict[str, Any] = {"structured_outputs": {"choice": WORDS}}
# A JSON object (as a regex: a JSON schema leaves the random weights free to pad it with spaces).
JSON_ANSWER = r'\{"answer": "(alpha|beta|gamma)"\}'
VIRTUAL = {
    "sc": {"mode": "self_consistency", "model": MODEL, "k": 5, "temperature": 1.0},
    "sc-json": {
        "mode": "self_consistency",
        "model": MODEL,
        "k": 5,
        "extractor": {"type": "json_field", "field": "answer"},
    },
}
MEMBERS = [MODEL, "tiny-b", "tiny-c"]
ENSEMBLES = {
    "ens": {"mode": "ensemble", "models": MEMBERS, "combine": "vote"},
    "ens-judge": {"mode": "ensemble", "models": MEMBERS, "combine": "judge", "judge": {"model": MODEL}},
    "ens-first": {"mode": "ensemble", "models": MEMBERS, "combine": "first"},
}
PROMPT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Which word comes first?"}]


@pytest.fixture(scope="module")
def gateway(
    engine_url: str, gateway_settings: Callable[..., Settings], admin_key: str
) -> Iterator[tuple[openai.OpenAI, AdminClient, str]]:
    settings = gateway_settings(
        upstreams={"engine": {"url": engine_url}},
        models={
            MODEL: {"upstreams": ["engine"]},
            "tiny-b": {"upstreams": ["engine"], "served_name": MODEL},
            "tiny-c": {"upstreams": ["engine"], "served_name": MODEL},
        },
        routing={"default_model": MODEL},
        virtual_models={**VIRTUAL, **ENSEMBLES},
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        tenant = admin.tenant("orchestration-" + uuid.uuid4().hex[:6])
        secret, _ = admin.key(tenant["id"], "orchestration")
        with openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=120) as client:
            yield client, admin, tenant["id"]
        admin.close()


def test_confidence_is_vllms_logprobs_measured(
    gateway: tuple[openai.OpenAI, AdminClient, str], engine_url: str
) -> None:
    """The gateway's measure of the same (greedy) answer equals the measure of the logprobs vLLM
    returns directly; logprobs the client did not ask for are not in the answer."""
    client = gateway[0]
    asked: dict[str, Any] = {"messages": PROMPT, "max_tokens": 6, "temperature": 0, "seed": 3}
    answer = client.chat.completions.create(
        model=MODEL,
        messages=PROMPT,
        max_tokens=6,
        temperature=0,
        seed=3,
        extra_body={"tantra": {"confidence": True}},
    )
    choice = answer.choices[0]
    assert choice.logprobs is None
    confidence = (choice.model_extra or {})["tantra_confidence"]
    direct = httpx.post(
        engine_url + "/v1/chat/completions",
        json={"model": MODEL, **asked, "logprobs": True, "top_logprobs": 5},
        timeout=60,
    ).json()["choices"][0]
    assert direct["message"]["content"] == choice.message.content
    expected = measure(direct["logprobs"])
    assert answer.usage is not None
    assert confidence["tokens"] == answer.usage.completion_tokens == expected["tokens"]
    for name in ("mean_token_prob", "min_token_prob", "mean_entropy", "score"):
        assert confidence[name] == pytest.approx(expected[name], rel=1e-3, abs=1e-5)
    assert 0 < confidence["min_token_prob"] <= confidence["mean_token_prob"] <= 1
    # Asked for 2 alternatives: 2 kept, while the engine was asked for 5.
    kept = client.chat.completions.create(
        model=MODEL,
        messages=PROMPT,
        max_tokens=6,
        temperature=0,
        seed=3,
        logprobs=True,
        top_logprobs=2,
        extra_body={"tantra": {"confidence": True}},
    )
    assert kept.choices[0].logprobs is not None and kept.choices[0].logprobs.content
    assert {len(item.top_logprobs) for item in kept.choices[0].logprobs.content} == {2}


def test_confidence_of_samples_and_of_a_stream(gateway: tuple[openai.OpenAI, AdminClient, str]) -> None:
    client = gateway[0]
    extra = {**CHOICE, "tantra": {"confidence": True}}
    answer = client.chat.completions.create(
        model=MODEL, messages=PROMPT, n=4, temperature=1.0, extra_body=extra
    )
    texts = [choice.message.content for choice in answer.choices]
    assert set(texts) <= set(WORDS)
    for choice in answer.choices:
        confidence = (choice.model_extra or {})["tantra_confidence"]
        assert confidence["agreement"] == texts.count(choice.message.content) / 4 == confidence["score"]
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=PROMPT, max_tokens=5, temperature=0, stream=True, extra_body=extra
        )
    )
    assert all(choice.logprobs is None for chunk in chunks for choice in chunk.choices)
    last = chunks[-1].model_extra or {}
    assert chunks[-1].choices[0].finish_reason is not None  # no usage asked: the terminal chunk
    (confidence,) = last["tantra_confidence"]
    assert confidence["index"] == 0 and confidence["tokens"] >= 1
    assert 0 < confidence["min_token_prob"] <= confidence["mean_token_prob"] <= 1


def test_self_consistency_k5(gateway: tuple[openai.OpenAI, AdminClient, str]) -> None:
    shared, admin, tenant_id = gateway
    secret, key = admin.key(tenant_id, "self-consistency")  # its own key: its own ledger rows
    client = shared.with_options(api_key=secret)
    key_id = key["id"]
    assert "sc" in [model.id for model in client.models.list()]
    raw = client.chat.completions.with_raw_response.create(
        model="sc", messages=PROMPT, extra_body={**CHOICE, "tantra": {"confidence": True}}
    )
    answer = raw.parse()
    votes = (answer.model_extra or {})["tantra_votes"]
    assert votes["k"] == 5 and len(votes["answers"]) == 5 and set(votes["answers"]) <= set(WORDS)
    majority = max(WORDS, key=votes["answers"].count)
    assert votes["votes"] == votes["answers"].count(majority) >= 2
    assert votes["answer"] == answer.choices[0].message.content
    assert votes["answers"].count(votes["answer"]) == votes["votes"]
    assert votes["share"] == votes["votes"] / 5
    assert raw.headers["x-tantra-votes"] == f"{votes['votes']}/5"
    assert len(answer.choices) == 1 and answer.model == MODEL
    assert (answer.choices[0].model_extra or {})["tantra_confidence"]["agreement"] == votes["share"]
    # Billed as one request of five samples: at least one token each.
    assert answer.usage is not None and answer.usage.completion_tokens >= 5
    # A JSON field as the final answer.
    shaped = client.chat.completions.create(
        model="sc-json",
        messages=PROMPT,
        extra_body={"structured_outputs": {"regex": JSON_ANSWER}},
        max_tokens=40,
    )
    voted = (shaped.model_extra or {})["tantra_votes"]
    assert voted["answer"] in WORDS and voted["votes"] >= 2
    # A stream streams the chosen answer, the vote on its last chunk.
    chunks = list(
        client.chat.completions.create(
            model="sc",
            messages=PROMPT,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=CHOICE,
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    final = next(chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason)
    assert text == (final.model_extra or {})["tantra_votes"]["answer"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 5
    # The ledger: one row per request, priced as the served model.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = {row["model"]: row for row in admin.usage(key_id=key_id, group_by="model")}
        if MODEL in rows and rows[MODEL]["requests"] >= 3:
            break
        time.sleep(0.2)
    assert rows.keys() == {MODEL} and rows[MODEL]["requests"] == 3


def test_ensembles_over_three_models(gateway: tuple[openai.OpenAI, AdminClient, str]) -> None:
    shared, admin, tenant_id = gateway
    secret, key = admin.key(tenant_id, "ensembles")
    client = shared.with_options(api_key=secret)
    extra = {**CHOICE, "temperature": 1.0}
    raw = client.chat.completions.with_raw_response.create(model="ens", messages=PROMPT, extra_body=extra)
    answer = raw.parse()
    record = (answer.model_extra or {})["tantra_ensemble"]
    assert [item["model"] for item in record["answers"]] == MEMBERS and record["failed"] == []
    answers = [item["answer"] for item in record["answers"]]
    assert set(answers) <= set(WORDS)
    content = answer.choices[0].message.content
    assert record["votes"] == answers.count(content) == max(answers.count(word) for word in WORDS)
    assert record["chosen"] == MEMBERS[answers.index(content)]
    assert raw.headers["x-tantra-ensemble"] == f"{record['chosen']}; combine=vote"
    # Billed as one request: the three members' tokens summed.
    assert answer.usage is not None and answer.usage.completion_tokens >= 3
    assert answer.usage.prompt_tokens % 3 == 0
    # A judge model picks one of the three (its call billed too); the first to finish wins.
    judged = client.chat.completions.create(model="ens-judge", messages=PROMPT, extra_body=extra)
    record = (judged.model_extra or {})["tantra_ensemble"]
    assert record["judge"] == MODEL and record["chosen"] in MEMBERS
    assert judged.choices[0].message.content == record["answers"][MEMBERS.index(record["chosen"])]["answer"]
    assert judged.usage is not None and judged.usage.prompt_tokens > answer.usage.prompt_tokens
    first = client.chat.completions.create(model="ens-first", messages=PROMPT, extra_body=extra)
    record = (first.model_extra or {})["tantra_ensemble"]
    assert len(record["answers"]) == 1 and record["chosen"] in MEMBERS
    # A stream of the chosen answer.
    chunks = list(client.chat.completions.create(model="ens", messages=PROMPT, stream=True, extra_body=extra))
    final = next(chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text in WORDS and (final.model_extra or {})["tantra_ensemble"]["combine"] == "vote"
    # One ledger row per request (4), each priced as its chosen model.
    deadline = time.monotonic() + 15
    requests = 0
    while time.monotonic() < deadline:
        requests = sum(row["requests"] for row in admin.usage(key_id=key["id"], group_by="model"))
        if requests >= 4:
            break
        time.sleep(0.2)
    assert requests == 4


def test_bad_input_is_openais_envelope(gateway: tuple[openai.OpenAI, AdminClient, str]) -> None:
    client = gateway[0]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sc", messages=PROMPT, n=2)
    assert (
        caught.value.status_code == 400 and cast(dict[str, Any], caught.value.body or {}).get("param") == "n"
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=PROMPT, extra_body={"tantra": {"confidence": 1.5}}
        )
    assert cast(dict[str, Any], caught.value.body or {}).get("param") == "tantra.confidence"
    # Chat completions only: the legacy completions answer 404 as for a model no engine serves.
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="sc", prompt="x", max_tokens=2)
