"""A fine-tuning file checked line by line, as OpenAI's validator words its findings: the first
problems found (with their line numbers) fail the job at `validating_files`."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MIN_EXAMPLES", "check_lines"]

MIN_EXAMPLES = 10
"""OpenAI refuses a training file with fewer than 10 examples."""
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MAX_REPORTED = 5
# OpenAI's vision fine-tuning limits: images in user messages only, JPEG/PNG/WEBP, 10 MB, 64 per example.
_MAX_IMAGES = 64
_MAX_IMAGE_BYTES = 10 * 1024 * 1024
# The trainer reads images from the line itself: a data URL, not a link it would have to fetch.
_IMAGE_DATA_URL = re.compile(r"data:image/(png|jpeg|jpg|webp);base64,", re.IGNORECASE)


def _part_problem(where: str, role: Any, part: Any, images: bool) -> str | None:
    if not isinstance(part, dict):
        return f"{where} must be an object"
    kind = part.get("type")
    if kind in ("text", "refusal"):
        return None if isinstance(part.get(kind), str) else f"{where}.{kind} must be a string"
    if kind != "image_url":
        return f"{where} has an unsupported type: {kind!r}"
    if not images:
        return f"{where}: images are not supported for this base model (it takes text only)"
    if role != "user":
        return f"{where}: images are only allowed in user messages"
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str) or not _IMAGE_DATA_URL.match(url):
        return (
            f"{where}.image_url.url must be a base64 data URL of a JPEG, PNG or WEBP image "
            "(this server does not fetch image links for training)"
        )
    if (len(url) - url.index(",") - 1) * 3 // 4 > _MAX_IMAGE_BYTES:
        return f"{where}.image_url is larger than 10 MB"
    return None


def _message_problem(position: int, message: Any, images: bool) -> str | None:
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
    for index, part in enumerate(content if isinstance(content, list) else ()):
        problem = _part_problem(f"messages[{position}].content[{index}]", role, part, images)
        if problem is not None:
            return problem
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or "name" not in function:
            return f"messages[{position}].tool_calls must each have a function with a name"
    return None


def _chat_problem(line: dict[str, Any], images: bool) -> str | None:
    messages = line.get("messages")
    if not isinstance(messages, list) or not messages:
        return (
            "Missing required field 'messages'" if messages is None else "'messages' must be a non-empty list"
        )
    for position, message in enumerate(messages):
        problem = _message_problem(position, message, images)
        if problem is not None:
            return problem
    if not any(message.get("role") == "assistant" for message in messages):
        return "Examples must contain at least one assistant message"
    counted = sum(
        1
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    )
    if counted > _MAX_IMAGES:
        return f"Examples may contain at most {_MAX_IMAGES} images (this one has {counted})"
    return None


def _dpo_problem(line: dict[str, Any], images: bool) -> str | None:
    prompt = line.get("input")
    if not isinstance(prompt, dict) or not isinstance(prompt.get("messages"), list):
        return "Missing required field 'input.messages'"
    for field in ("preferred_output", "non_preferred_output"):
        output = line.get(field)
        if not isinstance(output, list) or not output:
            return f"Missing required field '{field}'"
        if any(not isinstance(m, dict) or m.get("role") != "assistant" for m in output):
            return f"'{field}' must contain only assistant messages"
    if not images:
        for position, message in enumerate(prompt["messages"]):
            problem = _message_problem(position, message, images) if isinstance(message, dict) else None
            if problem is not None:
                return f"input.{problem}"
    return None


def check_lines(text: str, method: str, *, images: bool = True) -> tuple[int, list[str]]:
    """(examples, problems): `problems` names the first few bad lines as OpenAI does; a file with
    fewer than `MIN_EXAMPLES` examples is one problem. `images` False: the base takes text only, so
    an `image_url` part is a problem (it would be trained on as if the image were not there)."""
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
        problem = "Each line must be a JSON object" if not isinstance(line, dict) else check(line, images)
        if problem is not None:
            problems.append(f"Line {number}: {problem}")
        if len(problems) >= _MAX_REPORTED:
            break
    if not problems and examples < MIN_EXAMPLES:
        problems.append(
            f"Training file has {examples} example(s), but must have at least {MIN_EXAMPLES} examples"
        )
    return examples, problems
