"""PII redaction with the session's real gateway and real vLLM engine, through the real `openai`
SDK: a `store` tenant's stored chat completion keeps `<ENTITY>` placeholders where its messages had
PII while the answer it got is the engine's own; a `prompt` tenant's completion echoed by the
engine (`echo: true`, vLLM's and OpenAI's legacy completions) shows the model read the redacted
prompt."""

from __future__ import annotations

import secrets

import openai
import pytest

from tests.gateway.helpers import AdminClient

pytestmark = pytest.mark.engine

PROMPT = "My name is John Smith, mail me at john.smith@example.com about card 4111 1111 1111 1111."
REDACTED = "My name is <PERSON>, mail me at <EMAIL_ADDRESS> about card <CREDIT_CARD>."


def _client(admin: AdminClient, gateway_url: str, **policy: bool) -> openai.OpenAI:
    tenant = admin.tenant(f"pii-engine-{secrets.token_hex(3)}")
    secret, _ = admin.key(tenant["id"], "pii")
    answer = admin.http.put(f"/admin/pii/policies/{tenant['id']}", json=policy)
    assert answer.status_code == 200, answer.text
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key=secret, max_retries=0, timeout=120)


def test_a_stored_completion_is_redacted_and_the_answer_is_not(
    admin: AdminClient, gateway_url: str, model: str
) -> None:
    with _client(admin, gateway_url, store=True) as client:
        answer = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=8,
            temperature=0,
            store=True,
        )
        assert answer.choices[0].message.content  # the engine's answer, as it wrote it
        kept = client.chat.completions.retrieve(answer.id)
        assert kept.id == answer.id and kept.model == answer.model
        messages = client.chat.completions.messages.list(answer.id).data
        assert [m.content for m in messages] == [REDACTED]


def test_the_model_reads_the_redacted_prompt(admin: AdminClient, gateway_url: str, model: str) -> None:
    with _client(admin, gateway_url, prompt=True) as client:
        echoed = client.completions.create(model=model, prompt=PROMPT, max_tokens=1, echo=True, temperature=0)
        assert echoed.choices[0].text.startswith(REDACTED)
        assert "john.smith" not in echoed.choices[0].text
