"""The realtime row of `make bench`: time from the end of the user's speech to the first byte of the
spoken answer on /v1/realtime, against the sum of its parts each timed alone (issues 24 and 27).

A client streams a sentence eSpeak NG spoke (24 kHz pcm16, in real time: 100 ms of audio every
100 ms, then silence) into a session with server VAD, and timestamps what comes back. Through the
gateway the path is: the VAD's silence window (`silence_duration_ms`) ends the turn, whisper.cpp
transcribes it, the chat engine answers, and the first complete sentence (or the whole answer, if
shorter) is spoken by eSpeak NG and sent as `response.audio.delta`. Each part is then timed alone,
on the same inputs the gateway had (the turn's audio, the transcript it got, the first sentence
the engine wrote):

- transcription: the same whisper.cpp model through the adapters' `Transcriber`, in this process;
- first sentence: a streamed chat straight to vLLM with the transcript as the user's message, to
  the end of its first sentence (`SentenceSplitter`, as the gateway's speaker cuts them);
- speech: eSpeak NG through the adapters' `Synthesizer`, to the first audio chunk of that sentence.

The ratio through/sum is what the gateway's own handling costs on top of the parts (event
plumbing, the loopback speech request, queueing between them); the VAD window is a setting, and
counted as a part. Real parts throughout: vLLM on the tiny checkpoint (random weights, so the
answers are noise, which is all a latency needs), the random-weight whisper-tiny model, eSpeak NG.

    .venv/bin/python -m bench.realtime      # this row alone; writes bench/results/realtime.{json,md,png}
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import servers
from bench.procs import usable_cpus
from bench.stats import percentile

MODEL = "tantra-tiny"
VOICE = "en-us"  # an eSpeak NG voice by name: spoken as it is, no language detection
SENTENCE = "Please tell me what the weather will be like in Paris tomorrow morning."
_CHUNK_S = 0.1
_RATE = 24_000
_TURN_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class RealtimePlan:
    turns: int = 12
    warmup: int = 2
    silence_ms: int = 500
    max_tokens: int = 12
    sentence: str = SENTENCE


@dataclass
class Turn:
    """One spoken turn's timings (seconds from the end of speech) and what the gateway made of it."""

    transcribed_s: float | None = None
    first_text_s: float | None = None
    last_text_s: float | None = None
    first_audio_s: float | None = None
    done_s: float | None = None
    transcript: str = ""
    answer: str = ""
    errors: list[str] = field(default_factory=list)


def speech_pcm(sentence: str) -> bytes:
    """The sentence as 24 kHz mono pcm16, spoken by eSpeak NG."""
    from adapters.tts import EspeakBackend, Synthesizer

    async def speak() -> bytes:
        return await Synthesizer([EspeakBackend()]).speak(sentence, VOICE, "pcm")

    return asyncio.run(speak())


async def one_turn(ws_url: str, speech: bytes, plan: RealtimePlan) -> Turn:
    """Stream half a second of silence, the speech and then silence in real time; time the events
    from the moment the last chunk of speech was sent."""
    turn = Turn()
    step = int(_RATE * _CHUNK_S) * 2
    lead, tail = bytes(_RATE), bytes(int(_RATE * 2 * 2.5))  # 0.5 s before, up to 2.5 s after
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        await ws.send_str(json.dumps({"type": "session.update", "session": _session(plan)}))
        ended: list[float] = []

        async def stream() -> None:
            began = time.perf_counter()
            audio, last = lead + speech + tail, len(lead) + len(speech)
            for index, start in enumerate(range(0, len(audio), step)):
                chunk = audio[start : start + step]
                await ws.send_str(
                    json.dumps(
                        {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}
                    )
                )
                # The end of speech: its last sample is with the server (a microphone sends each
                # chunk once it has been heard, so this is when the speaker fell silent).
                if start < last <= start + step:
                    ended.append(time.perf_counter())
                # Real time: chunk k leaves at k * 100 ms (not after k sleeps, which drift).
                await asyncio.sleep(max(0.0, began + (index + 1) * _CHUNK_S - time.perf_counter()))

        sender = asyncio.ensure_future(stream())
        try:
            await asyncio.wait_for(_listen(ws, turn, ended), _TURN_TIMEOUT_S)
        except TimeoutError:
            turn.errors.append("no response.done in time")
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    return turn


