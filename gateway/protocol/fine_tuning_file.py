"""A fine-tuning file checked line by line, as OpenAI's validator words its findings: the first
problems found (with their line numbers) fail the job at `validating_files`."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MIN_EXAMPLES", "check_lines"]

MIN_EXAMPLES = 10
"""OpenAI refuses a training file with fewer than 10 examples."""
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MAX_REPORTED = 5


def _message_problem(position: int, message: Any) -> str | None:
    if not isinstance(message, dict):
        return f"messages[{position}] must be an object"
    role = message.get("role")
    if role not in _ROLES:
        return f"messages[{position}] has an unrecognized role: {role!r}"
    content = message.get("content")
    calls = message.get("tool_calls") or message.get("function_call")
    if content is None and not (role == "assistant" and calls) and role != "tool":
        return f"messages[{position}] is missing content"
    if role == "assistant" and message.get("weight", 1) not in (0, 1):
        return f"messages[{position}] has an invalid weight: weight must be 0 or 1"
    if content is not None and not isinstance(content, (str, list)):
        return f"messages[{position}].content must be a string or a list of content parts"
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or "name" not in function:
            return f"messages[{position}].tool_calls must each have a function with a name"
    return None


def _chat_problem(line: dict[str, Any]) -> str | None:
    messages = line.get("messages")
    if not isinstance(messages, list) or not messages:
        return (
            "Missing required field 'messages'" if messages is None else "'messages' must be a non-empty list"
        )
    for position, message in enumerate(messages):
        problem = _message_problem(position, message)
        if problem is not None:
            return problem
    if not any(message.get("role") == "assistant" for message in messages):
        return "Examples must contain at least one assistant message"
    return None


def _dpo_problem(line: dict[str, Any]) -> str | None:
    prompt = line.get("input")
    if not isinstance(prompt, dict) or not isinstance(prompt.get("messages"), list):
        return "Missing required field 'input.messages'"
    for field in ("preferred_output", "non_preferred_output"):
        output = line.get(field)
        if not isinstance(output, list) or not output:
            return f"Missing required field '{field}'"
        if any(not isinstance(m, dict) or m.get("role") != "assistant" for m in output):
            return f"'{field}' must contain only assistant messages"
    return None


def check_lines(text: str, method: str) -> tuple[int, list[str]]:
    """(examples, problems): `problems` names the first few bad lines as OpenAI does; a file with
    fewer than `MIN_EXAMPLES` examples is one problem."""
    problems: list[str] = []
    examples = 0
    check = _dpo_problem if method == "dpo" else _chat_problem
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        examples += 1
        try:
            line = json.loads(raw)
        except ValueError:
            problems.append(f"Line {number}: invalid JSON")
            continue
        problem = "Each line must be a JSON object" if not isinstance(line, dict) else check(line)
        if problem is not None:
            problems.append(f"Line {number}: {problem}")
        if len(problems) >= _MAX_REPORTED:
            break
    if not problems and examples < MIN_EXAMPLES:
        problems.append(
            f"Training file has {examples} example(s), but must have at least {MIN_EXAMPLES} examples"
        )
    return examples, problems
