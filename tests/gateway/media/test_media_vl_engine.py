"""Images through the gateway to a real vision-language engine: vLLM serving the random-weight
`tiny-vl` checkpoint (Idefics3, SmolVLM's architecture, loaded by vLLM's own code) beside the
session's text-only engine, one gateway in front of both.

A model declared `accepts: [text, image]` gets the image itself: the request the engine received
carries the PNG `image_url` part (no OCR text), and the prompt the engine tokenized holds the image's
run of `<image>` tokens, read back from vLLM's `prompt_logprobs`, so `usage.prompt_tokens` grows by
exactly what one image costs. The text-only model gets Tesseract's text for the same image instead.
Through the OpenAI SDK (plain and streamed) and LangChain's ChatOpenAI."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import openai
import orjson
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from PIL import Image

from engine.architectures.idefics3 import image_prompt_tokens
from engine.launcher import EngineProcess
from engine.presets import VisionLanguagePreset, get_preset
from gateway import Settings
from tests.adapters.media import text_image
from tests.conftest import VL_MODEL
from tests.gateway.media.test_media_engine import ask
from tests.gateway.media.vision import (
    RecordingTransport,
    engine_tokens,
    image_part,
    recording_gateway,
    sent_parts,
)

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr not installed"),
]

VL = VL_MODEL  # the session's `vl_engine` (tests/conftest.py)


def _vl_preset() -> VisionLanguagePreset:
    preset = get_preset("tiny-vl")
    assert isinstance(preset, VisionLanguagePreset)
    return preset


PRESET = _vl_preset()
PER_IMAGE = image_prompt_tokens(PRESET)
"""What one image adds to the prompt: its 64 `<image>` tokens and the 3 around them (the checkpoint's
chat template puts its placeholder where the image part was, with nothing else)."""

SIGN = "PURPLE ELEPHANT 42"


@pytest.fixture(scope="module")
def recorder() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture(scope="module")
def gateway(
    vl_engine: EngineProcess,
    engine_url: str,
    model: str,
    recorder: RecordingTransport,
    gateway_settings: Callable[..., Settings],
) -> Iterator[str]:
    """One gateway, two vLLM upstreams: the VL model takes images, the session's model text only."""
    settings = gateway_settings(
        auth_enabled=False,
        upstreams={"text": {"url": engine_url}, "vision": {"url": vl_engine.base_url}},
        models={
            VL: {"upstreams": ["vision"], "accepts": ["text", "image"]},
            model: {"upstreams": ["text"], "accepts": ["text"]},
        },
    )
    with recording_gateway(settings, recorder, 120) as url:
        yield url


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0, timeout=120) as sdk:
        yield sdk


def test_the_vision_model_gets_the_image_itself(
    client: openai.OpenAI, recorder: RecordingTransport, vl_engine: EngineProcess
) -> None:
    sign = text_image(SIGN)
    completion = ask(client, VL, image_part(sign))

    # What the gateway sent: the image as a PNG data URL, no OCR text.
    parts = sent_parts(recorder, vl_engine.config.port)
    assert [p["type"] for p in parts] == ["text", "image_url"]
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as sent:
        assert sent.size == sign.size
    assert "OCR" not in orjson.dumps(parts).decode()

    # What the engine tokenized: the image's token run where the image was, and not its words.
    tokens = engine_tokens(completion)
    assert tokens.count("<image>") == PRESET.image_tokens
    assert tokens.count("<fake_token_around_image>") == 2 and tokens.count("<global-img>") == 1
    assert "ELEPHANT" not in "".join(tokens)

    plain = ask(client, VL)
    assert completion.usage is not None and plain.usage is not None
    assert completion.usage.prompt_tokens - plain.usage.prompt_tokens == PER_IMAGE
    media = completion.usage.model_extra["tantra_media"]
    assert media["images"] == 1 and media["derived"] == ["image"]
    assert media["image_pixels"] == sign.width * sign.height and media["derived_text_chars"] == 0
    assert "tantra_media" not in (plain.usage.model_extra or {})


def test_the_text_model_gets_ocr_text_for_the_same_image(
    client: openai.OpenAI, recorder: RecordingTransport, engine: EngineProcess, model: str
) -> None:
    completion = ask(client, model, image_part(text_image(SIGN)))
    parts = sent_parts(recorder, engine.config.port)
    assert [p["type"] for p in parts] == ["text", "text"]
    assert f"[image 1, text read by OCR]\n{SIGN}\n[end of image 1]" in parts[1]["text"]
    assert f"\n{SIGN}\n" in "".join(engine_tokens(completion))
    assert completion.usage is not None
    media = completion.usage.model_extra["tantra_media"]
    assert media["images"] == 1 and media["derived"] == ["ocr"] and media["derived_text_chars"] > 0


def test_several_images_in_one_request(
    client: openai.OpenAI, recorder: RecordingTransport, vl_engine: EngineProcess
) -> None:
    images = [
        Image.new("RGB", (300, 200), "red"),
        Image.new("RGB", (40, 90), "blue"),
        text_image("GREEN LANTERN 7", (400, 80), 32),
    ]
    between = {"type": "text", "text": " versus"}
    first, *others = [image_part(image) for image in images]
    completion = ask(client, VL, first, between, *others)
    parts = sent_parts(recorder, vl_engine.config.port)
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "image_url", "image_url"]

    # Each image's tokens sit where the image was sent: the text between them stays between them.
    tokens = engine_tokens(completion)
    assert tokens.count("<image>") == 3 * PRESET.image_tokens
    starts = [i for i, token in enumerate(tokens) if token == "<global-img>"]
    assert len(starts) == 3 and starts[0] < tokens.index(" versus") < starts[1]

    plain = ask(client, VL, between)
    assert completion.usage is not None and plain.usage is not None
    assert completion.usage.prompt_tokens - plain.usage.prompt_tokens == 3 * PER_IMAGE
    media = completion.usage.model_extra["tantra_media"]
    assert media["images"] == 3 and media["derived"] == ["image"]
    assert media["image_pixels"] == sum(image.width * image.height for image in images)


def test_streamed_usage_reports_the_image(client: openai.OpenAI) -> None:
    content = [{"type": "text", "text": "Read this."}, image_part(text_image(SIGN))]
    messages: Any = [{"role": "user", "content": content}]
    stream = client.chat.completions.create(
        model=VL,
        messages=messages,
        max_completion_tokens=3,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 3
    assert usage.model_extra is not None and usage.model_extra["tantra_media"]["derived"] == ["image"]
    assert sum(1 for chunk in chunks if chunk.choices and chunk.choices[0].delta.content) >= 1


def test_langchain_image_message(gateway: str, model: str) -> None:
    """ChatOpenAI's image content reaches each model its own way; the token counts say which."""

    def input_tokens(model_name: str, *parts: dict[str, Any]) -> int:
        llm = ChatOpenAI(
            base_url=gateway + "/v1",
            api_key="unused",
            model=model_name,
            max_completion_tokens=2,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        answer = llm.invoke([HumanMessage(content=[{"type": "text", "text": "Read this."}, *parts])])
        assert answer.usage_metadata is not None
        return answer.usage_metadata["input_tokens"]

    sign = image_part(text_image(SIGN))
    assert input_tokens(VL, sign) - input_tokens(VL) == PER_IMAGE
    derived = {"type": "text", "text": f"[image 1, text read by OCR]\n{SIGN}\n[end of image 1]"}
    assert input_tokens(model, sign) == input_tokens(model, derived)
