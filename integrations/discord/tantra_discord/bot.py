"""The discord.py client: mentions in guild channels (each answered in a thread started from the
message, one Tantra conversation per thread; later messages in the bot's threads need no mention),
mentions in other threads, direct messages (one conversation per DM channel), and the `/tantra`
slash commands (tantra_discord.commands)."""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
from discord import app_commands
from tantra_bots import ThreadKey

from tantra_discord.answerer import Answerer
from tantra_discord.commands import tantra_commands

log = logging.getLogger("tantra_discord")

_MENTION = re.compile(r"<@!?\d+>\s*")
# Discord's limit on a thread's name.
_THREAD_NAME = 100


def thread_key(channel: Any, guild_id: int | None, message_id: int | None = None) -> ThreadKey:
    """(guild or "dm", channel, thread): a thread is its own key under its parent channel; a DM or
    a channel is its own thread (the `/tantra ask` conversation of the channel); `message_id` keys
    a mention answered in place when no thread could be started."""
    guild = str(guild_id) if guild_id is not None else "dm"
    if isinstance(channel, discord.Thread):
        return guild, str(channel.parent_id), str(channel.id)
    return guild, str(channel.id), str(message_id or channel.id)


class TantraBot(discord.Client):
    def __init__(self, answerer: Answerer, *, intents: discord.Intents | None = None, **options: Any) -> None:
        if intents is None:
            # Reading a mention's words needs the (privileged) message content intent.
            intents = discord.Intents.default()
            intents.message_content = True
        # A model's answer must never ping anyone (@everyone, a user, a role): no mention resolves.
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(intents=intents, **options)
        self.answerer = answerer
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(tantra_commands(answerer))

    async def setup_hook(self) -> None:
        if self.answerer.config.sync_commands:
            await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None:
            return
        if (
            message.guild is not None
            and self.user not in message.mentions
            and not self._ours(message.channel)
        ):
            return
        text = _MENTION.sub("", message.content).strip()
        if not text and not message.attachments:
            await message.reply("Ask me something after the mention (or `/tantra ask`).")
            return
        place, key = await self._place(message, text)
        first = await place.send("…")
        await self.answerer.reply(key, text, message.attachments, first, lambda page: place.send(page))

    def _ours(self, channel: Any) -> bool:
        """A thread the bot started: every message in it is for the bot, mention or not."""
        return (
            isinstance(channel, discord.Thread) and self.user is not None and channel.owner_id == self.user.id
        )

    async def _place(self, message: discord.Message, text: str) -> tuple[Any, ThreadKey]:
        """Where to answer: a thread, the DM, or (a thread could not be started: no permission) the
        channel, keyed by the message."""
        channel = message.channel
        if isinstance(channel, discord.TextChannel):
            try:
                thread = await message.create_thread(name=(text or "Tantra")[:_THREAD_NAME])
            except discord.HTTPException:
                log.warning(
                    "could not start a thread in %s; answering in the channel", channel.id, exc_info=True
                )
                return channel, thread_key(channel, message.guild.id if message.guild else None, message.id)
            return thread, thread_key(thread, thread.guild.id)
        return channel, thread_key(channel, message.guild.id if message.guild else None)
