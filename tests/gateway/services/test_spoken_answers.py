"""The gateway's part in spoken chat answers, with a stand-in engine (httpx.MockTransport) whose
answers the test chooses, and real eSpeak NG: what the engine is sent, a tool call (no audio),
speech starting while the engine is still writing, the transcript piece a finish event carries, and
the JSON answer's shape. That the feature works end to end is test_chat_audio.py's, on real vLLM."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import psutil
import pytest

from gateway import Settings, create_app
from tests.audio_samples import needs_espeak
from tests.gateway.helpers import AdminClient, bearer, envelope, ledger_rows, wait_for
from tests.servers import ThreadedServer

pytestmark = needs_espeak
needs_lingua = pytest.mark.skipif(importlib.util.find_spec("lingua") is None, reason="lingua not installed")

MODEL = "tantra-tiny"
SPOKEN: dict[str, Any] = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "pcm16"}}
CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL}


class Engine:
    """Answers chat completions with what the test set; keeps the bodies it was sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.pieces: list[str] = []
        self.gap_s = 0.0
        self.message: dict[str, Any] = {"role": "assistant", "content": "Hello there. Bye."}

    @contextlib.contextmanager
    def answering(self, message: dict[str, Any]) -> Iterator[None]:
        """JSON answers are `message` for the block, then the default again."""
        self.message = message
        try:
            yield
        finally:
            self.message = {"role": "assistant", "content": "Hello there. Bye."}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            cards = [
                {"id": MODEL, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": 2048}
            ]
            return httpx.Response(200, json={"object": "list", "data": cards})
        if request.url.path != "/v1/chat/completions":
            return httpx.Response(200, json={})  # health probes
        body = orjson.loads(request.content)
        self.bodies.append(body)
        if body.get("stream"):
            return httpx.Response(200, content=self._events(), headers={"content-type": "text/event-stream"})
        usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
        choice = {"index": 0, "message": self.message, "finish_reason": "stop", "logprobs": None}
        answer = {**CHUNK, "object": "chat.completion", "choices": [choice], "usage": usage}
        return httpx.Response(200, json=answer)

    async def _events(self) -> AsyncIterator[bytes]:
        yield self._event({"role": "assistant", "content": ""})
        *pieces, last = self.pieces
        for piece in pieces:
            await asyncio.sleep(self.gap_s)
            yield self._event({"content": piece})
        yield self._event({"content": last}, finish="length")  # vLLM's last token rides on it
        usage = {
            "prompt_tokens": 5,
            "completion_tokens": len(self.pieces),
            "total_tokens": 5 + len(self.pieces),
        }
        yield b"data: " + orjson.dumps({**CHUNK, "choices": [], "usage": usage}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    @staticmethod
    def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return b"data: " + orjson.dumps({**CHUNK, "choices": [choice]}) + b"\n\n"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def gateway(gateway_settings: Callable[..., Settings], engine: Engine) -> Iterator[str]:
    app = create_app(gateway_settings(), http_client=httpx.AsyncClient(transport=httpx.MockTransport(engine)))
    with ThreadedServer(app) as server:
        yield server.url


@pytest.fixture(scope="module")
def key(gateway: str, admin_key: str) -> str:
    admin = AdminClient(gateway, admin_key)
    try:
        return admin.key(admin.tenant("spoken-answers")["id"], "spoken")[0]
    finally:
        admin.close()


def chat(gateway: str, key: str, **fields: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **fields}
    return httpx.post(gateway + "/v1/chat/completions", json=body, headers=bearer(key), timeout=60)


def events(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(part[6:]) for part in raw.split(b"\n\n") if part.startswith(b"data: {")]


def test_the_engine_is_sent_neither_modalities_nor_audio(gateway: str, key: str, engine: Engine) -> None:
    answer = chat(gateway, key, **SPOKEN, metadata={"a": "b"})
    assert answer.status_code == 200, answer.text
    sent = engine.bodies[-1]
    assert "modalities" not in sent and "audio" not in sent
    assert sent["metadata"] == {"a": "b"}  # everything else as the client wrote it
    message = answer.json()["choices"][0]["message"]
    assert message["content"] is None
    assert message["audio"]["transcript"] == "Hello there. Bye."
    assert len(base64.b64decode(message["audio"]["data"])) > 24_000  # raw pcm16: over half a second
    usage = answer.json()["usage"]
    assert usage["completion_tokens_details"] == {"audio_tokens": 0, "text_tokens": 4}
    assert usage["tantra_speech"]["characters"] == len("Hello there. Bye.")


def test_a_tool_call_has_no_audio(gateway: str, key: str, engine: Engine) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    with engine.answering({"role": "assistant", "content": None, "tool_calls": [call]}):
        answer = chat(gateway, key, **SPOKEN)
    message = answer.json()["choices"][0]["message"]
    assert message["tool_calls"] == [call]
    assert message.get("audio") is None


def test_speech_starts_while_the_engine_still_writes(gateway: str, key: str, engine: Engine) -> None:
    engine.pieces = ["First sentence", " is here.", " Second", " one", " comes", " later."]
    engine.gap_s = 0.4
    start = time.monotonic()
    arrivals: list[tuple[float, dict[str, Any]]] = []
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True, **SPOKEN}
    try:
        with httpx.stream(
            "POST", gateway + "/v1/chat/completions", json=body, headers=bearer(key), timeout=60
        ) as answer:
            buffer = b""
            for chunk in answer.iter_raw():
                buffer += chunk
                *complete, buffer = buffer.split(b"\n\n")
                arrivals += [
                    (time.monotonic() - start, event) for event in events(b"\n\n".join(complete) + b"\n\n")
                ]
    finally:
        engine.gap_s = 0.0
    deltas = [(at, event["choices"][0]["delta"]) for at, event in arrivals if event["choices"]]
    audio = [(at, delta["audio"]) for at, delta in deltas if "audio" in delta]
    first_data = next(at for at, piece in audio if "data" in piece)
    last_text = max(at for at, piece in audio if "transcript" in piece)
    # The first sentence is heard before the engine has written the second (2 s of gaps).
    assert first_data < last_text, (first_data, last_text)
    assert "".join(piece.get("transcript", "") for _, piece in audio) == "".join(engine.pieces)
    assert all("content" not in delta for _, delta in deltas)
    # Then: the expiry alone, the finish event (with nothing but its reason), no usage (not asked).
    assert audio[-1][1] == {"expires_at": audio[-1][1]["expires_at"]}
    finish = arrivals[-1][1]
    assert finish["choices"][0]["finish_reason"] == "length" and finish["choices"][0]["delta"] == {}
    assert all("usage" not in event for _, event in arrivals)


def test_a_stored_spoken_stream_is_there_once_done_is_read(gateway: str, key: str, engine: Engine) -> None:
    """The stored completion is kept before `[DONE]` leaves, as a text stream's is: a client that
    asks for it the moment the stream ends finds it (its transcript as the content)."""
    engine.pieces = ["Kept for", " later."]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True, "store": True}
    answer = httpx.post(
        gateway + "/v1/chat/completions", json={**body, **SPOKEN}, headers=bearer(key), timeout=60
    )
    assert answer.content.endswith(b"data: [DONE]\n\n")
    stored = httpx.get(gateway + "/v1/chat/completions/" + str(CHUNK["id"]), headers=bearer(key), timeout=10)
    assert stored.status_code == 200, stored.text
    assert stored.json()["choices"][0]["message"]["content"] == "Kept for later."