def _session(plan: RealtimePlan) -> dict[str, Any]:
    return {
        "modalities": ["text", "audio"],
        "voice": VOICE,
        "output_audio_format": "pcm16",
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": plan.silence_ms},
        "max_response_output_tokens": plan.max_tokens,
    }


async def _listen(ws: aiohttp.ClientWebSocketResponse, turn: Turn, ended: list[float]) -> None:
    def since() -> float:
        return time.perf_counter() - ended[0] if ended else 0.0

    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            break
        event = orjson.loads(message.data)
        kind = event["type"]
        if kind == "error":
            turn.errors.append(str(event.get("error", {}).get("message")))
        elif kind == "conversation.item.input_audio_transcription.completed":
            turn.transcribed_s, turn.transcript = since(), event.get("transcript", "")
        elif kind == "response.audio_transcript.delta":
            turn.first_text_s = turn.first_text_s or since()
            turn.last_text_s = since()
            turn.answer += event.get("delta", "")
        elif kind == "response.audio.delta" and turn.first_audio_s is None:
            turn.first_audio_s = since()
        elif kind == "response.done":
            turn.done_s = since()
            return


class DirectParts:
    """Times a turn's parts alone. One whisper.cpp worker (its model loaded once, before any
    timing) and one synthesizer serve every turn of a run: only the parts' own work is timed."""

    def __init__(self, engine_url: str, whisper: Path, plan: RealtimePlan) -> None:
        from adapters.stt import Transcriber
        from adapters.tts import EspeakBackend, Synthesizer

        self._engine_url = engine_url
        self._plan = plan
        self._transcriber = Transcriber(whisper, workers=1, threads=2)
        self._synthesizer = Synthesizer([EspeakBackend()])

    async def __aenter__(self) -> DirectParts:
        await self._transcriber.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._transcriber.close()

    async def time(self, speech: bytes, turn: Turn) -> dict[str, float]:
        """The turn's parts on what the gateway had: seconds for each."""
        from adapters.stt.audio import pcm16_to_pcm
        from adapters.tts import SentenceSplitter

        began = time.perf_counter()
        await self._transcriber.transcribe(pcm16_to_pcm(speech))
        transcribe_s = time.perf_counter() - began
        sentence_s = await _first_sentence_s(self._engine_url, turn.transcript, self._plan.max_tokens)
        first = (SentenceSplitter().feed(turn.answer) or [turn.answer])[0]
        began = time.perf_counter()
        pcm = self._synthesizer.stream_pcm(first, VOICE)
        try:
            await pcm.__anext__()
        finally:
            await pcm.aclose()
        speak_s = time.perf_counter() - began
        return {
            "vad_s": self._plan.silence_ms / 1000,
            "transcribe_s": transcribe_s,
            "first_sentence_s": sentence_s,
            "speak_s": speak_s,
        }


async def _first_sentence_s(engine_url: str, transcript: str, max_tokens: int) -> float:
    """Seconds from sending the chat straight to vLLM to the end of its first sentence (or of the
    answer, when it has none): when the gateway's speaker could start speaking."""
    from adapters.tts import SentenceSplitter

    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": transcript}],
        "max_tokens": max_tokens,
        "stream": True,
    }
    splitter = SentenceSplitter()
    began = time.perf_counter()
    async with (
        aiohttp.ClientSession() as http,
        http.post(engine_url + "/v1/chat/completions", json=body) as got,
    ):
        async for raw in got.content:
            line = raw.strip()
            if line.startswith(b"data: {"):
                choices = orjson.loads(line[6:]).get("choices") or [{}]
                if splitter.feed(choices[0].get("delta", {}).get("content") or ""):
                    return time.perf_counter() - began
    return time.perf_counter() - began


