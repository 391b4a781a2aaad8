"""Chat threads -> Tantra conversations (the Conversations API holds each thread's history; the map
is in the bot's memory, so after a restart a thread starts a new conversation), and the model each
place (a Slack channel, a Discord channel) chose."""

from __future__ import annotations

import threading
from typing import Any

# (workspace or guild, channel, thread): the Slack team/channel/thread ts, or the Discord
# guild ("dm" for direct messages)/parent channel/thread id.
ThreadKey = tuple[str, str, str]


def conversation_request(instructions: str | None, metadata: dict[str, str]) -> dict[str, Any]:
    """The `conversations.create` arguments for a new thread: the operator's instructions as its
    first (system) item, and metadata naming the chat thread."""
    items: list[dict[str, Any]] = []
    if instructions:
        items = [{"type": "message", "role": "system", "content": instructions}]
    return {"items": items, "metadata": metadata}


class ConversationBook:
    """Thread-safe (Bolt answers on worker threads; discord.py on one event loop)."""

    def __init__(self, default_model: str) -> None:
        self.default_model = default_model
        self.conversations: dict[ThreadKey, str] = {}
        self._models: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def get(self, key: ThreadKey) -> str | None:
        with self._lock:
            return self.conversations.get(key)

    def put(self, key: ThreadKey, conversation: str) -> None:
        with self._lock:
            self.conversations[key] = conversation

    def model(self, place: str, channel: str) -> str:
        return self._models.get((place, channel), self.default_model)

    def choose_model(self, place: str, channel: str, model: str) -> None:
        self._models[(place, channel)] = model

    def forget(self, place: str, channel: str, thread: str | None = None) -> int:
        """Forgets a channel's thread conversations (or only `thread`'s); the next message there
        starts a new conversation. Returns how many were forgotten."""
        with self._lock:
            gone = [k for k in self.conversations if k[:2] == (place, channel) and thread in (None, k[2])]
            for k in gone:
                del self.conversations[k]
        return len(gone)
