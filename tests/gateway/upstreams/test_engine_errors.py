"""vLLM's error bodies (as vLLM 0.32 sends them) re-coded the way OpenAI reports the same cases."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import (
    ContextLengthExceeded,
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    UpstreamError,
)
from gateway.upstreams import engine_error


def vllm_body(message: str, param: str | None, code: int, kind: str = "BadRequestError") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def test_prompt_too_long() -> None:
    body = vllm_body(
        "This model's maximum context length is 2048 tokens. However, your prompt contains at least 2049 "
        "input tokens, which exceeds this limit even without any output tokens. (parameter=input_tokens, "
        "value=2049)",
        "input_tokens",
        400,
    )
    chat = engine_error(400, body, prompt_param="messages")
    assert isinstance(chat, ContextLengthExceeded)
    assert chat.body()["error"] | {"message": ""} == {
        "message": "",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    assert engine_error(400, body, prompt_param="prompt").param == "prompt"


def test_completion_budget_too_large() -> None:
    body = vllm_body("max_tokens=5000 cannot be greater than max_model_len=2048.", "max_tokens", 400)
    error = engine_error(400, body)
    assert isinstance(error, ContextLengthExceeded)
    assert error.param == "max_tokens"


def test_unknown_model() -> None:
    body = vllm_body("The model `nope` does not exist.", "model", 404, "NotFoundError")
    error = engine_error(404, body)
    assert isinstance(error, ModelNotFound)
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")


def test_other_client_error_keeps_status_and_param() -> None:
    error = engine_error(400, vllm_body("bad logit bias", "logit_bias", 400))
    assert isinstance(error, InvalidRequest)
    assert (error.status, error.type, error.param, error.code) == (
        400,
        "invalid_request_error",
        "logit_bias",
        None,
    )


@pytest.mark.parametrize(
    ("status", "kind", "expected_status"), [(500, UpstreamError, 500), (503, EngineUnavailable, 503)]
)
def test_server_errors(status: int, kind: type, expected_status: int) -> None:
    error = engine_error(status, b"Internal Server Error")
    assert isinstance(error, kind)
    assert error.status == expected_status
    assert error.message == "Internal Server Error"
    assert error.type == "server_error"


def test_empty_body() -> None:
    assert engine_error(502, b"").message == "The engine answered with status 502."
