"""The bot: Bolt listeners (mentions, DMs, `/tantra`) over an `Answerer` that keeps one Tantra
conversation per Slack thread and streams the answer into one Slack message by updating it."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.responses import ResponseTextDeltaEvent
from slack_bolt import App
from slack_sdk import WebClient
from tantra_bots import ConversationBook, Throttle, brief_error, conversation_request

from tantra_slack.files import input_with_files

log = logging.getLogger("tantra_slack")

_MENTION = re.compile(r"<@[A-Z0-9]+>\s*")


@dataclass
class BotConfig:
    gateway_url: str
    api_key: str
    model: str
    # team_id -> that workspace's Tantra API key (each workspace billed and limited on its own).
    workspace_keys: dict[str, str] = field(default_factory=dict)
    # Slack's chat.update is Tier 3 (about 50 a minute): one update a second per answer stays under.
    update_interval_s: float = 1.0
    instructions: str | None = None
    # Larger attached files are skipped (and the user told).
    max_file_bytes: int = 20_000_000
    # Attached audio is transcribed through the gateway with this model, the transcript sent.
    transcription_model: str = "whisper-1"
    # Each answer's cap (`max_output_tokens`); None leaves it to the gateway.
    max_output_tokens: int | None = None


class Answerer:
    """Threads -> Tantra conversations (kept in memory: a restart starts threads afresh), the model
    each channel chose, and the streamed answer."""

    def __init__(self, config: BotConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self.book = ConversationBook(config.model)
        self._conversations = self.book.conversations
        self._clients: dict[str, openai.OpenAI] = {}
        self._turns: dict[tuple[str, str, str], threading.Lock] = {}

    def client(self, team: str) -> openai.OpenAI:
        key = self.config.workspace_keys.get(team, self.config.api_key)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = openai.OpenAI(
                    base_url=self.config.gateway_url.rstrip("/") + "/v1", api_key=key
                )
            return self._clients[key]

    def model(self, team: str, channel: str) -> str:
        return self.book.model(team, channel)

    def choose_model(self, team: str, channel: str, model: str) -> None:
        self.book.choose_model(team, channel, model)

    def reset(self, team: str, channel: str) -> int:
        """Forgets the conversations of a channel's threads; the next message starts a new one."""
        return self.book.forget(team, channel)

    def _conversation(self, tantra: openai.OpenAI, team: str, channel: str, thread: str) -> str:
        found = self.book.get((team, channel, thread))
        if found is None:
            metadata = {"slack_team": team, "slack_channel": channel, "slack_thread": thread}
            request = conversation_request(self.config.instructions, metadata)
            found = tantra.conversations.create(**request).id
            self.book.put((team, channel, thread), found)
        return found

    def answer(
        self,
        web: WebClient,
        team: str,
        channel: str,
        thread: str,
        text: str,
        files: list[dict[str, Any]] | None = None,
    ) -> str:
        """Posts a placeholder in the thread and edits it as the answer streams, at most once per
        `update_interval_s`, then with the whole answer. `files` (the event's Slack file objects)
        go as content parts (tantra_slack.files). Errors: told briefly, logged fully."""
        placeholder = web.chat_postMessage(channel=channel, thread_ts=thread, text="…")
        ts = placeholder["ts"]
        with self._lock:
            turn = self._turns.setdefault((team, channel, thread), threading.Lock())
        # One answer at a time per thread (Bolt runs listeners on worker threads): the conversation
        # keeps question/answer order.
        with turn:
            answer = self._stream(web, team, channel, thread, text, files, ts)
        web.chat_update(channel=channel, ts=ts, text=answer)
        return answer

    def _stream(
        self,
        web: WebClient,
        team: str,
        channel: str,
        thread: str,
        text: str,
        files: list[dict[str, Any]] | None,
        ts: str,
    ) -> str:
        try:
            tantra = self.client(team)
            conversation = self._conversation(tantra, team, channel, thread)
            question = input_with_files(tantra, web, text, files or [], self.config)
            stream = tantra.responses.create(
                model=self.model(team, channel),
                input=question,
                conversation=conversation,
                stream=True,
                max_output_tokens=self.config.max_output_tokens,
            )
            answer, throttle = "", Throttle(self.config.update_interval_s, self._clock)
            for event in stream:
                if isinstance(event, ResponseTextDeltaEvent):
                    answer += event.delta
                    if throttle.due() and answer.strip():
                        web.chat_update(channel=channel, ts=ts, text=answer + " …")
                        throttle.mark()
            answer = answer.strip() or "(no answer)"
        except Exception as error:
            log.exception("answering in %s/%s failed", channel, thread)
            answer = ":warning: " + brief_error(error)
        return answer

    def command(self, team: str, channel: str, text: str) -> str:
        """`/tantra model <name>`, `/tantra models`, `/tantra reset`, `/tantra help`."""
        words = text.split()
        if words[:1] == ["model"] and len(words) == 2:
            self.choose_model(team, channel, words[1])
            return f"This channel now talks to `{words[1]}`."
        if words[:1] == ["model"]:
            return f"This channel talks to `{self.model(team, channel)}`."
        if words == ["models"]:
            names = [m.id for m in self.client(team).models.list()]
            return "Models: " + ", ".join(f"`{n}`" for n in names)
        if words == ["reset"]:
            count = self.reset(team, channel)
            return f"Forgot {count} thread conversation(s) here; new messages start afresh."
        return "`/tantra model [name]`, `/tantra models`, `/tantra reset`"


def build_app(answerer: Answerer, *, signing_secret: str, client: WebClient, **bolt: Any) -> App:
    """The Bolt app: every HTTP request's signature verified (Bolt's RequestVerification, on by
    default); the same listeners serve Socket Mode (see __main__)."""
    app = App(signing_secret=signing_secret, client=client, **bolt)

    @app.event("app_mention")
    def on_mention(event: dict[str, Any], context: Any, client: WebClient) -> None:
        text = _MENTION.sub("", event.get("text", "")).strip()
        thread = event.get("thread_ts") or event["ts"]
        answerer.answer(client, context.team_id or "", event["channel"], thread, text, event.get("files"))

    @app.event("message")
    def on_message(event: dict[str, Any], context: Any, client: WebClient) -> None:
        # Direct messages only (channels answer mentions); never the bot's own or edited ones. A
        # message with files has the subtype "file_share".
        if event.get("channel_type") != "im" or event.get("bot_id"):
            return
        if event.get("subtype") not in (None, "file_share"):
            return
        thread = event.get("thread_ts") or event["ts"]
        team, text = context.team_id or "", event.get("text", "")
        answerer.answer(client, team, event["channel"], thread, text, event.get("files"))

    @app.command("/tantra")
    def on_command(ack: Callable[..., None], command: dict[str, Any]) -> None:
        ack(answerer.command(command.get("team_id", ""), command["channel_id"], command.get("text", "")))

    return app
