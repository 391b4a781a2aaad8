"""Which content parts the gateway checks, forwards or refuses (issue 16, point 6)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters import MediaError, find_media
from adapters.parts import forwarded, refuse_remote_media
from adapters.sources import Blob


def _payload(*parts: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": ["a plain string part", *parts]}]}


def test_text_parts_pass_and_media_parts_are_found() -> None:
    found = find_media(
        _payload(
            {"type": "text", "text": "hi"},
            {"type": "input_text", "text": "hi"},
            {"type": "thinking", "thinking": "hm"},
            {"type": "input_image", "image_url": "https://x.org/a.png"},
            {"type": "audio_url", "audio_url": "https://x.org/a.wav", "uuid": "u"},
        )
    )
    assert [(part.kind, part.index, part.url) for part in found] == [
        ("image", 4, "https://x.org/a.png"),
        ("audio", 5, "https://x.org/a.wav"),
    ]
    assert found[0].param == "messages[0].content[4].image_url"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_pil", "image_pil": "https://x.org/a.png"},
        {"type": "image_embeds", "image_embeds": "AAAA"},
        {"type": "prompt_embeds", "data": "AAAA", "prompt_embeds": "x"},
        {"type": "image_link", "url": "https://x.org/a.png"},
        {"image_url": {"url": "https://x.org/a.png"}},
        {"type": "text", "text": "hi", "video_url": {"url": "https://x.org/v.mp4"}},
        {"type": "image_url", "image_url": {"url": "data:,"}, "audio_url": "https://x.org/a.wav"},
        {"type": "video_url"},
    ],
)
def test_parts_the_gateway_cannot_check_are_refused(part: dict[str, Any]) -> None:
    with pytest.raises(MediaError) as refused:
        find_media(_payload(part))
    assert refused.value.code == "unsupported_content_part" and refused.value.status == 400
    assert str(refused.value.param).startswith("messages[0].content[1]")


def test_with_media_off_only_data_urls_pass() -> None:
    refuse_remote_media(_payload({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}))
    with pytest.raises(MediaError) as refused:
        refuse_remote_media(_payload({"type": "video_url", "video_url": "http://10.0.0.1/v.mp4"}))
    assert refused.value.code == "url_not_allowed"


def test_fetched_media_are_forwarded_as_data_urls() -> None:
    (part,) = find_media(_payload({"type": "video_url", "video_url": {"url": "https://x.org/v"}}))
    assert forwarded(part, None) is part.part
    sent = forwarded(part, Blob(b"\x00\x01", "video/webm"))
    assert sent["video_url"]["url"] == "data:video/webm;base64,AAE="
    odd = forwarded(part, Blob(b"\x00", "video/jpeg"))  # vLLM would read that as frames
    assert odd["video_url"]["url"].startswith("data:video/mp4;base64,")