def test_a_stream_of_tool_calls_has_no_audio(gateway: str, key: str, engine: Engine) -> None:
    engine.pieces = [""]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True, **SPOKEN}
    answer = httpx.post(gateway + "/v1/chat/completions", json=body, headers=bearer(key), timeout=60)
    assert answer.status_code == 200
    assert answer.content.endswith(b"data: [DONE]\n\n")
    assert not any("audio" in e["choices"][0]["delta"] for e in events(answer.content) if e["choices"])


FRENCH = "Bonjour, je m'appelle Marie et j'habite à Paris. Je travaille dans une petite librairie."


def spoken_as(gateway: str, key: str, text: str, voice: str) -> bytes:
    """What /v1/audio/speech makes of `text` with `voice` (pcm): what a spoken answer must equal."""
    body = {"model": "tts-1", "voice": voice, "input": text, "response_format": "pcm"}
    response = httpx.post(gateway + "/v1/audio/speech", json=body, headers=bearer(key), timeout=60)
    assert response.status_code == 200, response.text
    return response.content


@needs_lingua
def test_a_json_answer_is_spoken_in_its_language(gateway: str, key: str, engine: Engine) -> None:
    """No `audio.language`: the answer's first sentence is French, so alloy is eSpeak's fr-fr+f4."""
    with engine.answering({"role": "assistant", "content": FRENCH}):
        answer = chat(gateway, key, **SPOKEN)
    audio = base64.b64decode(answer.json()["choices"][0]["message"]["audio"]["data"])
    assert audio == spoken_as(gateway, key, FRENCH, "fr-fr+f4")
    assert audio != spoken_as(gateway, key, FRENCH, "en-us+f4")
    given = {**SPOKEN, "audio": {**SPOKEN["audio"], "language": "de"}}  # a language given wins
    with engine.answering({"role": "assistant", "content": FRENCH}):
        answer = chat(gateway, key, **given)
    audio = base64.b64decode(answer.json()["choices"][0]["message"]["audio"]["data"])
    assert audio == spoken_as(gateway, key, FRENCH, "de+f4")


