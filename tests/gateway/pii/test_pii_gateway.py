"""PII redaction through a real gateway (in process, uvicorn in a thread; real Redis, its own SQLite
store, the real Presidio and spaCy model) with a fake engine: the engine is a stand-in here because
what is tested is the gateway's own logic (what it stores, what it sends upstream, what it logs),
and the engine must answer with PII the test chooses.

- The admin API: the default shown, a policy set (audited with its actor), read back, removed;
  bad bodies 400 in OpenAI's envelope (never 422), an unknown tenant 404, no key 401.
- `store`: a stored chat completion, a conversation's items and feedback keep `<ENTITY>` where
  the client wrote PII, while the client's answer (the model's PII included) is unchanged and the
  engine saw the prompt as sent.
- `prompt`: the engine receives the user's message redacted (the system message as written), on
  chat, the Responses API and Anthropic's Messages API; a
  tenant without a policy has its body forwarded byte for byte.
- At default log settings no prompt or answer text reaches the gateway's log output."""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway import Settings, create_app
from gateway.observability import configure_logging
from gateway.observability.logs import reset_logging, resolve_format
from tests.gateway.helpers import AdminClient, bearer, envelope
from tests.gateway.memory.fake_models import bag_of_words
from tests.servers import ThreadedServer

MODEL = "tantra-tiny"
EMBEDDING = "fake-embedding"
PROMPT = "My name is John Smith, mail me at john.smith@example.com about card 4111 1111 1111 1111."
# The engine's answer quotes PII of its own: the client gets it as it is.
ANSWER = "Hello John Smith, I wrote to john.smith@example.com."
REDACTED = "My name is <PERSON>, mail me at <EMAIL_ADDRESS> about card <CREDIT_CARD>."

MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [{"type": "text", "text": ANSWER}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 20, "output_tokens": 9},
}

RESPONSE = {
    "id": "resp_engine",
    "object": "response",
    "created_at": 1,
    "status": "completed",
    "model": MODEL,
    "output": [
        {
            "type": "message",
            "id": "msg_out",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
        }
    ],
    "usage": {"input_tokens": 20, "output_tokens": 9, "total_tokens": 29},
}


@dataclass
class Tenant:
    id: str
    secret: str

    def post(self, url: str, path: str, body: Any) -> httpx.Response:
        return httpx.post(url + path, json=body, headers=bearer(self.secret), timeout=60)

    def get(self, url: str, path: str) -> httpx.Response:
        return httpx.get(url + path, headers=bearer(self.secret), timeout=60)


@dataclass
class PiiGateway:
    url: str
    admin: AdminClient
    seen: list[bytes]

    def tenant(self, name: str, **policy: Any) -> Tenant:
        made = self.admin.tenant(f"pii-{name}-{secrets.token_hex(3)}")
        secret, _ = self.admin.key(made["id"], name)
        if policy:
            answer = self.admin.http.put(f"/admin/pii/policies/{made['id']}", json=policy)
            assert answer.status_code == 200, answer.text
        return Tenant(made["id"], secret)


def _engine(seen: list[bytes]) -> Callable[[httpx.Request], httpx.Response]:
    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            models = [{"id": MODEL, "max_model_len": 4096}, {"id": EMBEDDING, "max_model_len": 512}]
            return httpx.Response(200, json={"data": models})
        seen.append(request.content)
        if request.url.path == "/v1/messages":
            return httpx.Response(200, json=MESSAGE)
        if request.url.path == "/v1/responses":
            return httpx.Response(200, json=RESPONSE)
        if request.url.path == "/v1/embeddings":
            texts = orjson.loads(request.content)["input"]
            data = [
                {"index": n, "object": "embedding", "embedding": bag_of_words(t)} for n, t in enumerate(texts)
            ]
            return httpx.Response(200, json={"data": data, "model": EMBEDDING, "usage": {"prompt_tokens": 3}})
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-" + secrets.token_hex(8),
                "object": "chat.completion",
                "created": 1,
                "model": MODEL,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
            },
        )

    return engine


@pytest.fixture(scope="module")
def pii_gateway(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PiiGateway]:
    tmp: Path = tmp_path_factory.mktemp("pii")
    # Its own store (its own settings: the policies' cache off, so a change applies at once).
    settings = gateway_settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'store.db'}",
        blob_dir=tmp / "blobs",
        jobs_enabled=False,
        pii_policy_cache_s=0,
        moderation_policy_cache_s=0,
        moderation_executor="thread",
        memory_embedding_model=EMBEDDING,
        memory_extraction_model=MODEL,
    )
    seen: list[bytes] = []
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(_engine(seen))))
    with ThreadedServer(app) as server:
        admin = AdminClient(server.url, admin_key)
        yield PiiGateway(server.url, admin, seen)
        admin.close()


