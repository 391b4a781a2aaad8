"""Long-VITA through the gateway (issue 28, point 5): vLLM serving the random `tiny-long-vita`
checkpoint with the plugin, in float32, beside the session's text-only engine, one gateway in front
of both. The Long-VITA route is declared `accepts: [text, image, video]`, and `auto` (a virtual
model with the modality rule) chooses between the two.

Images and video reach the engine as pixels: the gateway sends the normalised PNG (or the checked
video) and the prompt the engine tokenized holds the tiles' and frames' token blocks where the parts
were, read back from vLLM's `prompt_logprobs`. The answer to three images with text between them is
the plain-torch reference's greedy answer for the same images in the same order, so neither the
images nor the text between them moved. `usage.prompt_tokens` grows by the documented cost of a
tile (docs/vision.md, "Through the gateway"). Through the OpenAI SDK and LangChain's ChatOpenAI.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from PIL import Image

from engine.launcher import EngineProcess
from engine.long_vita.tiling import grid_for, image_token_ids, video_token_ids
from gateway import Settings
from tests.adapters.media import data_url, text_video
from tests.gateway.media.vision import (
    RecordingTransport,
    engine_tokens,
    image_part,
    recording_gateway,
    sent_parts,
)
from tests.long_vita.conftest import VITA
from tests.long_vita.media import picture

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(bool(os.environ.get("TANTRA_SKIP_VLLM")), reason="TANTRA_SKIP_VLLM is set"),
]

TILE_TOKENS = 256
NEW_TOKENS = 6
SEE = {"prompt_logprobs": 0, "ignore_eos": True}


def image_cost(width: int, height: int) -> int:
    """What one image part adds to the prompt: its tiles' tokens (tiling.py, the documented count)
    and the newline the chat template writes after its `<image>` tag."""
    cols, rows = grid_for(width, height)
    return len(image_token_ids(cols, rows, TILE_TOKENS)) + 1


@pytest.fixture(scope="module")
def recorder() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture(scope="module")
def gateway(
    vita_engine: EngineProcess,
    engine_url: str,
    model: str,
    recorder: RecordingTransport,
    gateway_settings: Callable[..., Settings],
) -> Iterator[str]:
    """Long-VITA takes images and video, the session's model text only; `auto` chooses by modality."""
    settings = gateway_settings(
        auth_enabled=False,
        upstreams={"text": {"url": engine_url}, "vision": {"url": vita_engine.base_url}},
        models={
            VITA: {"upstreams": ["vision"], "accepts": ["text", "image", "video"]},
            model: {"upstreams": ["text"], "accepts": ["text"]},
        },
        virtual_models={"auto": {"candidates": {model: {}, VITA: {}}, "rules": [{"type": "modality"}]}},
    )
    with recording_gateway(settings, recorder, 300) as url:
        yield url


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0, timeout=300) as sdk:
        yield sdk


def chat(client: openai.OpenAI, *parts: Any, model: str = VITA, **extra: Any) -> Any:
    content = [{"type": "text", "text": part} if isinstance(part, str) else part for part in parts]
    messages: Any = [{"role": "user", "content": content}]
    return client.chat.completions.create(
        model=model,
        messages=messages,
        temperature=0,
        max_completion_tokens=NEW_TOKENS,
        extra_body={**SEE, **extra},
    )


def prompt_tokens(completion: Any) -> int:
    assert completion.usage is not None
    return int(completion.usage.prompt_tokens)


def test_one_image_reaches_long_vita_as_pixels(
    client: openai.OpenAI, recorder: RecordingTransport, vita_engine: EngineProcess
) -> None:
    image = picture(448, 448, 1)
    completion = chat(client, "What is in this picture?", image_part(image))

    parts = sent_parts(recorder, vita_engine.config.port)
    assert [p["type"] for p in parts] == ["text", "image_url"]
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(_decoded(url))) as sent:
        assert sent.size == image.size and sent.tobytes() == image.tobytes()  # lossless, no OCR

    tokens = engine_tokens(completion)
    assert tokens.count("<img>") == 1 and tokens.count("<IMG_CONTEXT>") == TILE_TOKENS
    assert "<patch>" not in tokens  # one tile: no grid, no thumbnail
    plain = chat(client, "What is in this picture?")
    assert prompt_tokens(completion) - prompt_tokens(plain) == image_cost(448, 448) == 259
    media = completion.usage.model_extra["tantra_media"]
    assert media["images"] == 1 and media["derived"] == ["image"] and media["derived_text_chars"] == 0


