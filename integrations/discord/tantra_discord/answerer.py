"""The Discord bot's talk with the gateway (the openai SDK's async client): one Tantra conversation
per Discord thread (tantra_bots.ConversationBook), the question with its attachments as content
parts, and the streamed answer written by an EditStream. Errors: shown briefly, logged fully."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import openai
from openai.types.responses import ResponseTextDeltaEvent
from tantra_bots import (
    Attachment,
    ConversationBook,
    ThreadKey,
    brief_error,
    build_input,
    conversation_request,
    part_for,
    refusal,
    with_left_out,
)

from tantra_discord.streaming import MESSAGE_LIMIT, Editable, EditStream

log = logging.getLogger("tantra_discord")


@dataclass
class DiscordConfig:
    gateway_url: str
    api_key: str
    model: str
    # One edit a second per answer stays under Discord's five edits per five seconds per channel.
    edit_interval_s: float = 1.0
    instructions: str | None = None
    # Larger attachments are left out (the question says so). Discord's own upload limit is 10 MB
    # for most servers.
    max_file_bytes: int = 20_000_000
    # Attached audio is transcribed through the gateway with this model; the transcript is sent.
    transcription_model: str = "whisper-1"
    # The answer's token cap (None: the gateway's and model's own).
    max_output_tokens: int | None = None
    # Discord's limit on a message's content; longer answers continue in follow-up messages.
    message_limit: int = MESSAGE_LIMIT
    # Sync the /tantra commands with Discord when the bot starts (global commands).
    sync_commands: bool = True


class DiscordFile(Protocol):
    """What the bot uses of a discord.Attachment."""

    filename: str
    content_type: str | None
    size: int

    async def read(self) -> bytes: ...


class Answerer:
    def __init__(self, config: DiscordConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.book = ConversationBook(config.model)
        self._clock = clock
        # One answer at a time per thread: a second message waits, so the conversation's items
        # stay in question/answer order.
        self._turns: defaultdict[ThreadKey, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.tantra = openai.AsyncOpenAI(
            base_url=config.gateway_url.rstrip("/") + "/v1", api_key=config.api_key
        )

    async def conversation(self, key: ThreadKey) -> str:
        found = self.book.get(key)
        if found is None:
            guild, channel, thread = key
            metadata = {"discord_guild": guild, "discord_channel": channel, "discord_thread": thread}
            created = await self.tantra.conversations.create(
                **conversation_request(self.config.instructions, metadata)
            )
            found = created.id
            self.book.put(key, found)
        return found

    async def question(self, text: str, files: Sequence[DiscordFile]) -> str | list[Any]:
        """The Responses `input`: the text, with the attachments as content parts."""
        parts: list[dict[str, Any]] = []
        left_out: list[str] = []
        for file in files:
            reason = refusal(file.filename, file.content_type, file.size, self.config.max_file_bytes)
            if reason:
                left_out.append(reason)
                continue
            attachment = Attachment(file.filename, file.content_type, await file.read())
            if len(attachment.data) > self.config.max_file_bytes:  # a size the event understated
                left_out.append(f"{file.filename} (too large)")
                continue
            transcript = None
            if attachment.kind == "audio":
                transcribed = await self.tantra.audio.transcriptions.create(
                    model=self.config.transcription_model, file=(attachment.name, attachment.data)
                )
                transcript = transcribed.text
            part = part_for(attachment, transcript)
            if part is not None:
                parts.append(part)
        return build_input(with_left_out(text, left_out), parts)

    async def reply(
        self,
        key: ThreadKey,
        text: str,
        files: Sequence[DiscordFile],
        first: Editable,
        send: Callable[[str], Awaitable[Editable]],
    ) -> str:
        """Streams the answer to `text` in the thread's conversation into `first` (and follow-ups
        through `send`); returns what was shown last."""
        async with self._turns[key]:
            return await self._reply(key, text, files, first, send)

    async def _reply(
        self,
        key: ThreadKey,
        text: str,
        files: Sequence[DiscordFile],
        first: Editable,
        send: Callable[[str], Awaitable[Editable]],
    ) -> str:
        writer = EditStream(
            first, send, self.config.edit_interval_s, limit=self.config.message_limit, clock=self._clock
        )
        try:
            conversation = await self.conversation(key)
            stream = await self.tantra.responses.create(
                model=self.book.model(key[0], key[1]),
                input=await self.question(text, files),
                conversation=conversation,
                max_output_tokens=self.config.max_output_tokens,
                stream=True,
            )
            async for event in stream:
                if isinstance(event, ResponseTextDeltaEvent):
                    await writer.add(event.delta)
            return await writer.finish()
        except Exception as error:
            log.exception("answering in %s failed", "/".join(key))
            return await writer.fail(":warning: " + brief_error(error))

    async def models(self) -> list[str]:
        return [m.id async for m in self.tantra.models.list()]