def _chat(tenant: Tenant, url: str, **extra: Any) -> httpx.Response:
    messages = [{"role": "system", "content": "You help Acme."}, {"role": "user", "content": PROMPT}]
    return tenant.post(url, "/v1/chat/completions", {"model": MODEL, "messages": messages, **extra})


def test_the_admin_api_sets_reads_and_removes_a_policy(pii_gateway: PiiGateway) -> None:
    admin, tenant = pii_gateway.admin, pii_gateway.tenant("admin")
    path = f"/admin/pii/policies/{tenant.id}"
    got = admin.http.get(path).json()
    assert got["source"] == "default" and got["store"] is False and got["prompt"] is False
    assert got["entities"][:2] == ["PERSON", "EMAIL_ADDRESS"] and len(got["entities"]) == 8
    put = admin.http.put(path, json={"store": True, "entities": ["EMAIL_ADDRESS"]}, headers={"x-actor": "x"})
    assert put.status_code == 200 and put.json()["source"] == "tenant"
    assert admin.http.get(path).json()["entities"] == ["EMAIL_ADDRESS"]
    audit = admin.http.get("/admin/audit", params={"target_id": tenant.id}).json()
    entries = audit["data"] if isinstance(audit, dict) else audit
    assert [e["action"] for e in entries if e["action"].startswith("pii_policy")] == ["pii_policy.set"]
    assert admin.http.delete(path).json()["source"] == "default"
    assert admin.http.get(path).json()["source"] == "default"
    for bad in ({"entities": ["NAMES"]}, {"store": "sometimes"}, {"threshold": 2}, {"where": "store"}):
        assert envelope(admin.http.put(path, json=bad), 400)["type"] == "invalid_request_error"
    envelope(admin.http.put("/admin/pii/policies/nope", json={}), 404)
    assert httpx.get(pii_gateway.url + path).status_code == 401


def test_a_store_policy_redacts_what_is_stored_not_the_answer(pii_gateway: PiiGateway) -> None:
    url, tenant = pii_gateway.url, pii_gateway.tenant("store", store=True)
    pii_gateway.seen.clear()
    answer = _chat(tenant, url, store=True)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == ANSWER  # the client's answer as is
    assert PROMPT.encode() in pii_gateway.seen[-1]  # `store` only: the model saw the prompt
    completion_id = answer.json()["id"]
    stored = tenant.get(url, f"/v1/chat/completions/{completion_id}").json()
    assert stored["choices"][0]["message"]["content"] == "Hello <PERSON>, I wrote to <EMAIL_ADDRESS>."
    messages = tenant.get(url, f"/v1/chat/completions/{completion_id}/messages").json()["data"]
    assert [m["content"] for m in messages] == [
        "You help Acme.",
        "My name is <PERSON>, mail me at <EMAIL_ADDRESS> about card <CREDIT_CARD>.",
    ]
    # A conversation's items, at its creation and appended.
    made = tenant.post(url, "/v1/conversations", {"items": [{"role": "user", "content": PROMPT}]})
    assert made.status_code == 200, made.text
    conversation = made.json()["id"]
    added = tenant.post(
        url,
        f"/v1/conversations/{conversation}/items",
        {
            "items": [
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": ANSWER}]}
            ]
        },
    )
    assert added.status_code == 200, added.text
    items = tenant.get(url, f"/v1/conversations/{conversation}/items?order=asc").json()["data"]
    texts = [part["text"] for item in items for part in item["content"]]
    assert texts == [
        "My name is <PERSON>, mail me at <EMAIL_ADDRESS> about card <CREDIT_CARD>.",
        "Hello <PERSON>, I wrote to <EMAIL_ADDRESS>.",
    ]
    # Feedback: its comment and correction, and the exchange it keeps.
    feedback = tenant.post(
        url,
        "/v1/feedback",
        {"completion_id": completion_id, "rating": "down", "comment": "Call me on 212-555-0198, John Smith"},
    )
    assert feedback.status_code == 200, feedback.text
    kept = tenant.get(url, f"/v1/feedback/{feedback.json()['id']}").json()
    assert kept["comment"] == "Call me on <PHONE_NUMBER>, <PERSON>"
    raw = orjson.dumps(kept).decode()
    assert "john.smith@example.com" not in raw and "4111" not in raw
    # A memory, stored as given: redacted before it is embedded (the index holds the stored text's).
    pii_gateway.seen.clear()
    body = {"messages": [{"role": "user", "content": PROMPT}], "user_id": "u1", "infer": False}
    memory = tenant.post(url, "/v1/memories/", body)
    assert memory.status_code == 200, memory.text
    redacted = "My name is <PERSON>, mail me at <EMAIL_ADDRESS> about card <CREDIT_CARD>."
    assert [r["memory"] for r in memory.json()["results"]] == [redacted]
    assert orjson.loads(pii_gateway.seen[-1])["input"] == [redacted]
    # A moderation flag's excerpt (a banned term flags the prompt; it is let through and recorded).
    policy = {"input": "flag", "banned_terms": {"illicit": ["card"]}}
    assert (
        pii_gateway.admin.http.put(f"/admin/moderation/policies/{tenant.id}", json=policy).status_code == 200
    )
    assert _chat(tenant, url).status_code == 200
    flags = pii_gateway.admin.http.get("/admin/moderation/flags", params={"tenant_id": tenant.id}).json()
    [flag] = flags["data"]
    assert flag["excerpt"].endswith(
        "My name is <PERSON>, mail me at <EMAIL_ADDRESS> about card <CREDIT_CARD>."
    )