def test_three_images_keep_their_order_and_the_text_between_them(
    client: openai.OpenAI, long_vita_tokenizer: Any, long_vita_reference: Any
) -> None:
    """The gateway's answer is the reference's for these images in this order (swapped, the
    reference's prompt differs: the images have 1, 3 and 4 tiles)."""
    from engine.long_vita.reference import expand_prompt

    images = [picture(448, 448, 2), picture(896, 448, 3), picture(500, 1400, 4)]
    texts = ["First", "then", "and last", "Compare them."]
    parts = [texts[0], image_part(images[0]), texts[1], image_part(images[1])]
    parts += [texts[2], image_part(images[2]), texts[3]]
    completion = chat(client, *parts, return_token_ids=True)

    template_parts = [
        {"type": "text", "text": p} if isinstance(p, str) else {"type": "image_url"} for p in parts
    ]
    text = long_vita_tokenizer.apply_chat_template(
        [{"role": "user", "content": template_parts}], tokenize=False, add_generation_prompt=True
    )
    prompt = expand_prompt(long_vita_tokenizer(text).input_ids, images)
    assert completion.model_extra["prompt_token_ids"] == prompt.ids
    expected = long_vita_reference.generate_greedy(prompt, NEW_TOKENS)
    assert completion.choices[0].model_extra["token_ids"] == expected

    # The blocks sit where the images were: 1 tile, then a 2 x 1 grid, then a 1 x 3 grid.
    tokens = engine_tokens(completion)
    starts = [i for i, token in enumerate(tokens) if token == "<img>"]
    assert len(starts) == 3 and tokens.count("<patch>") == 2 + 3
    assert starts[0] < tokens.index("then") < starts[1] < tokens.index("and") < starts[2]
    plain = chat(client, *texts)
    costs = sum(image_cost(*image.size) for image in images)
    assert prompt_tokens(completion) - prompt_tokens(plain) == costs == 259 + 776 + 1036


def test_prompt_tokens_grow_by_the_documented_tokens_per_tile(client: openai.OpenAI) -> None:
    """A 2 x 1 grid is two tiles and a thumbnail: 3 x 258 tokens, one newline for its row, and the
    template's newline after the tag; each such image adds exactly that."""
    wide = [image_part(picture(896, 448, seed)) for seed in (5, 6)]
    one = prompt_tokens(chat(client, "Describe.", wide[0]))
    two = prompt_tokens(chat(client, "Describe.", *wide))
    assert two - one == image_cost(896, 448) == 3 * 258 + 1 + 1


def test_video_frames_reach_long_vita(
    client: openai.OpenAI, recorder: RecordingTransport, vita_engine: EngineProcess
) -> None:
    video = text_video(["ONE", "TWO", "THREE", "FOUR"], seconds_each=1.0)  # 4 s at 10 fps
    part = {"type": "video_url", "video_url": {"url": data_url(video, "video/mp4")}}
    completion = chat(client, part, "What happens?")

    parts = sent_parts(recorder, vita_engine.config.port)
    assert [p["type"] for p in parts] == ["video_url", "text"]
    assert _decoded(parts[0]["video_url"]["url"]) == video  # the checked bytes, not OCR text
    tokens = engine_tokens(completion)
    frames = tokens.count("<vid>")
    assert frames == 4 and tokens.count("<VID_CONTEXT>") == 4 * TILE_TOKENS
    assert "ONE" not in "".join(tokens)
    plain = chat(client, "What happens?")
    # The `<video>` tag the template adds becomes the frames' blocks: 258 tokens a frame.
    assert prompt_tokens(completion) - prompt_tokens(plain) == len(video_token_ids(4, TILE_TOKENS)) == 4 * 258
    media = completion.usage.model_extra["tantra_media"]
    assert media["derived"] == ["video"] and media["video_frames"] == 4


def test_langchain_image_message(gateway: str) -> None:
    def input_tokens(*parts: dict[str, Any]) -> int:
        llm = ChatOpenAI(
            base_url=gateway + "/v1",
            api_key="unused",
            model=VITA,
            max_completion_tokens=2,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        answer = llm.invoke([HumanMessage(content=[{"type": "text", "text": "Describe."}, *parts])])
        assert answer.usage_metadata is not None
        return answer.usage_metadata["input_tokens"]

    assert input_tokens(image_part(picture(896, 448, 8))) - input_tokens() == image_cost(896, 448)


def test_auto_sends_an_image_to_long_vita_and_text_to_the_text_model(
    client: openai.OpenAI, model: str
) -> None:
    image = image_part(picture(448, 448, 9))
    with_image: Any = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}]
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=with_image,
        max_completion_tokens=2,
        temperature=0,
    )
    assert raw.headers["x-tantra-model-choice"] == f"{VITA}; rule=modality"
    assert prompt_tokens(raw.parse()) > image_cost(448, 448)  # the image's tiles, not OCR text

    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "What is it?"}],
        max_completion_tokens=2,
        temperature=0,
    )
    assert raw.headers["x-tantra-model-choice"] == f"{model}; rule=default"


def test_media_rules_hold_for_long_vita(client: openai.OpenAI) -> None:
    """The gateway's URL rules and limits apply before anything reaches the engine."""
    remote = {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/x.png"}}
    with pytest.raises(openai.BadRequestError) as refused:
        chat(client, "Look.", remote)
    assert refused.value.code == "url_not_allowed"
    assert refused.value.param == "messages[0].content[1].image_url"

    nine = [image_part(picture(32, 32, seed)) for seed in range(9)]
    with pytest.raises(openai.APIStatusError) as too_many:
        chat(client, "Look.", *nine)
    assert too_many.value.status_code in (400, 413) and too_many.value.code == "too_many_images"


def _decoded(url: str) -> bytes:
    import base64

    return base64.b64decode(url.split(",", 1)[1])
