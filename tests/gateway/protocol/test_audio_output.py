"""Chat's audio output fields: validated only when `modalities` asks for audio (vLLM ignores both
keys otherwise, and so does the gateway), with OpenAI's params and codes."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocol import ChatCompletionRequest, InvalidParam, parse_request

BASE = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


def parse(**fields: Any) -> ChatCompletionRequest:
    return parse_request(ChatCompletionRequest, {**BASE, **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"modalities": "text"},  # vLLM takes any value and ignores it
        {"modalities": ["text"], "audio": "anything"},
        {"audio": {"voice": "alloy"}},
    ],
)
def test_text_only_requests_do_not_judge_audio(fields: dict[str, Any]) -> None:
    request = parse(**fields)
    assert not request.speaks and request.audio_output() is None


@pytest.mark.parametrize("fmt", ["wav", "aac", "mp3", "flac", "opus", "pcm16"])
def test_every_openai_format(fmt: str) -> None:
    wanted = parse(modalities=["text", "audio"], audio={"voice": "alloy", "format": fmt}).audio_output()
    assert wanted is not None and wanted.format == fmt and wanted.voice_name == "alloy"


def test_a_custom_voice_reference_is_its_id() -> None:
    wanted = parse(modalities=["audio"], audio={"voice": {"id": "en-gb+f3"}, "format": "wav"}).audio_output()
    assert wanted is not None and wanted.voice_name == "en-gb+f3"


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({}, "audio", "missing_required_parameter"),
        ({"audio": None}, "audio", "missing_required_parameter"),
        ({"audio": []}, "audio", "invalid_type"),
        ({"audio": {"voice": "alloy"}}, "audio.format", "missing_required_parameter"),
        ({"audio": {"format": "mp3"}}, "audio.voice", "missing_required_parameter"),
        ({"audio": {"voice": "alloy", "format": "pcm"}}, "audio.format", "invalid_value"),
        ({"audio": {"voice": "", "format": "wav"}}, "audio.voice", "string_below_min_length"),
        ({"audio": {"voice": "alloy", "format": "wav"}, "n": 3}, "n", "unsupported_value"),
    ],
)
def test_openais_errors(fields: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidParam) as raised:
        parse(modalities=["text", "audio"], **fields)
    assert (raised.value.param, raised.value.code) == (param, code), raised.value.message
    assert f"'{param}'" in raised.value.message or param == "n"
