"""What a chat completion created with `store: true` keeps: the request's messages (as the client
sent them, before media parts are turned into text), its metadata and the parameters OpenAI
echoes, and the answer: a JSON answer as it is, a streamed one assembled from the deltas the relay
already parses (content, reasoning, refusal, tool calls, logprobs), so that the stored completion
says what the client saw. Nothing here runs for a request without `store: true`."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.store.completions import StoredCompletionRow

# The request's parameters a stored completion shows, as OpenAI's stored objects do.
_ECHOED = (
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "max_completion_tokens",
    "max_tokens",
    "n",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
)
# The answer's own top-level fields kept besides id, created, model, choices and usage.
_ANSWER_FIELDS = ("system_fingerprint", "service_tier")
_USER_MAX = 256

Observer = Callable[[dict[str, Any]], None]


class Capture:
    """One `store: true` request: made at admission, completed by its answer, then `row()`."""

    def __init__(
        self,
        *,
        request_id: str,
        tenant_id: str | None,
        key_id: str | None,
        payload: dict[str, Any],
        metadata: dict[str, str],
    ) -> None:
        self.request_id = request_id
        self.tenant_id = tenant_id
        self.key_id = key_id
        self.metadata = metadata
        self.created_at = datetime.now(UTC).replace(tzinfo=None)
        # Media parts are replaced in place later (their text for the model): keep the client's.
        self.messages = [_copy(message) for message in payload.get("messages") or []]
        self.fields = {name: payload[name] for name in _ECHOED if payload.get(name) is not None}
        user = payload.get("user")
        self.end_user = user[:_USER_MAX] if isinstance(user, str) and user else None
        self.stream: StreamAssembler | None = None

    def answered(self, answer: bytes) -> StoredCompletionRow | None:
        """The stored completion of a JSON answer (None: not a completion, nothing to keep)."""
        try:
            body = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            return None
        return self._row(body, body["choices"])

    def observer(self, then: Observer | None) -> Observer:
        """The stream's event reader: assembles the answer, then hands the event to `then`."""
        assembler = self.stream = StreamAssembler()
        if then is None:
            return assembler.see

        def both(body: dict[str, Any]) -> None:
            assembler.see(body)
            then(body)

        return both

    def streamed(self) -> StoredCompletionRow | None:
        """The stored completion of a finished stream (None: it said nothing)."""
        stream = self.stream
        if stream is None or stream.head is None:
            return None
        return self._row({**stream.head, "usage": stream.usage}, stream.choices())

    def _row(self, body: dict[str, Any], choices: list[Any]) -> StoredCompletionRow:
        completion_id = body.get("id")
        created = body.get("created")
        extra = {name: body[name] for name in _ANSWER_FIELDS if body.get(name) is not None}
        usage = body.get("usage")
        return StoredCompletionRow(
            id=str(completion_id)[:160] if completion_id else f"chatcmpl-{secrets.token_hex(16)}",
            model=str(body.get("model") or "")[:200],
            created=created if isinstance(created, int) else int(self.created_at.timestamp()),
            created_at=self.created_at,
            request_id=self.request_id,
            tenant_id=self.tenant_id,
            created_by=self.key_id,
            end_user=self.end_user,
            metadata=self.metadata,
            messages=self.messages,
            choices=choices,
            usage=usage if isinstance(usage, dict) else None,
            fields={**self.fields, **extra},
        )


def _copy(message: Any) -> Any:
    """A message whose content list is its own (the parts themselves are replaced, not changed)."""
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        return {**message, "content": list(message["content"])}
    return message


class StreamAssembler:
    """A streamed answer put back together, one choice per `index`, from the deltas."""

    def __init__(self) -> None:
        self.head: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self._choices: dict[int, _Choice] = {}

    def see(self, body: dict[str, Any]) -> None:
        if self.head is None and body.get("id") is not None:
            self.head = {key: body.get(key) for key in ("id", "created", "model")}
        for name in _ANSWER_FIELDS:
            if body.get(name) is not None and self.head is not None:
                self.head[name] = body[name]
        usage = body.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for choice in body.get("choices") or ():
            if isinstance(choice, dict):
                index = choice.get("index")
                key = index if isinstance(index, int) else 0
                self._choices.setdefault(key, _Choice(key)).add(choice)

    def choices(self) -> list[dict[str, Any]]:
        return [self._choices[index].done() for index in sorted(self._choices)]


class _Choice:
    def __init__(self, index: int) -> None:
        self.index = index
        self.role = "assistant"
        self.texts: dict[str, list[str]] = {}
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[Any] = []
        self.finish_reason: str | None = None

    def add(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if isinstance(delta.get("role"), str):
                self.role = delta["role"]
            # `reasoning` (vLLM 0.32) and `reasoning_content` (its alias, services/reasoning.py) both.
            for name in ("content", "reasoning", "reasoning_content", "refusal"):
                piece = delta.get(name)
                if isinstance(piece, str) and piece:
                    self.texts.setdefault(name, []).append(piece)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._tool_call(call)
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
            self.logprobs.extend(logprobs["content"])
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]

    def _tool_call(self, call: dict[str, Any]) -> None:
        index = call.get("index")
        kept = self.tool_calls.setdefault(
            index if isinstance(index, int) else len(self.tool_calls),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if call.get("id"):
            kept["id"] = call["id"]
        if call.get("type"):
            kept["type"] = call["type"]
        function = call.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                kept["function"]["name"] += function["name"]
            if function.get("arguments"):
                kept["function"]["arguments"] += function["arguments"]

    def done(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role,
            "content": "".join(self.texts["content"]) if "content" in self.texts else None,
        }
        for name in ("reasoning", "reasoning_content", "refusal"):
            if name in self.texts:
                message[name] = "".join(self.texts[name])
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        return {
            "index": self.index,
            "message": message,
            "logprobs": {"content": self.logprobs} if self.logprobs else None,
            "finish_reason": self.finish_reason,
        }
