"""The Slack bot's answer logic against stand-ins (a scripted stream, a recording Web API): updates
are throttled to one per interval, one conversation per thread, errors told briefly. The real
gateway and Slack's signed requests: test_slack_bot.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import httpx
import openai
from tantra_slack import Answerer, BotConfig

from tests.clients.events import delta


class _Web:
    def __init__(self) -> None:
        self.updates: list[str] = []

    def chat_postMessage(self, **fields: Any) -> dict[str, str]:
        return {"ts": "1.0"}

    def chat_update(self, **fields: Any) -> None:
        self.updates.append(fields["text"])


class _Tantra:
    def __init__(self, deltas: list[str], error: Exception | None = None) -> None:
        self.created: list[dict[str, Any]] = []
        self.asked: list[str] = []
        self.conversations = SimpleNamespace(create=self._create)
        self.responses = SimpleNamespace(create=self._respond)
        self._deltas, self._error = deltas, error

    def _create(self, **fields: Any) -> Any:
        self.created.append(fields)
        return SimpleNamespace(id=f"conv_{len(self.created)}")

    def _respond(self, **fields: Any) -> Any:
        if self._error:
            raise self._error
        self.asked.append(fields["conversation"])
        return iter(delta(d) for d in self._deltas)


def _answerer(tantra: _Tantra, ticks: list[float]) -> Answerer:
    clock = iter(ticks)
    answerer = Answerer(BotConfig("http://gw", "sk", "m", update_interval_s=1.0), clock=lambda: next(clock))
    answerer._clients["sk"] = cast(Any, tantra)
    return answerer


def test_updates_are_throttled_and_the_last_is_whole() -> None:
    tantra, web = _Tantra(["a", "b", "c", "d"]), _Web()
    # start 0; deltas at 0.5 (too soon), 1.2 (update, then reads 1.2), 1.5 (too soon), 2.3 (update)
    answerer = _answerer(tantra, [0, 0.5, 1.2, 1.2, 1.5, 2.3, 2.3])
    assert answerer.answer(cast(Any, web), "T", "C", "9.9", "hi") == "abcd"
    assert web.updates == ["ab …", "abcd …", "abcd"]


def test_one_conversation_per_thread() -> None:
    tantra, web = _Tantra(["x"]), _Web()
    answerer = _answerer(tantra, [0.0] * 20)
    for thread in ("1", "1", "2"):
        answerer.answer(cast(Any, web), "T", "C", thread, "hi")
    assert tantra.asked == ["conv_1", "conv_1", "conv_2"]
    assert answerer.reset("T", "C") == 2


def test_a_refusal_is_told_briefly() -> None:
    request = httpx.Request("POST", "http://gw/v1/responses")
    refusal = openai.RateLimitError(
        "Rate limit reached.",
        response=cast(Any, httpx.Response(429, request=request)),
        body={"message": "Rate limit reached."},
    )
    web = _Web()
    _answerer(_Tantra([], error=refusal), [0.0] * 5).answer(cast(Any, web), "T", "C", "1", "hi")
    assert web.updates == [":warning: Tantra: Rate limit reached."]


def test_files_go_as_content_parts_downloaded_with_the_bot_token() -> None:
    """Slack's files are fetched from url_private_download with the bot token (a local stand-in
    of files.slack.com checks it), audio transcribed through the gateway, others named."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from slack_sdk import WebClient
    from tantra_slack.bot import BotConfig
    from tantra_slack.files import input_with_files

    class Files(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.headers.get("authorization") == "Bearer xoxb-test"
            body = {"/notes.txt": b"the plan", "/cat.png": b"\x89PNG", "/hi.mp3": b"ID3"}[self.path]
            self.send_response(200 if ok else 403)
            self.end_headers()
            self.wfile.write(body if ok else b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    transcribed: list[str] = []

    def transcribe(**fields: Any) -> Any:
        transcribed.append(fields["model"])
        return SimpleNamespace(text="spoken words")

    tantra = SimpleNamespace(audio=SimpleNamespace(transcriptions=SimpleNamespace(create=transcribe)))
    files = [
        {
            "name": "notes.txt",
            "mimetype": "text/plain",
            "size": 8,
            "url_private_download": base + "/notes.txt",
        },
        {"name": "cat.png", "mimetype": "image/png", "size": 4, "url_private_download": base + "/cat.png"},
        {"name": "hi.mp3", "mimetype": "audio/mpeg", "size": 3, "url_private_download": base + "/hi.mp3"},
        {"name": "big.pdf", "mimetype": "application/pdf", "size": 10**9, "url_private_download": base},
    ]
    try:
        web = WebClient(token="xoxb-test")
        question = input_with_files(cast(Any, tantra), web, "Look", files, BotConfig("http://gw", "sk", "m"))
    finally:
        server.shutdown()
    assert isinstance(question, list)
    text, notes, image, audio = question[0]["content"]
    assert text["text"] == "Look\n(Attachments left out: big.pdf (too large))"
    assert notes == {"type": "input_text", "text": "Attached file notes.txt:\nthe plan"}
    assert image["type"] == "input_image" and image["image_url"] == "data:image/png;base64,iVBORw=="
    assert audio["text"].endswith("spoken words") and transcribed == ["whisper-1"]
