"""A request's JSON body: read within its size limit, screened, parsed, bounded, and validated
against OpenAI's schema.

Each step's cost is bounded before it runs on the event loop: the body by `max_body_bytes` (413);
the parse by `max_json_nodes` (400), counted in a worker process for bodies above
`screen_body_bytes` (screen.py; a smaller body cannot hold many more values than half its bytes);
then validation and token estimation, whose cost grows with the messages and content parts, by
`max_messages` and `max_content_parts` (400).
"""

from __future__ import annotations

import gc
from typing import Any

import orjson
from starlette.requests import Request

from gateway.admission.screen import BodyScreen, not_json
from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.protocol import InvalidParam, parse_request
from gateway.protocol.validation import RequestT
from gateway.settings.policy import Policy


async def read_request_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_json(body: bytes, policy: Policy, screen: BodyScreen | None) -> Any:
    """`body` parsed on the loop, once a worker has found it holds at most `max_json_nodes` values
    when it is large enough to hold more (a JSON value takes at least two bytes with its comma)."""
    threshold = policy.screen_body_bytes
    if screen is not None and threshold and len(body) > min(threshold, 2 * policy.max_json_nodes - 1):
        await screen.check(body, policy.max_json_nodes)
    return load_json(body)


# Bodies from this size are parsed with the garbage collector paused: a body of millions of small
# arrays otherwise triggers collection after collection during the parse (3 s instead of 0.9 s for
# 16 MiB of `[]`). A thread would not help: orjson holds the GIL for the whole parse.
_PAUSE_GC_FROM_BYTES = 64 * 1024


def load_json(body: bytes) -> Any:
    paused = len(body) >= _PAUSE_GC_FROM_BYTES and gc.isenabled()
    if paused:
        gc.disable()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise not_json() from None
    finally:
        if paused:
            gc.enable()


def check_shape(payload: Any, *, max_messages: int, max_parts: int) -> None:
    """400 when the body asks for more messages (or batched prompts) or content parts than allowed,
    checked on the parsed object before it is validated: counting is cheap, validating is not."""
    if not isinstance(payload, dict):
        return
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        _at_most("prompt", len(prompt), max_messages)
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return
    _at_most("messages", len(messages), max_messages)
    parts = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            parts += len(content)
    if parts > max_parts:
        raise InvalidRequest(
            f"Invalid 'messages': too many content parts. Expected at most {max_parts} over all "
            f"messages, but got {parts} instead.",
            param="messages",
            code="array_above_max_length",
        )


def _at_most(param: str, length: int, limit: int) -> None:
    if length > limit:
        raise InvalidRequest(
            f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, "
            f"but got an array with length {length} instead.",
            param=param,
            code="array_above_max_length",
        )


def validate(schema: type[RequestT], payload: Any) -> RequestT:
    """`payload` as `schema`, or OpenAI's 400 naming the first offending field."""
    try:
        return parse_request(schema, payload)
    except InvalidParam as exc:
        raise InvalidRequest(exc.message, param=exc.param, code=exc.code) from None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