_STAGES = {
    # stage: (its parts timed alone, what the turn's events give through the gateway)
    "heard": (("vad_s", "transcribe_s"), lambda t: t.transcribed_s),
    "answered": (
        ("first_sentence_s", "speak_s"),
        lambda t: (
            None if t.first_audio_s is None or t.transcribed_s is None else t.first_audio_s - t.transcribed_s
        ),
    ),
    "total": (("vad_s", "transcribe_s", "first_sentence_s", "speak_s"), lambda t: t.first_audio_s),
}


def summarise(turns: list[Turn], parts: list[dict[str, float]], plan: RealtimePlan) -> dict[str, Any]:
    """Per stage, p50 through the gateway, p50 of the sum of its parts alone, and p50 of the ratio
    turn by turn: `heard` (end of speech to transcript), `answered` (transcript to first audio
    byte), `total`. A turn with no audio (a random answer with nothing to say) is counted and left
    out."""
    spoken = [(t, p) for t, p in zip(turns, parts, strict=True) if t.first_audio_s is not None]
    stages: dict[str, dict[str, float | None]] = {}
    for name, (names, through_of) in _STAGES.items():
        pairs = [(through_of(t), sum(p[n] for n in names)) for t, p in spoken]
        through = [a for a, _ in pairs if a is not None]
        summed = [b for a, b in pairs if a is not None]
        stages[name] = {
            "through_p50_s": _p50(through),
            "parts_p50_s": _p50(summed),
            "ratio_p50": _p50([a / b for a, b in pairs if a is not None and b]),
        }
    return {
        "plan": asdict(plan),
        "turns": len(turns),
        "spoken": len(spoken),
        "errors": sum(len(t.errors) for t in turns),
        "stages": stages,
        "parts_p50_s": {n: _p50([p[n] for _, p in spoken]) for n in _STAGES["total"][0]},
        "per_turn": [{**asdict(t), "parts": p} for t, p in zip(turns, parts, strict=True)],
    }


def _p50(values: list[float]) -> float | None:
    return percentile(values, 50) if values else None


