"""Media through the real engine with the real clients: a PNG with rendered text, a multi-page PDF and
a short video, each made in the test, reach the text-only SpikingBrain core as derived text. The
prompt the engine really tokenized is read back from vLLM's `prompt_logprobs` (each prompt token
with its decoded text), so the assertions are on what the model saw, not on what the gateway meant
to send."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from PIL import Image

from gateway import Settings, create_app
from tests.adapters.media import data_url, png, text_image, text_pdf, text_video
from tests.audio_samples import needs_espeak, spoken_sentence
from tests.servers import ThreadedServer

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr not installed"),
]

# vLLM's extra: return the prompt's own tokens (each with its decoded text) along with the answer.
SEE_PROMPT = {"prompt_logprobs": 0, "ignore_eos": True}


def engine_prompt(completion: Any) -> str:
    """The prompt text the engine tokenized, rebuilt from vLLM's per-token prompt logprobs."""
    entries = completion.model_extra["prompt_logprobs"]
    pieces = []
    for entry in entries:
        if entry is None:  # the first token has no logprob
            continue
        (token,) = [value for value in entry.values() if value.get("rank") is not None] or list(
            entry.values()
        )
        pieces.append(token["decoded_token"])
    return "".join(pieces)


def ask(client: openai.OpenAI, model: str, *parts: dict[str, Any]) -> Any:
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Read this."}, *parts]}],  # type: ignore[list-item, misc]
        max_completion_tokens=2,
        temperature=0,
        extra_body=SEE_PROMPT,
    )


def test_image_text_reaches_the_model_by_ocr(openai_client: openai.OpenAI, model: str) -> None:
    url = data_url(png(text_image("PURPLE ELEPHANT 42")), "image/png")
    completion = ask(openai_client, model, {"type": "image_url", "image_url": {"url": url}})
    prompt = engine_prompt(completion)
    assert "[image 1, text read by OCR]\nPURPLE ELEPHANT 42\n[end of image 1]" in prompt
    assert completion.usage is not None
    media = completion.usage.model_extra["tantra_media"]
    assert media["images"] == 1 and media["derived"] == ["ocr"]

    # The same words sent as plain text cost exactly as many prompt tokens: nothing else was added.
    plain = ask(openai_client, model, {"type": "text", "text": media_text(prompt)})
    assert plain.usage is not None and plain.usage.prompt_tokens == completion.usage.prompt_tokens


def media_text(prompt: str) -> str:
    start = prompt.index("[image 1")
    end = prompt.index("[end of image 1]") + len("[end of image 1]")
    return prompt[start:end]


def test_pdf_pages_reach_the_model_with_page_markers(openai_client: openai.OpenAI, model: str) -> None:
    pdf = text_pdf(["Quarterly revenue rose in March.", "Costs fell in April.", "Outlook: steady."])
    part = {"type": "file", "file": {"file_data": data_url(pdf, "application/pdf"), "filename": "q1.pdf"}}
    completion = ask(openai_client, model, part)
    prompt = engine_prompt(completion)
    assert "[document q1.pdf, 3 pages]\n[page 1]\nQuarterly revenue rose in March.\n[page 2]\n" in prompt
    assert "Costs fell in April.\n[page 3]\nOutlook: steady.\n[end of document q1.pdf]" in prompt
    assert completion.usage is not None and completion.usage.model_extra["tantra_media"]["pages"] == 3


def test_video_frames_reach_the_model_by_ocr(openai_client: openai.OpenAI, model: str) -> None:
    video = text_video(["RED SUNRISE", "BLUE NOON", "GREY DUSK"], seconds_each=1.0)
    part = {"type": "video_url", "video_url": {"url": data_url(video, "video/mp4")}}
    completion = ask(openai_client, model, part)
    prompt = engine_prompt(completion)
    assert "[video 1: 3.0 s, 3 frames sampled at 1 per second]" in prompt
    assert "[0.0 s]\nRED SUNRISE\n[1.0 s]\nBLUE NOON\n[2.0 s]\nGREY DUSK\n[end of video 1]" in prompt
    assert completion.usage is not None
    media = completion.usage.model_extra["tantra_media"]
    assert media["video_seconds"] == pytest.approx(3.0) and media["video_frames"] == 3


