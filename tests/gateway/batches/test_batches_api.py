"""The Batch API through the real openai SDK against a real gateway fronting the session's real
chat and embedding engines (real Redis, SQLite store, local blob store): create, retrieve, list,
cancel; validation as OpenAI reports it; the output and error files; tenant isolation; the ledger
at the batch price factor."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.gateway.batches.conftest import BatchGateway, read_lines, upload, wait_until
from tests.gateway.helpers import bearer, envelope, ledger_now, wait_for

pytestmark = pytest.mark.engine


def line_rows(database_url: str, key_id: str, endpoint: str, count: int) -> list[Any]:
    """The key's ledger rows of `endpoint`, once there are `count` of them (the API's own requests
    (uploads, polling) have rows too)."""
    found: list[Any] = []

    def enough() -> bool:
        rows = ledger_now(database_url, key_id)
        found[:] = [row for row in rows if row.endpoint == endpoint]
        return len(found) >= count

    wait_for(enough, timeout=15, interval=0.3)
    assert len(found) == count
    return found


def chat_line(custom_id: str, model: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **body},
    }


def test_small_chat_batch(batch_gateway: BatchGateway, model: str) -> None:
    secret, key_id = batch_gateway.tenant_key("small")
    with batch_gateway.client(secret) as client:
        file_id = upload(client, [chat_line(f"c{i}", model) for i in range(3)])
        batch = client.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"job": "small"},
        )
        assert (batch.object, batch.status, batch.endpoint) == ("batch", "validating", "/v1/chat/completions")
        assert batch.metadata == {"job": "small"}
        assert batch.expires_at == batch.created_at + 86400
        done = wait_until(client, batch.id, {"completed", "failed"})
        assert done.status == "completed", done
        assert done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
            3,
            3,
            0,
        )
        assert done.error_file_id is None
        assert done.in_progress_at and done.finalizing_at and done.completed_at
        output = read_lines(client, done.output_file_id)
        assert [line["custom_id"] for line in output] == ["c0", "c1", "c2"]
        for line in output:
            assert line["id"].startswith("batch_req_")
            assert line["error"] is None
            assert line["response"]["status_code"] == 200
            assert line["response"]["body"]["object"] == "chat.completion"
        stored = client.files.retrieve(done.output_file_id)
        assert stored.purpose == "batch_output"
        # One ledger row per line (and the API's own requests), each priced at half.
        rows = line_rows(batch_gateway.database_url, key_id, "/v1/chat/completions", 3)
        assert {row.request_id for row in rows} == {f"{batch.id}-{n}" for n in (1, 2, 3)}
        for row in rows:
            full = row.prompt_tokens * 1 + row.completion_tokens * 2
            assert row.cost_micros == round(full * 0.5)


def test_create_is_validated(batch_gateway: BatchGateway, model: str) -> None:
    secret, _ = batch_gateway.tenant_key("create")
    with batch_gateway.client(secret) as client:
        file_id = upload(client, [chat_line("a", model)])
        url = batch_gateway.url + "/v1/batches"
        cases = [
            (
                {"input_file_id": file_id, "endpoint": "/v1/images", "completion_window": "24h"},
                400,
                "endpoint",
            ),
            (
                {"input_file_id": file_id, "endpoint": "/v1/completions", "completion_window": "1h"},
                400,
                "completion_window",
            ),
            ({"endpoint": "/v1/completions", "completion_window": "24h"}, 400, "input_file_id"),
            (
                {"input_file_id": "file-nope", "endpoint": "/v1/completions", "completion_window": "24h"},
                404,
                "input_file_id",
            ),
        ]
        for body, status, param in cases:
            assert envelope(httpx.post(url, json=body, headers=bearer(secret)), status)["param"] == param
        other = client.files.create(file=("a.txt", b"{}"), purpose="user_data").id
        body = {"input_file_id": other, "endpoint": "/v1/completions", "completion_window": "24h"}
        assert envelope(httpx.post(url, json=body, headers=bearer(secret)), 400)["param"] == "input_file_id"
        assert list(client.batches.list()) == []


def test_file_level_problems_fail_the_batch(batch_gateway: BatchGateway, model: str) -> None:
    secret, _ = batch_gateway.tenant_key("invalid")
    with batch_gateway.client(secret) as client:
        lines = [
            chat_line("a", model),
            chat_line("a", model),  # duplicate custom_id
            {**chat_line("b", model), "url": "/v1/completions"},
            {**chat_line("c", model), "method": "GET"},
        ]
        file_id = client.files.create(
            file=(
                "in.jsonl",
                b"".join([*(__import__("json").dumps(x).encode() + b"\n" for x in lines), b"not json\n"]),
            ),
            purpose="batch",
        ).id
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        failed = wait_until(client, batch.id, {"failed", "completed"})
        assert failed.status == "failed"
        assert failed.failed_at is not None
        assert failed.errors is not None and failed.errors.data is not None
        found = [(error.code, error.line) for error in failed.errors.data]
        assert found == [
            ("duplicate_custom_id", 2),
            ("invalid_url", 3),
            ("invalid_method", 4),
            ("invalid_json_line", 5),
        ]
        assert failed.output_file_id is None and failed.error_file_id is None


def test_tenant_isolation(batch_gateway: BatchGateway, model: str) -> None:
    owner, _ = batch_gateway.tenant_key("owner")
    stranger, _ = batch_gateway.tenant_key("stranger")
    with batch_gateway.client(owner) as client, batch_gateway.client(stranger) as other:
        file_id = upload(client, [chat_line("a", model)])
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        with pytest.raises(openai.NotFoundError):
            other.batches.retrieve(batch.id)
        with pytest.raises(openai.NotFoundError):
            other.batches.cancel(batch.id)
        assert list(other.batches.list()) == []
        # Another tenant's file cannot be a batch's input either.
        with pytest.raises(openai.NotFoundError):
            other.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        done = wait_until(client, batch.id, {"completed"})
        with pytest.raises(openai.NotFoundError):
            other.files.content(done.output_file_id)
        assert [item.id for item in client.batches.list()] == [batch.id]


def completion_line(custom_id: str, model: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/completions",
        "body": {"model": model, "prompt": "Once upon", "max_tokens": 2, **body},
    }


def embedding_line(custom_id: str, model: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": model, "input": f"line {custom_id}", **body},
    }


def test_two_hundred_lines_of_chat_completions_and_embeddings(
    batch_gateway: BatchGateway, model: str, embedding_model: str
) -> None:
    """OpenAI's batch takes one endpoint (every line's `url` is the batch's): the 200 lines are three
    batches run at once, 80 chat, 80 completions and 40 embeddings, one invalid request in each."""
    secret, _ = batch_gateway.tenant_key("mixed")
    plans = {
        "/v1/chat/completions": [chat_line(f"chat-{i}", model) for i in range(80)]
        + [chat_line("chat-bad", "no-such-model")],
        "/v1/completions": [completion_line(f"cmpl-{i}", model) for i in range(80)]
        + [completion_line("cmpl-bad", model, max_tokens=-1)],
        "/v1/embeddings": [embedding_line(f"emb-{i}", embedding_model) for i in range(40)]
        + [{**embedding_line("emb-bad", embedding_model), "body": {"model": embedding_model}}],
    }
    with batch_gateway.client(secret) as client:
        batches = {
            endpoint: client.batches.create(
                input_file_id=upload(client, lines),
                endpoint=endpoint,  # type: ignore[arg-type]
                completion_window="24h",
            ).id
            for endpoint, lines in plans.items()
        }
        outputs: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for endpoint, batch_id in batches.items():
            done = wait_until(client, batch_id, {"completed", "failed"}, timeout=900)
            assert done.status == "completed", done
            valid = len(plans[endpoint]) - 1
            assert done.request_counts is not None
            assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
                valid + 1,
                valid,
                1,
            )
            outputs += read_lines(client, done.output_file_id)
            errors += read_lines(client, done.error_file_id)
        expected = [
            line["custom_id"] for lines in plans.values() for line in lines if "bad" not in line["custom_id"]
        ]
        assert len(expected) == 200
        assert sorted(line["custom_id"] for line in outputs) == sorted(expected)  # each exactly once
        assert all(line["response"]["status_code"] == 200 and line["error"] is None for line in outputs)
        objects = {line["response"]["body"]["object"] for line in outputs}
        assert objects == {"chat.completion", "text_completion", "list"}
        assert sorted(line["custom_id"] for line in errors) == ["chat-bad", "cmpl-bad", "emb-bad"]
        statuses = {line["custom_id"]: line["response"]["status_code"] for line in errors}
        assert statuses == {"chat-bad": 404, "cmpl-bad": 400, "emb-bad": 400}
        assert all(line["error"]["message"] for line in errors)
        assert {line["error"]["code"] for line in errors if line["custom_id"] == "chat-bad"} == {
            "model_not_found"
        }


def test_cancel_mid_run_keeps_the_answered_lines(batch_gateway: BatchGateway, model: str) -> None:
    secret, _ = batch_gateway.tenant_key("cancel")
    with batch_gateway.client(secret) as client:
        lines = [chat_line(f"c{i}", model, max_tokens=8) for i in range(400)]
        batch = client.batches.create(
            input_file_id=upload(client, lines), endpoint="/v1/chat/completions", completion_window="24h"
        )
        wait_for(
            lambda: (client.batches.retrieve(batch.id).request_counts or _zero()).completed >= 8, timeout=300
        )
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        assert cancelling.cancelling_at is not None
        done = wait_until(client, batch.id, {"cancelled"}, timeout=120)
        assert done.cancelled_at is not None
        assert done.request_counts is not None
        answered = done.request_counts.completed
        assert 8 <= answered < 400
        output = read_lines(client, done.output_file_id)
        assert len(output) == answered
        assert len({line["custom_id"] for line in output}) == answered
        # A finished batch cannot be cancelled again.
        response = httpx.post(batch_gateway.url + f"/v1/batches/{batch.id}/cancel", headers=bearer(secret))
        assert envelope(response, 409)["code"] == "batch_not_cancellable"


def _zero() -> Any:
    from openai.types.batch_request_counts import BatchRequestCounts

    return BatchRequestCounts(total=0, completed=0, failed=0)


def test_lines_act_as_the_batch_s_key_and_stop_working_once_it_is_revoked(
    batch_gateway: BatchGateway, model: str
) -> None:
    """Lines are admitted as the key that created the batch, looked up by id: once the key is revoked,
    the lines not yet sent are 401s in the error file (the batch keeps no secret to go on with)."""
    admin = batch_gateway.admin
    tenant = admin.tenant("revoked-batch")
    secret, key = admin.key(tenant["id"], "creator")
    reader, _ = admin.key(tenant["id"], "reader")
    with batch_gateway.client(secret) as client:
        file_id = upload(client, [chat_line(f"r{i}", model, max_tokens=8) for i in range(300)])
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        wait_for(
            lambda: (client.batches.retrieve(batch.id).request_counts or _zero()).completed >= 8, timeout=300
        )
    admin.revoke(key["id"])
    # The batch still ends, its files written; the tenant's other keys read it.
    with batch_gateway.client(reader) as client:
        done = wait_until(client, batch.id, {"completed"}, timeout=600)
        assert done.request_counts is not None
        assert done.request_counts.failed > 0
        assert done.request_counts.completed + done.request_counts.failed == 300
        errors = read_lines(client, done.error_file_id)
        assert {line["response"]["status_code"] for line in errors} == {401}
        assert {line["error"]["code"] for line in errors} == {"invalid_api_key"}


def test_the_engine_takes_priority_on_its_default_scheduler(engine_url: str, model: str) -> None:
    """vLLM 0.32 takes a batch line's `priority` on its default scheduler (fcfs), where it is ignored
    (its docstring says otherwise): TANTRA_BATCH_ENGINE_PRIORITY is safe to set on any vLLM engine
    and orders lines only where the engine runs `--scheduling-policy priority`."""
    body = {"model": model, "prompt": "Hi", "max_tokens": 1}
    for priority in (0, 10):
        answer = httpx.post(engine_url + "/v1/completions", json={**body, "priority": priority}, timeout=60)
        assert answer.status_code == 200, answer.text


def response_line(custom_id: str, model: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/responses",
        "body": {"model": model, "input": "Say hi", "max_output_tokens": 4, **body},
    }


def test_responses_lines_beside_a_chat_batch(batch_gateway: BatchGateway, model: str) -> None:
    """/v1/responses lines are served by the Responses API, `store: false` unless the line says
    otherwise (as OpenAI's batch), while a chat batch of the same key runs at once. OpenAI's batch has
    one endpoint, so the mix is two batches; a chat line in the responses batch fails its validation."""
    secret, key_id = batch_gateway.tenant_key("responses")
    responses = [response_line(f"resp-{i}", model) for i in range(6)]
    responses += [
        response_line("resp-stored", model, store=True),
        response_line("resp-bad", "no-such-model"),
        response_line("resp-stream", model, stream=True),
    ]
    chats = [chat_line(f"chat-{i}", model) for i in range(6)]
    with batch_gateway.client(secret) as client:
        mixed = client.batches.create(
            input_file_id=upload(client, [*responses[:2], chat_line("stray", model)]),
            endpoint="/v1/responses",
            completion_window="24h",
        )
        ids = [
            client.batches.create(
                input_file_id=upload(client, lines),
                endpoint=endpoint,  # type: ignore[arg-type]
                completion_window="24h",
            ).id
            for endpoint, lines in (("/v1/responses", responses), ("/v1/chat/completions", chats))
        ]
        done = [wait_until(client, batch_id, {"completed", "failed"}) for batch_id in ids]
        assert [batch.status for batch in done] == ["completed", "completed"]
        assert done[0].request_counts is not None
        assert (done[0].request_counts.completed, done[0].request_counts.failed) == (7, 2)
        output = read_lines(client, done[0].output_file_id)
        assert [line["custom_id"] for line in output] == [*(f"resp-{i}" for i in range(6)), "resp-stored"]
        bodies = {line["custom_id"]: line["response"]["body"] for line in output}
        for line in output:
            assert line["response"]["status_code"] == 200 and line["error"] is None
            body = line["response"]["body"]
            assert body["object"] == "response" and body["status"] in ("completed", "incomplete")
            assert body["output"] and body["usage"]["input_tokens"] > 0
        assert {custom_id: body["store"] for custom_id, body in bodies.items()} == {
            **{f"resp-{i}": False for i in range(6)},
            "resp-stored": True,
        }
        # Only the line that asked to be stored is a stored response.
        assert client.responses.retrieve(bodies["resp-stored"]["id"]).id == bodies["resp-stored"]["id"]
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(bodies["resp-0"]["id"])
        errors = {line["custom_id"]: line for line in read_lines(client, done[0].error_file_id)}
        assert {name: line["response"]["status_code"] for name, line in errors.items()} == {
            "resp-bad": 404,
            "resp-stream": 400,
        }
        assert errors["resp-stream"]["error"]["code"] == "unsupported_parameter"
        chat_output = read_lines(client, done[1].output_file_id)
        assert [line["response"]["body"]["object"] for line in chat_output] == ["chat.completion"] * 6
        invalid = wait_until(client, mixed.id, {"failed", "completed"})
        assert invalid.status == "failed" and invalid.errors is not None and invalid.errors.data is not None
        assert [(error.code, error.line) for error in invalid.errors.data] == [("invalid_url", 3)]
    # Each answered responses line is a ledger row of /v1/responses, keyed by batch and line, at half price.
    found: list[Any] = []

    def recorded() -> bool:
        rows = ledger_now(batch_gateway.database_url, key_id)
        found[:] = [row for row in rows if row.request_id.startswith(ids[0] + "-")]
        return len(found) >= 7

    wait_for(recorded, timeout=15, interval=0.3)
    served = [row for row in found if row.status == 200]
    assert {row.request_id for row in served} == {f"{ids[0]}-{n}" for n in range(1, 8)}
    for row in served:
        assert row.endpoint == "/v1/responses"
        assert row.cost_micros == round((row.prompt_tokens + row.completion_tokens * 2) * 0.5)


def test_batch_token_quota(batch_gateway: BatchGateway, model: str) -> None:
    """A key's `batch_tokens` (admin API) caps the input tokens of its batches not yet ended: a batch
    over it fails at validation with OpenAI's `token_limit_exceeded`, and the tokens of a batch that
    ended are released. Its lines still go through the key's ordinary limits and the ledger."""
    admin = batch_gateway.admin
    tenant = admin.tenant(f"quota-{model[-4:]}")
    secret, key = admin.key(tenant["id"], "quota", batch_tokens=400)
    assert key["limits"]["batch_tokens"] == 400
    # 8 lines of ~100 input tokens each (400 characters of prompt): 800 tokens.
    big = [completion_line(f"b{i}", model, prompt="x" * 400) for i in range(8)]
    small = big[:3]  # 300 tokens
    with batch_gateway.client(secret) as client:
        refused = client.batches.create(
            input_file_id=upload(client, big), endpoint="/v1/completions", completion_window="24h"
        )
        failed = wait_until(client, refused.id, {"failed", "completed"})
        assert failed.status == "failed" and failed.errors is not None and failed.errors.data is not None
        [error] = failed.errors.data
        assert (error.code, error.line, error.param) == ("token_limit_exceeded", None, None)
        assert "Limit: 400 enqueued tokens" in (error.message or "")
        assert failed.output_file_id is None and failed.error_file_id is None
        # The refused batch enqueued nothing: one of 300 fits, and once it has ended the next one does.
        for _ in range(2):
            fits = client.batches.create(
                input_file_id=upload(client, small), endpoint="/v1/completions", completion_window="24h"
            )
            done = wait_until(client, fits.id, {"failed", "completed"})
            assert done.status == "completed", done
        # Raised by the admin API (PATCH), the quota takes the big batch.
        admin.patch_key(key["id"], batch_tokens=1000)
        again = client.batches.create(
            input_file_id=upload(client, big), endpoint="/v1/completions", completion_window="24h"
        )
        assert wait_until(client, again.id, {"failed", "completed"}).status == "completed"