def markdown(result: dict[str, Any] | None) -> list[str]:
    if not result or not result.get("spoken"):
        return []
    parts, stages = result["parts_p50_s"], result["stages"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    described = {
        "heard": f"end of speech to transcript: VAD window ({ms(parts['vad_s'])}) + whisper.cpp "
        f"({ms(parts['transcribe_s'])})",
        "answered": "transcript to first audio byte: first sentence from vLLM "
        f"({ms(parts['first_sentence_s'])}) + eSpeak NG's first audio ({ms(parts['speak_s'])})",
        "total": "end of speech to first audio byte",
    }
    lines = [
        "## Realtime: end of speech to first audio byte, through the gateway and as the sum of its parts",
        "",
        f"{result['spoken']} spoken turns of {result['turns']} ({result['errors']} errors); server VAD "
        f"with a {result['plan']['silence_ms']} ms silence window; answers of at most "
        f"{result['plan']['max_tokens']} tokens. p50 in ms; the ratio is p50 of through/parts turn by turn.",
        "",
        "| stage | through the gateway | its parts alone | through / parts |",
        "|---|---|---|---|",
    ]
    for name, row in stages.items():
        lines.append(
            f"| {described[name]} | {ms(row['through_p50_s'])} | {ms(row['parts_p50_s'])} | "
            f"{ratio(row['ratio_p50'])} |"
        )
    return [*lines, ""]


def plot(result: dict[str, Any], path: Path) -> None:
    """One stacked bar of the parts beside the bar of the path through the gateway."""
    from bench.plots import plt

    parts = result["parts_p50_s"]
    fig, axis = plt.subplots(figsize=(6, 4))
    bottom = 0.0
    for name, colour in zip(parts, ("#bdbdbd", "#6baed6", "#fd8d3c", "#74c476"), strict=False):
        value = (parts[name] or 0.0) * 1000
        axis.bar("sum of parts", value, bottom=bottom, color=colour, label=name.removesuffix("_s"))
        bottom += value
    axis.bar("through Tantra", (result["stages"]["total"]["through_p50_s"] or 0.0) * 1000, color="#1b7837")
    axis.set_ylabel("end of speech to first audio byte, p50 (ms)")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gateway_settings(state: Path, whisper: Path) -> dict[str, str]:
    state.mkdir(parents=True, exist_ok=True)
    return {
        "TANTRA_AUTH_ENABLED": "false",
        "TANTRA_DATABASE_URL": f"sqlite+aiosqlite:///{state / 'realtime.db'}",
        "TANTRA_BLOB_DIR": str(state / "blobs"),
        "TANTRA_AUDIO_WHISPER_MODEL": str(whisper),
        "TANTRA_HEALTH_DEEP": "false",
    }


def measure(
    logs: Path,
    engine_cpus: list[int],
    gateway_cpus: list[int],
    plan: RealtimePlan,
    progress: Any = print,
    engine_url: str | None = None,
) -> dict[str, Any]:
    """Start the engine (unless `engine_url` is one) and the gateway, run the turns, then time
    each turn's parts alone."""
    from engine.checkpoint import ensure_checkpoint
    from engine.whisper import MODEL_FILE as WHISPER_MODEL_FILE

    checkpoints = servers.ROOT / ".cache" / "checkpoints"
    whisper = (
        ensure_checkpoint(checkpoints / "whisper-tiny", preset="whisper-tiny", seed=0) / WHISPER_MODEL_FILE
    )
    speech = speech_pcm(plan.sentence)
    with contextlib.ExitStack() as stack:
        if engine_url is None:
            tiny = ensure_checkpoint(checkpoints / "tiny", preset="tiny", seed=0)
            engine, engine_url = servers.engine(logs, tiny, MODEL, engine_cpus)
            progress("bench: realtime: starting vLLM on the tiny checkpoint")
            stack.enter_context(engine)
        settings = gateway_settings(logs / "realtime-state", whisper)
        gateway, gateway_url = servers.tantra(logs, "tantra-realtime", engine_url, settings, gateway_cpus)
        stack.enter_context(gateway)
        ws_url = gateway_url.replace("http://", "ws://") + f"/v1/realtime?model={MODEL}"
        turns, parts = asyncio.run(
            _turns(ws_url, DirectParts(engine_url, whisper, plan), speech, plan, progress)
        )
    return summarise(turns, parts, plan)


async def _turns(
    ws_url: str, direct: DirectParts, speech: bytes, plan: RealtimePlan, progress: Any
) -> tuple[list[Turn], list[dict[str, float]]]:
    """The warm-up turns, then each measured turn through the gateway followed by its parts alone."""
    turns: list[Turn] = []
    parts: list[dict[str, float]] = []
    async with direct:
        for number in range(plan.warmup + plan.turns):
            turn = await one_turn(ws_url, speech, plan)
            if number < plan.warmup:
                continue
            turns.append(turn)
            parts.append(await direct.time(speech, turn))
            progress(f"bench: realtime turn {len(turns)}: first audio at {turn.first_audio_s} s")
    return turns, parts


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "realtime.json").write_text(json.dumps(result, indent=1))
    (out / "realtime.md").write_text("\n".join(markdown(result)))
    if result.get("spoken"):
        plot(result, out / "realtime.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime", description=__doc__)
    parser.add_argument("--turns", type=int, default=RealtimePlan.turns)
    parser.add_argument("--silence-ms", type=int, default=RealtimePlan.silence_ms)
    parser.add_argument("--out", type=Path, default=servers.ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logs = servers.ROOT / ".cache" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cpus = usable_cpus()
    result = measure(logs, cpus, cpus, RealtimePlan(turns=args.turns, silence_ms=args.silence_ms))
    write(result, args.out)
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
