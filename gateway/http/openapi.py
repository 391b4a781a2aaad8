"""The API's own description at /openapi.json and /docs: every route with its request and response
schemas and examples, streaming included, and OpenAI's error envelope wherever an error can come.

The routes declare what is theirs (`inference_responses`); `install_openapi` adds what holds for
every route: the envelope on 400 (FastAPI's own 422 is answered as OpenAI's 400 here), and on 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.protocol import ErrorResponse
from gateway.protocol.audio import Transcription, TranscriptionDiarized, TranscriptionVerbose
from gateway.protocol.responses import ChatCompletion, Completion

_CHAT_STREAM_EXAMPLE = (
    'data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1767225600,'
    '"model":"tantra-tiny","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
    '"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1767225600,'
    '"model":"tantra-tiny","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":"stop"}]}\n\n'
    'data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1767225600,'
    '"model":"tantra-tiny","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}\n\n'
    "data: [DONE]\n\n"
)
_COMPLETION_STREAM_EXAMPLE = (
    'data: {"id":"cmpl-abc","object":"text_completion","created":1767225600,"model":"tantra-tiny",'
    '"choices":[{"index":0,"text":" world","finish_reason":null}]}\n\n'
    "data: [DONE]\n\n"
)
_STREAM_ERROR_EXAMPLE = (
    'data: {"error":{"message":"The engine stopped sending tokens in time.","type":"server_error",'
    '"param":null,"code":"engine_timeout"}}\n\ndata: [DONE]\n\n'
)
# Before OpenAPI 3.2 (`itemSchema`), a text/event-stream schema describes each event.
_SSE_EVENT = {
    "type": "object",
    "description": "One server-sent event: `data` holds a chunk as JSON, an error envelope, or `[DONE]`.",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}
_CHAT_EXAMPLE = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1767225600,
    "model": "tantra-tiny",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}
_COMPLETION_EXAMPLE = {
    "id": "cmpl-abc",
    "object": "text_completion",
    "created": 1767225600,
    "model": "tantra-tiny",
    "choices": [{"index": 0, "text": " world", "finish_reason": "length"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "simple": {
            "summary": "One question",
            "value": {
                "model": "tantra-tiny",
                "messages": [{"role": "user", "content": "Hello!"}],
                "max_completion_tokens": 20,
            },
        },
        "stream": {
            "summary": "Streamed, with usage at the end",
            "value": {
                "model": "tantra-tiny",
                "messages": [{"role": "user", "content": "Tell me a story."}],
                "max_completion_tokens": 20,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        },
    },
    "/v1/completions": {
        "simple": {
            "summary": "Continue a text",
            "value": {"model": "tantra-tiny", "prompt": "Hello", "max_tokens": 5},
        }
    },
}
_ERROR_EXAMPLE = {
    "error": {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}


def inference_responses(path: str) -> dict[int | str, dict[str, Any]]:
    """The 200 answer of a completion route: JSON, or SSE when the request sets `stream: true`."""
    chat = path == "/v1/chat/completions"
    stream_example = _CHAT_STREAM_EXAMPLE if chat else _COMPLETION_STREAM_EXAMPLE
    return {
        200: {
            "model": ChatCompletion if chat else Completion,
            "description": "The completion as JSON; with `stream: true`, server-sent events instead: "
            "one `data:` line per chunk (the JSON shape above, `object` ending in `.chunk` for chat), "
            "a final usage chunk with `choices: []` when `stream_options.include_usage` is set, and "
            "`data: [DONE]` last. An error after the stream began is one `data:` event holding the "
            "error envelope, then `data: [DONE]`.",
            "content": {
                "application/json": {"example": _CHAT_EXAMPLE if chat else _COMPLETION_EXAMPLE},
                "text/event-stream": {
                    "schema": _SSE_EVENT,
                    "examples": {
                        "stream": {"summary": "A stream", "value": stream_example},
                        "error": {"summary": "A failure mid-stream", "value": _STREAM_ERROR_EXAMPLE},
                    },
                },
            },
        }
    }


def install_openapi(app: FastAPI, *, description: str) -> None:
    """Build the schema once, on first request, with the envelope added on every operation."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        # The envelope, and the answers that routes written by hand point at by name.
        for model in (ErrorResponse, Transcription, TranscriptionVerbose, TranscriptionDiarized):
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, nested in definition.pop("$defs", {}).items():
                components.setdefault(name, nested)
            components.setdefault(model.__name__, definition)
        envelope = {"$ref": "#/components/schemas/ErrorResponse"}
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                _hoist_body_schema(operation, components)
                _document_errors(operation, envelope, authenticated=path.startswith("/v1/"))
                examples = REQUEST_EXAMPLES.get(path)
                body = operation.get("requestBody", {}).get("content", {}).get("application/json")
                if examples and body is not None:
                    body["examples"] = examples
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _hoist_body_schema(operation: dict[str, Any], components: dict[str, Any]) -> None:
    """A body schema written by hand (`model_json_schema()`) keeps its definitions under `$defs` and
    points at `#/$defs/...`, which means nothing at the top of an OpenAPI document: the definitions
    move to `components/schemas`, the references follow, and the body refers to its named model."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None or "$defs" not in content.get("schema", {}):
        return
    body = content["schema"]
    for name, definition in body.pop("$defs").items():
        components.setdefault(name, _rewrite_refs(definition))
    body = _rewrite_refs(body)
    title = body.get("title")
    if isinstance(title, str) and title not in components:
        components[title] = body
        body = {"$ref": f"#/components/schemas/{title}"}
    content["schema"] = body


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: value.replace("#/$defs/", "#/components/schemas/")
            if key == "$ref" and isinstance(value, str)
            else _rewrite_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


def _document_errors(operation: dict[str, Any], envelope: dict[str, Any], *, authenticated: bool) -> None:
    responses = operation.setdefault("responses", {})
    if authenticated:
        responses.setdefault(
            "401",
            {
                "description": "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
                "content": {"application/json": {"schema": envelope}},
            },
        )
    if "422" in responses:
        # FastAPI's own validation answer is re-coded as OpenAI's 400 by the app's handler.
        del responses["422"]
        responses.setdefault(
            "400",
            {
                "description": "Invalid request: the message and `param` say what to change.",
                "content": {"application/json": {"schema": envelope}},
            },
        )
    responses.setdefault(
        "500",
        {
            "description": "An unexpected failure, in OpenAI's error envelope.",
            "content": {"application/json": {"schema": envelope, "example": _ERROR_EXAMPLE}},
        },
    )
