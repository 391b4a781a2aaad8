"""dpytest (0.7) as far as the Discord bot's tests need it, and what dpytest lacks: starting a
thread from a message (`POST /channels/{id}/messages/{id}/threads`), answered like Discord does
(a public thread, registered in its guild so messages in it reach the bot). Slash commands are not
simulated by dpytest: their callbacks are called with an `Interaction` stand-in (`Interacting`)."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import discord
import discord.ext.test as dpytest
from discord.ext.test import backend
from tantra_discord import Answerer, DiscordConfig, TantraBot


async def _start_thread_with_message(
    channel_id: int, message_id: int, *, name: str, auto_archive_duration: int = 1440, **_: Any
) -> dict[str, Any]:
    state = backend.get_state()
    channel = state.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    data: dict[str, Any] = {
        "id": message_id,  # Discord gives a thread started from a message the message's id
        "guild_id": channel.guild.id,
        "parent_id": channel_id,
        "owner_id": state.self_id,
        "name": name,
        "type": discord.ChannelType.public_thread.value,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": auto_archive_duration,
            "archive_timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
            "locked": False,
        },
    }
    channel.guild._add_thread(discord.Thread(guild=channel.guild, state=state, data=cast(Any, data)))
    return data


async def started_bot(answerer: Answerer) -> TantraBot:
    """The bot on dpytest's fake Discord: one guild, one text channel, one member."""
    intents = discord.Intents.default()
    intents.message_content = True
    intents.members = True
    bot = TantraBot(answerer, intents=intents)
    await bot._async_setup_hook()
    dpytest.configure(bot)
    cast(Any, bot.http).start_thread_with_message = _start_thread_with_message
    return bot


async def sent() -> AsyncIterator[discord.Message]:
    """The bot's messages sent since the last call, oldest first."""
    while not dpytest.sent_queue.empty():
        yield dpytest.get_message()


class Interacting:
    """A slash command's interaction as far as the commands use it; what they say is recorded
    (and `original_response` / `followup.send` give dpytest messages in the channel, editable)."""

    def __init__(self, channel: Any, guild_id: int | None) -> None:
        self.channel, self.guild_id = channel, guild_id
        self.said: list[str] = []
        self.response = self
        self.followup = self
        self._original: discord.Message | None = None

    async def send_message(self, content: str, **_: Any) -> None:
        self.said.append(content)
        self._original = await self.channel.send(content)

    async def original_response(self) -> discord.Message:
        assert self._original is not None
        return self._original

    async def send(self, content: str, **_: Any) -> discord.Message:
        message: discord.Message = await self.channel.send(content)
        return message


def config(gateway_url: str, api_key: str, model: str, **overrides: Any) -> DiscordConfig:
    return DiscordConfig(gateway_url, api_key, model, sync_commands=False, edit_interval_s=0.0, **overrides)


def shown(channel_id: int, author_id: int) -> list[str]:
    """What `author_id`'s messages in a channel say now (dpytest keeps each edit's content)."""
    messages: list[Any] = cast(Any, backend._cur_config).messages.get(channel_id, [])
    return [m["content"] for m in messages if int(m["author"]["id"]) == author_id]


def commands(bot: TantraBot) -> dict[str, Callable[..., Awaitable[None]]]:
    """The `/tantra` subcommands' callbacks, by name (called as Discord would: interaction first)."""
    group = cast(Any, bot.tree.get_commands()[0])
    return {command.name: command.callback for command in group.commands}
