"""Per-tenant moderation policies on chat, against the session's real gateway and real vLLM engine,
through the real `openai` SDK: a flagged prompt refused with 400 `content_policy_violation`, or let
through and flagged; a flagged answer withheld (JSON) or its stream ended at the flagged sentence
with `finish_reason: "content_filter"`; every flag listed by the admin API with its tenant, key
and end user.

The engine's model has random weights, so its words are noise: the output side uses a banned
term the test picks from the model's own greedy answer (the operator's deterministic list), so the
same greedy request must be cut where that word's sentence is; the input side uses the real text
classifier (alt-profanity-check) on an offensive prompt."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.gateway.helpers import AdminClient

OFFENSIVE = "You are a stupid fucking idiot and everyone hates you."
PROMPT = "Write a long story about a lighthouse keeper."
# Greedy, so the same request gets the same answer on the same engine.
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 96, "seed": 7}


@pytest.fixture(scope="module")
def tenant(admin: AdminClient) -> Iterator[dict[str, str]]:
    tenant = admin.tenant("moderated")
    secret, key = admin.key(tenant["id"], "moderated")
    yield {"tenant_id": tenant["id"], "secret": secret, "key_id": key["id"]}


@pytest.fixture(scope="module")
def client(gateway_url: str, tenant: dict[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway_url + "/v1", api_key=tenant["secret"], max_retries=0, timeout=120
    ) as sdk:
        yield sdk


def _policy(admin: AdminClient, tenant_id: str, **policy: Any) -> dict[str, Any]:
    response = admin.http.put(f"/admin/moderation/policies/{tenant_id}", json=policy)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _flags(admin: AdminClient, tenant_id: str) -> list[dict[str, Any]]:
    response = admin.http.get("/admin/moderation/flags", params={"tenant_id": tenant_id})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def _stream(client: openai.OpenAI, model: str) -> tuple[str, str | None]:
    text, finish = "", None
    for chunk in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], stream=True, **GREEDY
    ):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, finish


def test_policy_admin_api(admin: AdminClient, tenant: dict[str, str]) -> None:
    got = admin.http.get(f"/admin/moderation/policies/{tenant['tenant_id']}").json()
    assert got["source"] == "default" and got["input"] == "off" and got["output"] == "off"
    bad = admin.http.put(f"/admin/moderation/policies/{tenant['tenant_id']}", json={"input": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    bad = admin.http.put(
        f"/admin/moderation/policies/{tenant['tenant_id']}", json={"banned_terms": {"nonsense": ["x"]}}
    )
    assert bad.status_code == 400
    assert admin.http.put("/admin/moderation/policies/nope", json={}).status_code == 404
    assert httpx.get(admin.http.base_url.join("/admin/moderation/flags")).status_code == 401
    _policy(admin, tenant["tenant_id"], input="flag")
    audit = admin.http.get("/admin/audit", params={"target_id": tenant["tenant_id"]}).json()["data"]
    assert any(entry["action"] == "moderation_policy.set" for entry in audit)


def test_input_block_refuses_a_flagged_prompt(
    admin: AdminClient, tenant: dict[str, str], client: openai.OpenAI, model: str
) -> None:
    _policy(admin, tenant["tenant_id"], input="block")
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": OFFENSIVE}], max_tokens=4, user="end-user-7"
        )
    assert refused.value.code == "content_policy_violation"
    assert refused.value.body is not None and "harassment" in str(refused.value.body)
    # A benign prompt of the same tenant is answered.
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello there."}], max_tokens=4
    )
    assert answer.choices[0].finish_reason in ("length", "stop")
    flags = _flags(admin, tenant["tenant_id"])
    blocked = next(flag for flag in flags if flag["action"] == "blocked")
    assert blocked["stage"] == "input" and "harassment" in blocked["categories"]
    assert blocked["key_id"] == tenant["key_id"] and blocked["user"] == "end-user-7"
    assert blocked["endpoint"] == "/v1/chat/completions" and blocked["model"] == model


def test_flag_only_lets_the_prompt_through(
    admin: AdminClient, tenant: dict[str, str], client: openai.OpenAI, model: str
) -> None:
    _policy(admin, tenant["tenant_id"], input="flag")
    before = len(_flags(admin, tenant["tenant_id"]))
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": OFFENSIVE}], max_tokens=4
    )
    assert answer.choices[0].message is not None
    flags = _flags(admin, tenant["tenant_id"])
    assert len(flags) == before + 1 and flags[0]["action"] == "flagged"


def test_output_block_cuts_the_stream_and_withholds_the_answer(
    admin: AdminClient, tenant: dict[str, str], client: openai.OpenAI, model: str
) -> None:
    _policy(admin, tenant["tenant_id"])  # everything off: the model's own greedy answer
    full, finish = _stream(client, model)
    assert finish in ("length", "stop")
    words = [word for word in re.findall(r"\b\w{3,}\b", full) if not word.isdigit()]
    assert words, f"the answer has no word to ban: {full!r}"
    # A word from the answer's second half, so that something before it is normally sent.
    banned = words[len(words) // 2]
    _policy(admin, tenant["tenant_id"], output="block", banned_terms={"violence": [banned]})

    cut, finish = _stream(client, model)
    assert finish == "content_filter"
    assert full.startswith(cut) and len(cut) < len(full)
    assert not re.search(rf"\b{re.escape(banned)}\b", cut, re.IGNORECASE)

    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], **GREEDY
    )
    assert answer.choices[0].finish_reason == "content_filter"
    assert answer.choices[0].message.content is None

    flags = [flag for flag in _flags(admin, tenant["tenant_id"]) if flag["stage"] == "output"]
    assert len(flags) >= 2 and {flag["action"] for flag in flags} == {"cut"}
    assert all(flag["categories"] == ["violence"] for flag in flags)
    _policy(admin, tenant["tenant_id"])


def test_judge_prompt_and_schema_against_the_real_engine(engine_url: str, model: str) -> None:
    """The LLM judge's plumbing: vLLM accepts its Llama-Guard-style prompt with the JSON schema
    (structured outputs), and its answer parses into the 13 categories. The random-weight model's
    verdict itself is noise: only its shape is checked."""
    from adapters.moderation import CATEGORIES
    from gateway.services.moderation_judge import CODES, judge_request, parse_verdict

    response = httpx.post(
        f"{engine_url}/v1/chat/completions", json=judge_request(model, OFFENSIVE), timeout=120
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    scores = parse_verdict(response.content)
    assert set(scores) == set(CATEGORIES)
    if choice["finish_reason"] == "length":
        # The random model may pad the JSON with whitespace (which the schema allows) past
        # max_tokens: an unfinished verdict judges nothing.
        assert sum(scores.values()) == 0
        return
    verdict = orjson.loads(choice["message"]["content"])  # structured outputs: the schema's JSON
    assert verdict["verdict"] in ("safe", "unsafe")
    assert set(verdict["categories"]) <= set(CODES)
    named = {CODES[code] for code in verdict["categories"]} if verdict["verdict"] == "unsafe" else set()
    assert {name for name, score in scores.items() if score == 1.0} == named
