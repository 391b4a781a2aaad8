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
