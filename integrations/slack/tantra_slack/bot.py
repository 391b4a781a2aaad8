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
from slack_bolt import App
from slack_sdk import WebClient

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


class Answerer:
    """Threads -> Tantra conversations (kept in memory: a restart starts threads afresh), the model
    each channel chose, and the streamed answer."""

    def __init__(self, config: BotConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._conversations: dict[tuple[str, str, str], str] = {}
        self._models: dict[tuple[str, str], str] = {}
        self._clients: dict[str, openai.OpenAI] = {}

    def client(self, team: str) -> openai.OpenAI:
        key = self.config.workspace_keys.get(team, self.config.api_key)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = openai.OpenAI(
                    base_url=self.config.gateway_url.rstrip("/") + "/v1", api_key=key
                )
            return self._clients[key]

    def model(self, team: str, channel: str) -> str:
        return self._models.get((team, channel), self.config.model)

    def choose_model(self, team: str, channel: str, model: str) -> None:
        self._models[(team, channel)] = model

    def reset(self, team: str, channel: str) -> int:
        """Forgets the conversations of a channel's threads; the next message starts a new one."""
        with self._lock:
            gone = [k for k in self._conversations if k[:2] == (team, channel)]
            for k in gone:
                del self._conversations[k]
        return len(gone)

    def _conversation(self, tantra: openai.OpenAI, team: str, channel: str, thread: str) -> str:
        with self._lock:
            found = self._conversations.get((team, channel, thread))
        if found is None:
            items: list[Any] = []
            if self.config.instructions:
                items = [{"type": "message", "role": "system", "content": self.config.instructions}]
            metadata = {"slack_team": team, "slack_channel": channel, "slack_thread": thread}
            found = tantra.conversations.create(items=items, metadata=metadata).id
            with self._lock:
                self._conversations[(team, channel, thread)] = found
        return found

    def answer(self, web: WebClient, team: str, channel: str, thread: str, text: str) -> str:
        """Posts a placeholder in the thread and edits it as the answer streams, at most once per
        `update_interval_s`, then with the whole answer. Errors: told briefly, logged fully."""
        placeholder = web.chat_postMessage(channel=channel, thread_ts=thread, text="…")
        ts = placeholder["ts"]
        try:
            tantra = self.client(team)
            conversation = self._conversation(tantra, team, channel, thread)
            stream = tantra.responses.create(
                model=self.model(team, channel), input=text, conversation=conversation, stream=True
            )
            answer, last = "", self._clock()
            for event in stream:
                if event.type == "response.output_text.delta":
                    answer += event.delta
                    if self._clock() - last >= self.config.update_interval_s and answer.strip():
                        web.chat_update(channel=channel, ts=ts, text=answer + " …")
                        last = self._clock()
            answer = answer.strip() or "(no answer)"
        except openai.APIStatusError as error:
            log.exception("Tantra refused an answer in %s/%s", channel, thread)
            answer = f":warning: Tantra: {error.message}"
        except Exception:
            log.exception("answering in %s/%s failed", channel, thread)
            answer = ":warning: Something went wrong; the operators have the details."
        web.chat_update(channel=channel, ts=ts, text=answer)
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
        answerer.answer(client, context.team_id or "", event["channel"], thread, text)

    @app.event("message")
    def on_message(event: dict[str, Any], context: Any, client: WebClient) -> None:
        # Direct messages only (channels answer mentions); never the bot's own or edited ones.
        if event.get("channel_type") != "im" or event.get("bot_id") or event.get("subtype"):
            return
        thread = event.get("thread_ts") or event["ts"]
        answerer.answer(client, context.team_id or "", event["channel"], thread, event.get("text", ""))

    @app.command("/tantra")
    def on_command(ack: Callable[..., None], command: dict[str, Any]) -> None:
        ack(answerer.command(command.get("team_id", ""), command["channel_id"], command.get("text", "")))

    return app
