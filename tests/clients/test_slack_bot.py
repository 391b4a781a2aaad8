"""The Slack bot: signed requests (an app_mention event, a DM, the /tantra slash command) verified
by Bolt and answered; a tampered signature refused with 401. The bot's Web API calls go to a local
stand-in of Slack's Web API (slack_sdk's `base_url`); the answers come from the real gateway and
engine, through one Tantra conversation per Slack thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

import openai
import pytest
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from tantra_slack import Answerer, BotConfig, build_app

SECRET = "test-signing-secret"
MAX_OUTPUT_TOKENS = 16


class SlackStandIn:
    """Slack's Web API as far as the bot uses it, recording each call (method, form fields)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                is_json = "json" in self.headers.get("content-type", "")
                fields = json.loads(raw) if is_json else dict(parse_qsl(raw))
                method = self.path.rsplit("/", 1)[-1]
                stand_in.calls.append((method, fields))
                answer: dict[str, Any] = {"ok": True}
                if method == "auth.test":
                    answer |= {"user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1"}
                if method == "chat.postMessage":
                    answer |= {"ts": f"{time.time():.6f}", "channel": fields.get("channel")}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for_final(self, method: str = "chat.update", timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            finals = [f for m, f in self.calls if m == method and not str(f.get("text", "")).endswith("…")]
            if finals:
                return finals[-1]
            time.sleep(0.2)
        raise AssertionError(f"no final {method}; calls: {self.calls}")


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn()
    yield stand_in
    stand_in.server.shutdown()


@pytest.fixture
def bot(slack: SlackStandIn, gateway_url: str, api_key: str, model: str) -> tuple[Any, Answerer]:
    answerer = Answerer(
        # The tiny random model never says its end: without a cap each answer runs to the context's.
        BotConfig(
            gateway_url=gateway_url,
            api_key=api_key,
            model=model,
            update_interval_s=0.05,
            max_output_tokens=MAX_OUTPUT_TOKENS,
        )
    )
    app = build_app(answerer, signing_secret=SECRET, client=WebClient(token="xoxb-test", base_url=slack.url))
    return app, answerer


def _signed(body: str, content_type: str, *, tamper: bool = False) -> BoltRequest:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=body)
    if tamper:
        body = body.replace("Say", "Sai")
    headers: dict[str, str | Sequence[str]] = {
        "content-type": [content_type],
        "x-slack-request-timestamp": [timestamp],
        "x-slack-signature": [signature or ""],
    }
    return BoltRequest(body=body, headers=headers)


def _event(event: dict[str, Any]) -> str:
    return json.dumps(
        {"type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": "Ev1", "event": event}
    )


pytestmark = pytest.mark.engine


def test_a_signed_mention_is_answered_in_its_thread_by_the_gateway(
    bot: tuple[Any, Answerer], slack: SlackStandIn, api_key: str, gateway_url: str
) -> None:
    app, answerer = bot
    event = {"type": "app_mention", "user": "U1", "text": "<@UBOT> Say hello", "ts": "100.1", "channel": "C1"}
    response = app.dispatch(_signed(_event(event), "application/json"))
    assert response.status == 200
    final = slack.wait_for_final()
    posted = [f for m, f in slack.calls if m == "chat.postMessage"]
    assert posted[0]["thread_ts"] == "100.1" and posted[0]["channel"] == "C1"
    assert final["text"] and not final["text"].startswith(":warning:"), final
    # The thread is one Tantra conversation holding the question and the answer.
    conversation = answerer._conversations[("T1", "C1", "100.1")]
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=api_key) as tantra:
        items = list(tantra.conversations.items.list(conversation, order="asc"))
    assert [i.type for i in items][:2] == ["message", "message"]
    assert "Say hello" in json.dumps(items[0].model_dump())


def test_a_tampered_signature_is_refused(bot: tuple[Any, Answerer], slack: SlackStandIn) -> None:
    app, _ = bot
    event = {"type": "app_mention", "user": "U1", "text": "<@UBOT> Say hi", "ts": "1.1", "channel": "C1"}
    response = app.dispatch(_signed(_event(event), "application/json", tamper=True))
    assert response.status == 401
    time.sleep(0.5)
    assert not [m for m, _ in slack.calls if m.startswith("chat.")]


def test_the_slash_command_chooses_the_model_and_resets(bot: tuple[Any, Answerer], model: str) -> None:
    app, answerer = bot
    form = {
        "command": "/tantra",
        "text": f"model {model}",
        "team_id": "T1",
        "channel_id": "C9",
        "user_id": "U1",
    }
    response = app.dispatch(_signed(urlencode(form), "application/x-www-form-urlencoded"))
    assert response.status == 200 and model in response.body
    assert answerer.model("T1", "C9") == model
    form["text"] = "models"
    response = app.dispatch(_signed(urlencode(form), "application/x-www-form-urlencoded"))
    assert model in response.body  # the gateway's model list
    form["text"] = "reset"
    response = app.dispatch(_signed(urlencode(form), "application/x-www-form-urlencoded"))
    assert response.status == 200 and "Forgot 0" in response.body


def test_a_direct_message_is_answered(bot: tuple[Any, Answerer], slack: SlackStandIn) -> None:
    app, _ = bot
    event = {
        "type": "message",
        "channel_type": "im",
        "user": "U1",
        "text": "Say yes",
        "ts": "5.5",
        "channel": "D1",
    }
    assert app.dispatch(_signed(_event(event), "application/json")).status == 200
    assert slack.wait_for_final()["channel"] == "D1"
