"""The Discord bot on dpytest's fake Discord, against a scripted stand-in of the gateway's SDK
calls (the real gateway and engine: test_discord_bot.py): a mention starts a thread holding one
conversation, later messages there continue it, DMs, long answers paged at 2000 characters, edits
throttled, attachments as content parts, refusals told briefly, the /tantra commands."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import discord.ext.test as dpytest
import httpx
import openai
import pytest
from discord.ext.test import backend
from tantra_discord import Answerer, EditStream, TantraBot

from tests.clients.discord_support import Interacting, commands, config, shown, started_bot
from tests.clients.events import delta as text_delta


class _Stream:
    def __init__(self, deltas: list[str]) -> None:
        self._deltas = deltas

    async def __aiter__(self) -> Any:
        for delta in self._deltas:
            yield text_delta(delta)


class _Tantra:
    """The AsyncOpenAI calls the bot makes, scripted and recorded."""

    def __init__(self, deltas: list[str], error: Exception | None = None) -> None:
        self.created: list[dict[str, Any]] = []
        self.asked: list[dict[str, Any]] = []
        self.deltas, self.error = deltas, error
        self.conversations = SimpleNamespace(create=self._create)
        self.responses = SimpleNamespace(create=self._respond)
        self.audio = SimpleNamespace(transcriptions=SimpleNamespace(create=self._transcribe))

    async def _create(self, **fields: Any) -> Any:
        self.created.append(fields)
        return SimpleNamespace(id=f"conv_{len(self.created)}")

    async def _respond(self, **fields: Any) -> _Stream:
        if self.error:
            raise self.error
        self.asked.append(fields)
        return _Stream(self.deltas)

    async def _transcribe(self, **fields: Any) -> Any:
        return SimpleNamespace(text=f"words of {fields['file'][0]}")


async def _bot(
    deltas: list[str], error: Exception | None = None, **overrides: Any
) -> tuple[TantraBot, _Tantra]:
    answerer = Answerer(config("http://gw", "sk", "tantra-tiny", **overrides))
    tantra = _Tantra(deltas, error)
    answerer.tantra = cast(Any, tantra)
    bot = await started_bot(answerer)
    return bot, tantra


async def test_a_mention_starts_a_thread_that_keeps_one_conversation() -> None:
    bot, tantra = await _bot(["hello ", "world"])
    channel = dpytest.get_config().channels[0]
    assert bot.user is not None
    await dpytest.message(f"<@{bot.user.id}> Say hello", channel=channel)
    thread = channel.guild.threads[0]
    assert thread.parent_id == channel.id and thread.name == "Say hello"
    assert shown(thread.id, bot.user.id) == ["hello world"]
    await dpytest.message("And again?", channel=thread)  # no mention needed in the bot's thread
    assert shown(thread.id, bot.user.id) == ["hello world", "hello world"]
    assert [a["conversation"] for a in tantra.asked] == ["conv_1", "conv_1"]
    assert tantra.asked[1]["input"] == "And again?" and tantra.asked[0]["input"] == "Say hello"
    assert tantra.created[0]["metadata"]["discord_thread"] == str(thread.id)
    await dpytest.message("not for the bot", channel=channel)  # no mention, not its thread
    assert len(tantra.asked) == 2
    await dpytest.message(f"<@{bot.user.id}> Another topic", channel=channel)
    assert tantra.asked[-1]["conversation"] == "conv_2"
    await dpytest.empty_queue()


async def test_a_direct_message_is_answered_in_its_conversation() -> None:
    bot, tantra = await _bot(["yes"])
    member = dpytest.get_config().members[0]
    dm = await member.create_dm()
    await dpytest.message("Say yes", channel=dm, member=member)
    await dpytest.message("Again", channel=dm, member=member)
    assert bot.user is not None and shown(dm.id, bot.user.id) == ["yes", "yes"]
    assert [a["conversation"] for a in tantra.asked] == ["conv_1", "conv_1"]
    assert tantra.created[0]["metadata"]["discord_guild"] == "dm"
    await dpytest.empty_queue()


async def test_a_long_answer_continues_in_follow_up_messages() -> None:
    words = [f"word{i:04d} " for i in range(450)]  # 4050 characters
    bot, _ = await _bot(words)
    channel = dpytest.get_config().channels[0]
    assert bot.user is not None
    await dpytest.message(f"<@{bot.user.id}> Talk", channel=channel)
    pages = shown(channel.guild.threads[0].id, bot.user.id)
    assert len(pages) == 3 and all(len(p) <= 2000 for p in pages)
    assert " ".join(pages).split() == "".join(words).split()
    await dpytest.empty_queue()


async def test_attachments_go_as_content_parts(tmp_path: Path) -> None:
    bot, tantra = await _bot(["seen"], max_file_bytes=10_000)
    files = {
        "notes.txt": b"the plan",
        "cat.png": b"\x89PNG\r\n\x1a\n",
        "report.pdf": b"%PDF-1.4",
        "voice.wav": b"RIFF",
        "bundle.zip": b"PK",
        "huge.txt": b"x" * 20_000,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    channel = dpytest.get_config().channels[0]
    assert bot.user is not None
    paths = [str(backend.make_attachment(tmp_path / n).url) for n in files]
    await dpytest.message(f"<@{bot.user.id}> Look", channel=channel, attachments=paths)
    [message] = tantra.asked[0]["input"]
    kinds = [p["type"] for p in message["content"]]
    assert kinds == ["input_text", "input_text", "input_image", "input_file", "input_text"]
    question, notes, image, pdf, voice = message["content"]
    left_out = "bundle.zip (unsupported type), huge.txt (too large)"
    assert question["text"] == f"Look\n(Attachments left out: {left_out})"
    assert notes["text"] == "Attached file notes.txt:\nthe plan"
    assert image["image_url"] == "data:image/png;base64,iVBORw0KGgo="
    assert pdf["filename"] == "report.pdf" and pdf["file_data"] == "data:application/pdf;base64,JVBERi0xLjQ="
    assert voice["text"] == "Transcript of the attached audio voice.wav:\nwords of voice.wav"
    await dpytest.empty_queue()


async def test_a_refusal_is_told_briefly() -> None:
    request = httpx.Request("POST", "http://gw/v1/responses")
    refusal = openai.RateLimitError(
        "Rate limit reached.",
        response=cast(Any, httpx.Response(429, request=request)),
        body={"message": "Rate limit reached."},
    )
    bot, _ = await _bot([], error=refusal)
    channel = dpytest.get_config().channels[0]
    assert bot.user is not None
    await dpytest.message(f"<@{bot.user.id}> hi", channel=channel)
    assert shown(channel.guild.threads[0].id, bot.user.id) == [":warning: Tantra: Rate limit reached."]
    await dpytest.empty_queue()


class _Message:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def edit(self, *, content: str) -> None:
        self.log.append(content)

    async def delete(self) -> None:
        self.log.append("(deleted)")


async def test_edits_are_throttled_and_the_last_is_whole() -> None:
    edits: list[str] = []
    clock = iter([0, 0.5, 1.2, 1.2, 1.5, 2.3, 2.3])

    async def send(text: str) -> _Message:
        raise AssertionError("one page")

    stream = EditStream(_Message(edits), send, 1.0, clock=lambda: next(clock))
    for delta in "abcd":
        await stream.add(delta)
    assert await stream.finish() == "abcd"
    assert edits == ["ab …", "abcd …", "abcd"]


async def test_the_slash_commands() -> None:
    bot, tantra = await _bot(["an ", "answer"])
    channel = dpytest.get_config().channels[0]
    callbacks = commands(bot)
    assert set(callbacks) == {"model", "models", "reset", "ask"}

    async def call(command: str, where: Any, **arguments: Any) -> Interacting:
        interaction = Interacting(where, channel.guild.id)
        await callbacks[command](interaction, **arguments)
        return interaction

    assert (await call("model", channel, name="other")).said == ["This channel now talks to `other`."]
    assert (await call("model", channel)).said == ["This channel talks to `other`."]
    ask = await call("ask", channel, question="What now?")
    assert tantra.asked[0]["model"] == "other" and tantra.asked[0]["input"] == "What now?"
    assert bot.user is not None and shown(channel.id, bot.user.id)[-1] == "an answer"
    assert ask.said == ["…"]
    assert bot.user is not None
    await dpytest.message(f"<@{bot.user.id}> In a thread", channel=channel)
    thread = channel.guild.threads[-1]
    assert tantra.asked[-1]["model"] == "other"  # the channel's threads follow its model
    assert (await call("reset", thread)).said[0].startswith("Forgot 1 ")
    assert (await call("reset", channel)).said[0].startswith("Forgot 1 ")  # the /tantra ask one
    await dpytest.empty_queue()


def test_the_bot_asks_for_message_content_and_pings_no_one() -> None:
    bot = TantraBot(Answerer(config("http://gw", "sk", "m")))
    assert bot.intents.message_content and bot.intents.guilds and bot.intents.dm_messages
    # What the model writes pings no one.
    assert bot.allowed_mentions is not None and bot.allowed_mentions.to_dict() == {"parse": []}


async def test_a_bare_mention_gets_a_hint_not_a_gateway_call() -> None:
    bot, tantra = await _bot(["x"])
    channel = dpytest.get_config().channels[0]
    assert bot.user is not None
    await dpytest.message(f"<@{bot.user.id}>", channel=channel)
    assert shown(channel.id, bot.user.id)[0].startswith("Ask me something")
    assert not tantra.asked and not channel.guild.threads
    await dpytest.empty_queue()


def test_configuration_from_the_environment_and_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tantra_discord.__main__ import config_from_env, main

    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    monkeypatch.setenv("TANTRA_API_KEY_FILE", str(key))
    monkeypatch.setenv("TANTRA_BASE_URL", "http://tantra:8000")
    monkeypatch.setenv("TANTRA_MAX_OUTPUT_TOKENS", "256")
    monkeypatch.setenv("DISCORD_SYNC_COMMANDS", "false")
    found = config_from_env()
    assert (found.api_key, found.gateway_url, found.max_output_tokens) == (
        "sk-from-file",
        "http://tantra:8000",
        256,
    )
    assert found.sync_commands is False and found.edit_interval_s == 1.0 and found.message_limit == 2000
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.delenv("DISCORD_TOKEN_FILE", raising=False)
    with pytest.raises(SystemExit, match="DISCORD_TOKEN"):
        main()


async def test_one_answer_at_a_time_per_thread() -> None:
    """Two messages in one thread: the second's answer starts after the first's ends, so the
    conversation holds question, answer, question, answer."""
    import asyncio

    answerer = Answerer(config("http://gw", "sk", "m"))
    events: list[str] = []

    class Slow(_Tantra):
        async def _respond(self, **fields: Any) -> Any:
            events.append("start " + fields["input"])
            await asyncio.sleep(0.05)
            events.append("end " + fields["input"])
            return _Stream(["ok"])

    answerer.tantra = cast(Any, Slow([]))
    log: list[str] = []

    async def send(text: str) -> _Message:
        return _Message(log)

    await asyncio.gather(
        *(answerer.reply(("g", "c", "t"), q, [], _Message(log), send) for q in ("one", "two"))
    )
    assert events == ["start one", "end one", "start two", "end two"]
