"""What a request needs of a model, read from its JSON body in one pass without I/O: its media, its
size in tokens (estimated from characters, as the limiter's estimate does), the features it uses and
the text a task classifier reads. Chat completions, completions and the Responses API bodies."""

from __future__ import annotations

import math
from typing import Any

from gateway.routing.rules import Asked

# As gateway/limits/estimate.py: about four characters per token, plus a few per message.
_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4
# Content part types by the modality they carry (chat's and the Responses API's spellings).
_MEDIA = {
    "image_url": "image",
    "input_image": "image",
    "image_embeds": "image",
    "input_audio": "audio",
    "audio_url": "audio",
    "video_url": "video",
}


def asked_of(payload: dict[str, Any]) -> Asked:
    """The needs of a chat (`messages`), completions (`prompt`) or Responses (`input`) body."""
    turns = _turns(payload)
    chars = sum(len(text) for _, text, _ in turns)
    modalities = frozenset(modality for _, _, media in turns for modality in media)
    user = [text for role, text, _ in turns if role == "user"]
    completion = _int(payload.get("max_completion_tokens")) or _int(payload.get("max_tokens"))
    completion = completion or _int(payload.get("max_output_tokens"))
    return Asked(
        prompt_tokens=math.ceil(chars / _CHARS_PER_TOKEN) + _PER_MESSAGE * len(turns),
        completion_tokens=completion,
        modalities=modalities,
        features=_features(payload),
        text=user[-1] if user else "",
    )


def _turns(payload: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(role, text, media modalities) of each message or input item, in order."""
    turns: list[tuple[str, str, list[str]]] = []
    if isinstance(payload.get("instructions"), str):
        turns.append(("system", payload["instructions"], []))
    messages = payload.get("messages")
    if messages is None:
        messages = payload.get("input")
    if messages is None:
        prompt = payload.get("prompt")
        prompts = prompt if isinstance(prompt, list) else [prompt]
        return turns + [("user", p, []) for p in prompts if isinstance(p, str)]
    if isinstance(messages, str):
        return [*turns, ("user", messages, [])]
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, dict):
            role = str(message.get("role") or message.get("type") or "user")
            turns.append((role, *_content(message.get("content", message.get("output")))))
    return turns


def _content(content: Any) -> tuple[str, list[str]]:
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    media: list[str] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        kind = _MEDIA.get(str(part.get("type"))) or next((_MEDIA[key] for key in part if key in _MEDIA), None)
        if kind is not None:
            media.append(kind)
    return "\n".join(texts), media


def _features(payload: dict[str, Any]) -> frozenset[str]:
    found = set()
    if payload.get("tools") or payload.get("functions"):
        found.add("tools")
    formats = [payload.get("response_format"), (payload.get("text") or {}).get("format")]
    for fmt in formats:
        if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
            found.add(str(fmt["type"]))
    include = payload.get("include")
    logprobs = payload.get("logprobs")
    # Chat's `logprobs: true`; completions' `logprobs: N` (0 included: the chosen token's).
    asks_logprobs = logprobs is True or type(logprobs) is int or payload.get("top_logprobs")
    if asks_logprobs or (isinstance(include, list) and "message.output_text.logprobs" in include):
        found.add("logprobs")
    return frozenset(found)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