@needs_lingua
def test_a_streamed_answer_is_spoken_in_its_language(gateway: str, key: str, engine: Engine) -> None:
    engine.pieces = [
        "Bonjour, je m'appelle",
        " Marie et j'habite",
        " à Paris.",
        " Je travaille dans",
        " une petite librairie.",
    ]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True, **SPOKEN}
    answer = httpx.post(gateway + "/v1/chat/completions", json=body, headers=bearer(key), timeout=60)
    assert answer.status_code == 200, answer.text
    audio = [e["choices"][0]["delta"].get("audio", {}) for e in events(answer.content) if e["choices"]]
    assert "".join(piece.get("transcript", "") for piece in audio) == FRENCH
    data = b"".join(base64.b64decode(piece["data"]) for piece in audio if "data" in piece)
    assert data == spoken_as(gateway, key, FRENCH, "fr-fr+f4")


def test_an_unknown_voice_is_refused_before_the_engine_is_asked(
    gateway: str, key: str, engine: Engine
) -> None:
    asked = len(engine.bodies)
    unknown = {**SPOKEN, "audio": {"voice": "no-such-voice", "format": "pcm16"}}
    for stream in (False, True):
        error = envelope(chat(gateway, key, **unknown, stream=stream), 400)
        assert (error["param"], error["code"]) == ("audio.voice", "invalid_value")
    assert len(engine.bodies) == asked


def test_a_key_that_may_not_use_the_speech_model_gets_no_audio(gateway: str, admin_key: str) -> None:
    admin = AdminClient(gateway, admin_key)
    try:
        secret, _ = admin.key(admin.tenant("text-only")["id"], "text-only", allowed_models=[MODEL])
    finally:
        admin.close()
    error = envelope(chat(gateway, secret, **SPOKEN), 400)
    assert (error["param"], error["code"]) == ("modalities", "unsupported_value")
    assert "tantra-tts" in error["message"]
    assert chat(gateway, secret).status_code == 200  # text answers as before


def test_speech_turned_off(gateway_settings: Callable[..., Settings], engine: Engine, key: str) -> None:
    app = create_app(
        gateway_settings(tts_enabled=False),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(engine)),
    )
    with ThreadedServer(app) as server:
        error = envelope(chat(server.url, key, **SPOKEN), 400)
    assert (error["param"], error["code"]) == ("modalities", "unsupported_value")


def espeak_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # it may end between the listing and its name
            if "espeak" in child.name():
                found.append(child)
    return found


