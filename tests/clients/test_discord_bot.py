"""The Discord bot driven by dpytest against the session's real gateway and engine: a mention is
answered in a new thread whose Tantra conversation holds the exchange, a follow-up there continues
it, a DM with a text attachment, a long answer continued in follow-up messages, `/tantra ask` and
`/tantra models`. Answers are capped at a few tokens to keep the engine's share small."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord.ext.test as dpytest
import openai
import pytest
from discord.ext.test import backend
from tantra_discord import Answerer, TantraBot

from tests.clients.discord_support import Interacting, commands, config, shown, started_bot

pytestmark = pytest.mark.engine


@pytest.fixture
async def bot(gateway_url: str, api_key: str, model: str) -> AsyncIterator[TantraBot]:
    answerer = Answerer(config(gateway_url, api_key, model, max_output_tokens=12))
    yield await started_bot(answerer)
    await dpytest.empty_queue()
    await answerer.tantra.close()


def _items(openai_client: openai.OpenAI, conversation: str, count: int) -> list[dict[str, Any]]:
    """The conversation's items once `count` are there (the gateway adds a streamed response's
    items as the stream ends, a moment after the last delta the bot showed)."""
    deadline = time.monotonic() + 15
    while True:
        items = [i.model_dump() for i in openai_client.conversations.items.list(conversation, order="asc")]
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.2)


def _answered(texts: list[str]) -> bool:
    return bool(texts) and all(t and not t.startswith(":warning:") and not t.endswith(" …") for t in texts)


async def test_a_mention_is_answered_in_a_thread_that_keeps_its_conversation(
    bot: TantraBot, openai_client: openai.OpenAI
) -> None:
    channel = dpytest.get_config().channels[0]
    assert bot.user is not None
    await dpytest.message(f"<@{bot.user.id}> Say hello", channel=channel)
    thread = channel.guild.threads[0]
    await dpytest.message("And again", channel=thread)  # the bot's thread: no mention needed
    answers = shown(thread.id, bot.user.id)
    assert len(answers) == 2 and _answered(answers), answers
    answerer = bot.answerer
    conversation = answerer.book.get((str(channel.guild.id), str(channel.id), str(thread.id)))
    assert conversation is not None
    items = _items(openai_client, conversation, 4)
    assert [(i["type"], i["role"]) for i in items] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    assert "Say hello" in json.dumps(items[0]) and "And again" in json.dumps(items[2])


async def test_a_direct_message_with_a_text_attachment(
    bot: TantraBot, openai_client: openai.OpenAI, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("the plan: ship on Friday")
    member = dpytest.get_config().members[0]
    dm = await member.create_dm()
    url = str(backend.make_attachment(notes).url)
    await dpytest.message("Summarize", channel=dm, member=member, attachments=[url])
    assert bot.user is not None
    assert _answered(shown(dm.id, bot.user.id)), shown(dm.id, bot.user.id)
    conversation = bot.answerer.book.get(("dm", str(dm.id), str(dm.id)))
    assert conversation is not None
    question = json.dumps(_items(openai_client, conversation, 2)[0])
    assert "Attached file notes.txt" in question and "ship on Friday" in question


async def test_a_long_answer_continues_in_follow_up_messages(
    gateway_url: str, api_key: str, model: str
) -> None:
    """Discord's 2000 characters would need a long generation: the same paging at 40."""
    answerer = Answerer(config(gateway_url, api_key, model, max_output_tokens=48, message_limit=40))
    bot = await started_bot(answerer)
    try:
        channel = dpytest.get_config().channels[0]
        assert bot.user is not None
        await dpytest.message(f"<@{bot.user.id}> Tell a story", channel=channel)
        pages = shown(channel.guild.threads[0].id, bot.user.id)
        assert len(pages) >= 2 and all(0 < len(p) <= 40 for p in pages), pages
    finally:
        await dpytest.empty_queue()
        await answerer.tantra.close()


async def test_slash_commands_ask_and_models(bot: TantraBot, model: str) -> None:
    channel = dpytest.get_config().channels[0]
    callbacks = commands(bot)
    models = Interacting(channel, channel.guild.id)
    await callbacks["models"](models)
    assert f"`{model}`" in models.said[0]
    ask = Interacting(channel, channel.guild.id)
    await callbacks["ask"](ask, question="Say yes")
    assert bot.user is not None and _answered(shown(channel.id, bot.user.id)[-1:])
    assert bot.answerer.book.get((str(channel.guild.id), str(channel.id), str(channel.id)))
