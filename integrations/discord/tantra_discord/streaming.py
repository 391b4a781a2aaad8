"""An answer streamed into Discord messages by editing them: at most one edit per interval (Discord
allows about five message edits per five seconds in a channel; discord.py waits out a 429 on its
own), cut into pages of Discord's 2000 characters, each page past the first a follow-up message."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from tantra_bots import Throttle, pages
from tantra_bots.pacing import STREAMING

# Discord's limit on a message's content.
MESSAGE_LIMIT = 2000


class Editable(Protocol):
    async def edit(self, *, content: str) -> object: ...

    async def delete(self) -> None: ...


class EditStream:
    """`first` is the placeholder already shown; `send` posts a follow-up (in the same thread, or
    the interaction's follow-up) and returns it."""

    def __init__(
        self,
        first: Editable,
        send: Callable[[str], Awaitable[Editable]],
        interval_s: float,
        *,
        limit: int = MESSAGE_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.messages: list[Editable] = [first]
        self._shown: list[str | None] = [None]
        self._send, self._limit = send, limit
        self._throttle = Throttle(interval_s, clock)
        self.text = ""

    async def add(self, delta: str) -> None:
        self.text += delta
        if self._throttle.due() and self.text.strip():
            await self._show(self.text + STREAMING)
            self._throttle.mark()

    async def finish(self) -> str:
        final = self.text.strip() or "(no answer)"
        await self._show(final)
        return final

    async def fail(self, notice: str) -> str:
        """What streamed so far stays; the notice follows it."""
        shown = (self.text.strip() + "\n" if self.text.strip() else "") + notice
        await self._show(shown)
        return notice

    async def _show(self, text: str) -> None:
        cut = pages(text, self._limit)
        for i, page in enumerate(cut):
            if i == len(self.messages):
                self.messages.append(await self._send(page))
                self._shown.append(page)
            elif self._shown[i] != page:
                await self.messages[i].edit(content=page)
                self._shown[i] = page
        # The streaming marker can push a last page over that the final text no longer needs.
        while len(self.messages) > len(cut):
            await self.messages.pop().delete()
            self._shown.pop()
