"""Prefix-cache affinity: requests that share a prompt's start go to the same replica, whose
prefix cache already holds it (system prompts, few-shot examples, a conversation)."""

from __future__ import annotations

from typing import Any

import orjson


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