def test_a_client_that_leaves_stops_the_synthesis(
    gateway: str, key: str, engine: Engine, admin_key: str, database_url: str
) -> None:
    admin = AdminClient(gateway, admin_key)
    try:
        secret, record = admin.key(admin.tenant("spoken-leaves")["id"], "leaves")
    finally:
        admin.close()
    engine.pieces = [f"This is sentence number {i} of a long answer to read aloud. " for i in range(60)]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True, **SPOKEN}
    with httpx.stream(
        "POST", gateway + "/v1/chat/completions", json=body, headers=bearer(secret), timeout=60
    ) as answer:
        for chunk in answer.iter_raw():
            if b'"data"' in chunk:
                break  # the first audio: leave
    wait_for(lambda: not espeak_children(), timeout=5)
    [row] = ledger_rows(database_url, record["id"], 1)
    assert row.status == 499, (row.status, row.audio_seconds, row.latency_ms, row.outcome)
    # Far less than the 60 sentences' minute or so of speech was made.
    assert row.audio_seconds is not None and 0 < row.audio_seconds < 20


def test_the_spoken_text_is_priced_as_the_speech_model_prices_it(
    gateway_settings: Callable[..., Settings], engine: Engine, admin_key: str, database_url: str
) -> None:
    prices = {MODEL: {"prompt": 1000.0, "completion": 2000.0}, "tantra-tts": {"prompt": 500.0}}
    app = create_app(
        gateway_settings(model_prices=prices),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(engine)),
    )
    with ThreadedServer(app) as server:
        admin = AdminClient(server.url, admin_key)
        try:
            secret, record = admin.key(admin.tenant("spoken-priced")["id"], "priced")
        finally:
            admin.close()
        assert chat(server.url, secret, **SPOKEN).status_code == 200
        assert chat(server.url, secret).status_code == 200
    rows = sorted(ledger_rows(database_url, record["id"], 2), key=lambda row: row.cost_micros)
    text = 5 * 1000 + 4 * 2000  # the engine's 5 prompt and 4 completion tokens, in millionths of a dollar
    spoken = 5 * 500  # "Hello there. Bye.": 17 characters, 5 tokens at the speech model's prompt price
    assert [row.cost_micros for row in rows] == [text, text + spoken]
    assert rows[0].audio_seconds is None and rows[1].audio_seconds > 0.5


@pytest.fixture(scope="module")
def failing_gateway(
    gateway_settings: Callable[..., Settings], engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """eSpeak NG behind a wrapper that fails on any sentence saying FAIL."""
    wrapper = tmp_path_factory.mktemp("espeak") / "espeak-ng"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$1" in --voices*) exec espeak-ng "$@";; esac\n'
        'text=$(cat)\ncase "$text" in *FAIL*) echo broken >&2; exit 3;; esac\n'
        'printf "%s" "$text" | exec espeak-ng "$@"\n'
    )
    wrapper.chmod(0o755)
    app = create_app(
        gateway_settings(tts_espeak_binary=str(wrapper)),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(engine)),
    )
    with ThreadedServer(app) as server:
        yield server.url


def test_synthesis_failing_mid_stream_ends_with_an_error_event(
    failing_gateway: str, key: str, engine: Engine
) -> None:
    engine.pieces = ["This is spoken.", " This will FAIL now.", " And this is never heard."]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True, **SPOKEN}
    answer = httpx.post(failing_gateway + "/v1/chat/completions", json=body, headers=bearer(key), timeout=60)
    assert answer.status_code == 200
    assert answer.content.endswith(b"data: [DONE]\n\n")
    received = events(answer.content)
    assert any("data" in e["choices"][0]["delta"].get("audio", {}) for e in received if e.get("choices"))
    error = received[-1]["error"]
    assert error["code"] == "speech_unavailable" and "broken" in error["message"], error
    assert not any(e["choices"][0].get("finish_reason") for e in received if e.get("choices"))


def test_synthesis_failing_in_json_is_an_error_status(failing_gateway: str, key: str, engine: Engine) -> None:
    with engine.answering({"role": "assistant", "content": "Fine. Then FAIL."}):
        answer = chat(failing_gateway, key, **SPOKEN)
    error = envelope(answer, 503)
    assert error["code"] == "speech_unavailable"
