"""The training file's line-by-line check (gateway/protocol/fine_tuning_file.py): OpenAI's rules
and wording, the line numbers, and the minimum of ten examples."""

from __future__ import annotations

import json
from typing import Any

from gateway.protocol.fine_tuning_file import check_lines


def _file(lines: list[Any]) -> str:
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)


def _chat(answer: Any = "hi", **assistant: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer, **assistant}]
    }


def test_a_good_chat_file() -> None:
    tool_call = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": "sunny"},
            {"role": "assistant", "content": "Sunny.", "weight": 1},
        ]
    }
    assert check_lines(_file([_chat()] * 9 + [tool_call]), "supervised") == (10, [])


def test_too_few_examples() -> None:
    count, problems = check_lines(_file([_chat()] * 3), "supervised")
    assert count == 3
    assert problems == ["Training file has 3 example(s), but must have at least 10 examples"]


def test_bad_lines_are_named_by_number() -> None:
    lines = [
        _chat(),
        "{not json",
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "wizard", "content": "x"}]},
        _chat(weight=2),
        {"prompt": "legacy"},
        *[_chat()] * 10,
    ]
    _, problems = check_lines(_file(lines), "supervised")
    assert problems == [
        "Line 2: invalid JSON",
        "Line 3: Examples must contain at least one assistant message",
        "Line 4: messages[0] has an unrecognized role: 'wizard'",
        "Line 5: messages[1] has an invalid weight: weight must be 0 or 1",
        "Line 6: Missing required field 'messages'",
    ]


def test_dpo_lines() -> None:
    good = {
        "input": {"messages": [{"role": "user", "content": "q"}]},
        "preferred_output": [{"role": "assistant", "content": "good"}],
        "non_preferred_output": [{"role": "assistant", "content": "bad"}],
    }
    assert check_lines(_file([good] * 10), "dpo") == (10, [])
    missing = {k: v for k, v in good.items() if k != "non_preferred_output"}
    wrong_role = {**good, "preferred_output": [{"role": "user", "content": "x"}]}
    _, problems = check_lines(_file([missing, wrong_role, _chat(), *[good] * 10]), "dpo")
    assert problems == [
        "Line 1: Missing required field 'non_preferred_output'",
        "Line 2: 'preferred_output' must contain only assistant messages",
        "Line 3: Missing required field 'input.messages'",
    ]


PNG = "data:image/png;base64,iVBORw0KGgo="


def _image_chat(*parts: Any, role: str = "user") -> dict[str, Any]:
    return {"messages": [{"role": role, "content": list(parts)}, {"role": "assistant", "content": "A cat."}]}


def _image(url: str = PNG) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def test_image_parts_in_user_messages_are_examples() -> None:
    line = _image_chat(
        {"type": "text", "text": "What is this?"}, _image(), _image("data:image/webp;base64,UklG")
    )
    assert check_lines(_file([line] * 10), "supervised") == (10, [])


def test_image_parts_follow_openais_vision_rules() -> None:
    where = "Line 1: messages[0].content[0]"
    cases = {
        "assistant image": (
            _image_chat(_image(), role="assistant"),
            f"{where}: images are only allowed in user messages",
        ),
        "link": (
            _image_chat(_image("https://example.com/cat.png")),
            f"{where}.image_url.url must be a base64 data URL of a JPEG, PNG or WEBP image "
            "(this server does not fetch image links for training)",
        ),
        "gif": (_image_chat(_image("data:image/gif;base64,R0lG")), None),
        "too big": (
            _image_chat(_image("data:image/png;base64," + "A" * (14 * 1024 * 1024))),
            f"{where}.image_url is larger than 10 MB",
        ),
        "unknown part": (
            _image_chat({"type": "input_audio"}),
            f"{where} has an unsupported type: 'input_audio'",
        ),
        "text not a string": (_image_chat({"type": "text", "text": 3}), f"{where}.text must be a string"),
        "not an object": (_image_chat("hello"), f"{where} must be an object"),
        "65 images": (
            _image_chat(*[_image()] * 65),
            "Line 1: Examples may contain at most 64 images (this one has 65)",
        ),
    }
    for name, (line, message) in cases.items():
        _, problems = check_lines(_file([line] + [_chat()] * 9), "supervised")
        assert len(problems) == 1, name
        if message is not None:
            assert problems[0] == message, name
        else:
            assert "base64 data URL" in problems[0], name


def test_a_text_only_base_refuses_image_parts() -> None:
    """A base whose route does not accept images (`images=False`): an image part is the line's
    problem, in chat lines and in a dpo line's input; text-only files pass as before."""
    refused = ": images are not supported for this base model (it takes text only)"
    lines = [_chat()] * 9 + [_image_chat({"type": "text", "text": "What is this?"}, _image())]
    assert check_lines(_file(lines), "supervised") == (10, [])
    assert check_lines(_file(lines), "supervised", images=False) == (
        10,
        [f"Line 10: messages[0].content[1]{refused}"],
    )
    assert check_lines(_file([_chat()] * 10), "supervised", images=False) == (10, [])
    good = {
        "input": {"messages": [{"role": "user", "content": [_image()]}]},
        "preferred_output": [{"role": "assistant", "content": "a"}],
        "non_preferred_output": [{"role": "assistant", "content": "b"}],
    }
    assert check_lines(_file([good] * 10), "dpo") == (10, [])
    _, problems = check_lines(_file([good] * 10), "dpo", images=False)
    assert problems[0] == f"Line 1: input.messages[0].content[0]{refused}"
