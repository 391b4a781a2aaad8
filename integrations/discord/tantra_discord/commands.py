"""`/tantra model [name]`, `/tantra models`, `/tantra reset`, `/tantra ask <question> [file]`: the
model is chosen per channel (its threads follow it); reset forgets the thread's conversation (in a
channel: all its threads'); ask answers in the interaction, in the channel's or thread's
conversation."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from tantra_discord.answerer import Answerer
from tantra_discord.streaming import Editable

log = logging.getLogger("tantra_discord")


def tantra_commands(answerer: Answerer) -> app_commands.Group:
    from tantra_discord.bot import thread_key

    group = app_commands.Group(name="tantra", description="Talk to Tantra")

    @group.command(name="model", description="Show or choose this channel's model")
    @app_commands.describe(name="A model the gateway serves (/tantra models)")
    async def model(interaction: discord.Interaction, name: str | None = None) -> None:
        guild, channel, _ = thread_key(interaction.channel, interaction.guild_id)
        if name:
            answerer.book.choose_model(guild, channel, name)
            await interaction.response.send_message(f"This channel now talks to `{name}`.")
        else:
            await interaction.response.send_message(
                f"This channel talks to `{answerer.book.model(guild, channel)}`."
            )

    @group.command(name="models", description="The models the gateway serves")
    async def models(interaction: discord.Interaction) -> None:
        try:
            names = await answerer.models()
            text = "Models: " + ", ".join(f"`{n}`" for n in names)
        except Exception as error:
            log.exception("listing the models failed")
            text = f":warning: {error}"
        await interaction.response.send_message(text[:2000], ephemeral=True)

    @group.command(name="reset", description="Forget the conversation here; the next message starts afresh")
    async def reset(interaction: discord.Interaction) -> None:
        guild, channel, thread = thread_key(interaction.channel, interaction.guild_id)
        in_thread = isinstance(interaction.channel, discord.Thread)
        count = answerer.book.forget(guild, channel, thread if in_thread else None)
        await interaction.response.send_message(
            f"Forgot {count} conversation(s) here; new messages start afresh."
        )

    @group.command(name="ask", description="Ask Tantra (the answer streams here)")
    @app_commands.describe(question="Your question", file="An image, PDF, audio or text file")
    async def ask(
        interaction: discord.Interaction, question: str, file: discord.Attachment | None = None
    ) -> None:
        key = thread_key(interaction.channel, interaction.guild_id)
        await interaction.response.send_message("…")
        first = await interaction.original_response()

        async def follow_up(page: str) -> Editable:
            return await interaction.followup.send(page, wait=True)

        await answerer.reply(key, question, [file] if file else [], first, follow_up)

    return group
