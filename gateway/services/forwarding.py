"""What the gateway reads or adds to a request's bytes on their way upstream, and reads of the answer."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.protocol.common import StreamOptions


def affinity_key(path: str, payload: dict[str, Any], chars: int) -> str | None:
    """The prompt's first `chars` characters: requests sharing them go to the same replica, whose
    prefix cache already holds that prefix (system prompts, few-shot examples, a conversation)."""
    if chars <= 0:
        return None
    if path == "/v1/chat/completions":
        parts: list[str] = []
        size = 0
        for message in payload.get("messages") or ():
            content = message.get("content") if isinstance(message, dict) else None
            text = content if isinstance(content, str) else orjson.dumps(content).decode()
            parts.append(text)
            size += len(text)
            if size >= chars:
                break
        return "\x1e".join(parts)[:chars] or None
    prompt = payload.get("prompt")
    text = prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()
    return text[:chars] or None


def asking_for_usage(body: bytes, options: StreamOptions | None) -> bytes:
    """The client's bytes with `stream_options.include_usage` set. The key is appended: JSON
    parsers keep the last of a repeated key, and every other byte stays as the client sent it."""
    wanted: dict[str, Any] = options.model_dump(exclude_none=True) if options is not None else {}
    wanted["include_usage"] = True
    trimmed = body.rstrip()
    return trimmed[:-1] + b',"stream_options":' + orjson.dumps(wanted) + b"}"


def usage_of(answer: bytes) -> dict[str, Any] | None:
    try:
        usage = orjson.loads(answer).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None
