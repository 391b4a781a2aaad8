"""What a piece of feedback rates, read from its store for the caller's tenant and copied as chat
messages: the prompt the model was given and the answer it wrote (docs/fine-tuning.md, "Feedback").

- A stored chat completion (`store: true`): its request's messages, and the choice rated.
- A stored response: its instructions as a system message, the input items it was given (the
  previous turns' too), and the text of its output messages.
- An item of a conversation: the items before it, and the item.

Responses items become chat messages by their text: `input_text`/`output_text` parts joined; an
item with no text (an image alone, a function call, reasoning) is left out. Another tenant's object
is the same 404 as one that never existed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import InvalidRequest, NotFound
from gateway.protocol.feedback import FeedbackCreate
from gateway.store.completions import CompletionStore
from gateway.store.conversations import ConversationNotFound, ConversationStore
from gateway.store.owned import Owner
from gateway.store.responses import ResponseStore

# What a chat message keeps of a stored request's message (vLLM's extras are dropped).
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id", "weight")
_TEXT_PARTS = ("input_text", "output_text", "text")


@dataclass(frozen=True)
class Exchange:
    target_type: str
    target_id: str
    conversation_id: str | None
    model: str | None
    prompt: list[dict[str, Any]]
    answer: dict[str, Any] | None

    @property
    def prompt_hash(self) -> str:
        return hashlib.sha256(orjson.dumps(self.prompt, option=orjson.OPT_SORT_KEYS)).hexdigest()


class FeedbackSources:
    """The stores feedback may point into (each None when its API is not served)."""

    def __init__(
        self,
        completions: CompletionStore | None,
        responses: ResponseStore | None,
        conversations: ConversationStore | None,
    ) -> None:
        self._completions = completions
        self._responses = responses
        self._conversations = conversations

    async def exchange(self, owner: Owner, asked: FeedbackCreate) -> Exchange:
        if asked.completion_id is not None:
            return await self._completion(owner, asked.completion_id, asked.choice_index)
        if asked.response_id is not None:
            return await self._response(owner, asked.response_id)
        assert asked.conversation_id is not None and asked.item_id is not None
        return await self._item(owner, asked.conversation_id, asked.item_id)

    async def _completion(self, owner: Owner, completion_id: str, index: int) -> Exchange:
        row = await self._completions.get(owner, completion_id) if self._completions else None
        if row is None:
            raise _missing("chat completion", completion_id, "completion_id")
        choices = {choice.get("index", n): choice for n, choice in enumerate(row.choices)}
        if index not in choices:
            raise InvalidRequest(
                f"The chat completion {completion_id} has no choice {index}.", param="choice_index"
            )
        prompt = [chat_message(m) for m in row.messages if isinstance(m, dict)]
        answer = chat_message(choices[index].get("message") or {})
        return Exchange("chat.completion", completion_id, None, row.model, prompt, answer)

    async def _response(self, owner: Owner, response_id: str) -> Exchange:
        row = await self._responses.get(owner, response_id) if self._responses else None
        if row is None:
            raise _missing("response", response_id, "response_id")
        instructions = row.body.get("instructions")
        prompt = [{"role": "system", "content": instructions}] if isinstance(instructions, str) else []
        prompt += _messages(row.input_items)
        texts = [m["content"] for m in _messages(row.body.get("output") or []) if m["role"] == "assistant"]
        answer = {"role": "assistant", "content": "".join(texts)} if texts else None
        return Exchange("response", response_id, None, row.model, prompt, answer)

    async def _item(self, owner: Owner, conversation_id: str, item_id: str) -> Exchange:
        if self._conversations is None:
            raise _missing("conversation", conversation_id, "conversation_id")
        try:
            items = (await self._conversations.items(owner, conversation_id)).items
        except ConversationNotFound:
            raise _missing("conversation", conversation_id, "conversation_id") from None
        place = next((n for n, item in enumerate(items) if item.get("id") == item_id), None)
        if place is None:
            raise NotFound(f"Item with id '{item_id}' not found.", param="item_id", code="not_found")
        rated = _messages(items[place : place + 1])
        answer = rated[0] if rated else None
        return Exchange("conversation.item", item_id, conversation_id, None, _messages(items[:place]), answer)


def chat_message(message: dict[str, Any]) -> dict[str, Any]:
    return {key: message[key] for key in _MESSAGE_KEYS if message.get(key) is not None}


def item_text(item: dict[str, Any]) -> str | None:
    """The text of a Responses message item (its content a string or parts), None without any."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts = [
        part["text"]
        for part in content
        if isinstance(part, dict) and part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str)
    ]
    return "".join(texts) if texts else None


def _messages(items: list[Any]) -> list[dict[str, Any]]:
    """Responses items as chat messages: the message items with text, in order."""
    out = []
    for item in items:
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            continue
        text, role = item_text(item), item.get("role")
        if text is not None and isinstance(role, str):
            out.append({"role": role, "content": text})
    return out


def _missing(kind: str, object_id: str, param: str) -> NotFound:
    # The same answer for an id that never existed and for another tenant's: nothing confirms it.
    return NotFound(f"No such {kind}: {object_id}", param=param, code="not_found")