@needs_espeak
def test_a_video_soundtrack_is_transcribed_beside_its_frames(
    openai_client: openai.OpenAI, model: str
) -> None:
    video = text_video(["RED SUNRISE", "BLUE NOON", "GREY DUSK"], soundtrack=spoken_sentence())
    part = {"type": "video_url", "video_url": {"url": data_url(video, "video/mp4")}}
    completion = ask(openai_client, model, part)
    prompt = engine_prompt(completion)
    assert (
        "[0.0 s]\nRED SUNRISE\n[1.0 s]\nBLUE NOON\n[2.0 s]\nGREY DUSK\n[soundtrack, transcribed]\n" in prompt
    )
    assert prompt.index("[soundtrack, transcribed]") < prompt.index("[end of video 1]")
    assert completion.usage is not None
    media = completion.usage.model_extra["tantra_media"]
    assert media["audio_seconds"] > 2 and "transcription" in media["derived"]


def test_langchain_image_message(gateway_url: str, api_key: str, model: str) -> None:
    llm = ChatOpenAI(
        base_url=gateway_url + "/v1",
        api_key=api_key,
        model=model,
        max_completion_tokens=2,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    url = data_url(png(text_image("GREEN LANTERN 7")), "image/png")
    answer = llm.invoke(
        [
            HumanMessage(
                content=[
                    {"type": "text", "text": "Read this."},
                    {"type": "image_url", "image_url": {"url": url}},
                ]
            )
        ]
    )
    derived = "[image 1, text read by OCR]\nGREEN LANTERN 7\n[end of image 1]"
    plain = llm.invoke(
        [HumanMessage(content=[{"type": "text", "text": "Read this."}, {"type": "text", "text": derived}])]
    )
    assert answer.usage_metadata is not None and plain.usage_metadata is not None
    assert answer.usage_metadata["input_tokens"] == plain.usage_metadata["input_tokens"]


def test_limits_and_unsupported_parts_through_the_sdk(openai_client: openai.OpenAI, model: str) -> None:
    tiny = {"type": "image_url", "image_url": {"url": data_url(png(text_image("x", (8, 8), 4)), "image/png")}}
    with pytest.raises(openai.BadRequestError) as bad:
        ask(openai_client, model, *[tiny] * 9)  # the default cap is 8 images
    assert bad.value.code == "too_many_images" and bad.value.param == "messages[0].content[9].image_url"

    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    with pytest.raises(openai.BadRequestError) as bad:
        ask(openai_client, model, audio)
    assert bad.value.code == "invalid_audio"  # transcribed by the speech adapter, when it decodes
    assert bad.value.param == "messages[0].content[1].input_audio"

    disallowed = {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}
    with pytest.raises(openai.BadRequestError) as bad:
        ask(openai_client, model, disallowed)
    assert bad.value.code == "url_not_allowed"

    bomb = {
        "type": "image_url",
        "image_url": {"url": data_url(png(text_image("x", (9000, 9000), 8)), "image/png")},
    }
    with pytest.raises(openai.BadRequestError) as bad:
        ask(openai_client, model, bomb)
    assert bad.value.code == "image_too_large"


@pytest.fixture(scope="module")
def strict_gateway(engine_url: str, gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    """A second gateway on the same engine with small media limits."""
    settings = gateway_settings(
        engine_url=engine_url, auth_enabled=False, media_max_part_bytes=50_000, media_max_pages=2
    )
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


def test_media_limits_are_413_and_400(strict_gateway: str, model: str) -> None:
    with openai.OpenAI(base_url=strict_gateway + "/v1", api_key="unused", max_retries=0) as client:
        noise = Image.effect_noise((400, 400), 100)  # incompressible: well over 50 kB as PNG
        big = {"type": "image_url", "image_url": {"url": data_url(png(noise), "image/png")}}
        with pytest.raises(openai.APIStatusError) as caught:
            ask(client, model, big)
        assert caught.value.status_code == 413
        assert caught.value.code == "media_too_large"

        pdf = text_pdf(["one", "two", "three"])
        part = {"type": "file", "file": {"file_data": data_url(pdf, "application/pdf")}}
        with pytest.raises(openai.BadRequestError) as bad:
            ask(client, model, part)
        assert bad.value.code == "too_many_pages" and bad.value.param == "messages[0].content[1].file"