def test_a_prompt_policy_redacts_what_the_model_sees(pii_gateway: PiiGateway) -> None:
    url = pii_gateway.url
    tenant = pii_gateway.tenant("prompt", prompt=True)
    pii_gateway.seen.clear()
    answer = _chat(tenant, url)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == ANSWER
    sent = orjson.loads(pii_gateway.seen[-1])
    assert [m["content"] for m in sent["messages"]] == [
        "You help Acme.",
        "My name is <PERSON>, mail me at <EMAIL_ADDRESS> about card <CREDIT_CARD>.",
    ]
    # Anthropic's Messages API: the user's text blocks too (the top-level system prompt as written).
    anthropic = tenant.post(
        url,
        "/v1/messages",
        {
            "model": MODEL,
            "max_tokens": 8,
            "system": "You help Acme.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
        },
    )
    assert anthropic.status_code == 200, anthropic.text
    assert anthropic.json()["content"][0]["text"] == ANSWER
    sent = orjson.loads(pii_gateway.seen[-1])
    assert sent["system"] == "You help Acme."
    assert sent["messages"][0]["content"] == [{"type": "text", "text": REDACTED}]
    # The Responses API: the user's input items (instructions as written).
    response = tenant.post(
        url,
        "/v1/responses",
        {"model": MODEL, "instructions": "You help Acme.", "input": PROMPT, "store": False},
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"][0]["content"][0]["text"] == ANSWER
    sent = orjson.loads(pii_gateway.seen[-1])
    assert sent["instructions"] == "You help Acme."
    assert [part["text"] for item in sent["input"] for part in item["content"]] == [REDACTED]
    # Without a policy: the client's own bytes go upstream, PII and all.
    plain = pii_gateway.tenant("plain")
    body = b'{"model": "tantra-tiny",  "messages": [{"role": "user", "content": "' + PROMPT.encode() + b'"}]}'
    forwarded = httpx.post(
        url + "/v1/chat/completions", content=body, headers=bearer(plain.secret), timeout=60
    )
    assert forwarded.status_code == 200, forwarded.text
    assert pii_gateway.seen[-1].startswith(body[:-1])


def test_the_logs_hold_no_prompt_or_answer_at_default_settings(pii_gateway: PiiGateway) -> None:
    """The gateway's log pipeline as `python -m gateway` configures it from default settings;
    a chat request, a stored one, a conversation and a refused body all carry a marker."""
    defaults = Settings()
    stream = io.StringIO()
    configure_logging(
        log_format=resolve_format(defaults.log_format, stream),
        level=defaults.log_level,
        log_prompts=defaults.log_prompts,
        stream=stream,
    )
    marker = "zebra-" + secrets.token_hex(6)
    try:
        url, tenant = pii_gateway.url, pii_gateway.tenant("logs")
        assert _chat(tenant, url, user=marker, metadata={"x": marker}, store=True).status_code == 200
        messages = [{"role": "user", "content": f"{marker} {PROMPT}"}]
        assert (
            tenant.post(url, "/v1/chat/completions", {"model": MODEL, "messages": messages}).status_code
            == 200
        )
        made = tenant.post(url, "/v1/conversations", {"items": [{"role": "user", "content": marker}]})
        assert made.status_code == 200
        bad = tenant.post(url, "/v1/chat/completions", {"model": MODEL, "messages": messages, "n": marker})
        assert bad.status_code == 400
    finally:
        reset_logging()
    out = stream.getvalue()
    assert "/v1/chat/completions" in out and "/v1/conversations" in out  # the requests were logged
    assert marker not in out and "john.smith" not in out and ANSWER not in out
