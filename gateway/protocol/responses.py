"""OpenAI's response bodies, for the API's documentation: the gateway forwards the engine's bytes
unchanged and never builds these, so they are open (extra keys allowed) and loosely required."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class MediaUsage(_Open):
    """What the gateway derived from a request's images, files and video (docs/adapters.md)."""

    images: int = 0
    image_pixels: int = 0
    documents: int = 0
    pages: int = 0
    videos: int = 0
    video_seconds: float = 0.0
    video_frames: int = 0
    bytes: int = 0
    derived_text_chars: int = 0
    derived: list[str] = []


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int
    # Tantra's extra, only on requests whose media parts the gateway processed.
    tantra_media: MediaUsage | None = None


class ChatMessageOut(_Open):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(_Open):
    index: int
    message: ChatMessageOut
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletion(_Open):
    """A chat completion, as `POST /v1/chat/completions` answers without `stream`."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class CompletionChoice(_Open):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class Completion(_Open):
    """A text completion, as `POST /v1/completions` answers (each streamed event has this shape too,
    with `text` the new piece)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
