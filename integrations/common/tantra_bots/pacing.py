"""Streaming an answer by editing chat messages: how often to edit (both Slack's chat.update and
Discord's message edits are rate limited), how to cut an answer into the platform's message size,
and what the user is told when the gateway refuses."""

from __future__ import annotations

import time
from collections.abc import Callable

import openai

# Shown after a partial answer while it still streams.
STREAMING = " …"


class Throttle:
    """At most one edit per `interval_s`: `due()` says whether one may go now, `mark()` after it."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last = clock()

    def due(self) -> bool:
        return self._clock() - self._last >= self.interval_s

    def mark(self) -> None:
        self._last = self._clock()


def pages(text: str, limit: int) -> list[str]:
    """`text` cut into messages of at most `limit` characters, at the last line break (else space)
    of each page when there is one in its second half, otherwise hard. (discord.py's
    commands.Paginator wraps pages in code-block prefixes and needs a Bot; this is the plain cut.)"""
    out: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind("\n"), -1)
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:
            cut = limit
        out.append(text[:cut])
        text = text[cut:].lstrip("\n ") if cut < limit else text[cut:]
    out.append(text)
    return out


def brief_error(error: BaseException) -> str:
    """What the user sees (the operators get the whole error in the log): the gateway's own
    message for a refusal (a rate limit, a bad model name), else a generic line."""
    if isinstance(error, openai.APIStatusError):
        # The SDK's `message` prefixes "Error code: 429 - "; the envelope's own message reads better.
        body = error.body if isinstance(error.body, dict) else {}
        return f"Tantra: {body.get('message') or error.message}"
    if isinstance(error, openai.APIConnectionError):
        return "Tantra cannot be reached right now; try again shortly."
    return "Something went wrong; the operators have the details."
