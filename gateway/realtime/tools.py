"""Function calling over /v1/realtime: the session's `tools` and `tool_choice` as the chat
completion a response asks for, and the two function items of a conversation.

A realtime tool is flat (`{"type": "function", "name", "description", "parameters"}`), a chat tool
nests the function (`{"type": "function", "function": {...}}`); `tool_choice` is `auto`, `none`,
`required` or one function: GA writes `{"type": "function", "name": ...}`, beta the bare name. A
named function is what vLLM serves through structured outputs (its arguments follow the
function's `parameters`), the others through the engine's tool parser (`--tool-call-parser`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.realtime.events import EventError

Status = Literal["completed", "incomplete", "in_progress"]
_MODES = ("auto", "none", "required")


@dataclass
class FunctionCall:
    """A function call the model made (or the client added): its arguments are a JSON string."""

    id: str
    call_id: str
    name: str
    arguments: str = ""
    status: Status = "completed"
    role: Literal["assistant"] = "assistant"

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.item",
            "type": "function_call",
            "status": self.status,
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
        }

    def chat_call(self) -> dict[str, Any]:
        """As chat's `tool_calls` entry. vLLM parses the arguments as JSON for the chat template, so
        arguments cut short (a response that hit its token cap) would make every later turn a 400:
        they are sent as `{}`; whole ones are sent compact (the template writes them again)."""
        try:
            arguments = orjson.dumps(orjson.loads(self.arguments)).decode()
        except orjson.JSONDecodeError:
            arguments = "{}"
        return {
            "id": self.call_id,
            "type": "function",
            "function": {"name": self.name, "arguments": arguments},
        }


@dataclass
class FunctionCallOutput:
    """The client's result of a function call, told to the model as a `tool` message."""

    id: str
    call_id: str
    output: str
    status: Status = "completed"
    role: Literal["tool"] = "tool"

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.item",
            "type": "function_call_output",
            "status": self.status,
            "call_id": self.call_id,
            "output": self.output,
        }


def tools_of(given: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    """Realtime tools as they are kept and described (flat), each checked; `param` names them."""
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(given):
        where = f"{param}[{index}]"
        if tool.get("type", "function") != "function":
            raise EventError(
                f"Only `function` tools are supported, not {tool.get('type')!r}.",
                code="invalid_value",
                param=f"{where}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise EventError(
                "A function tool needs a `name` of 1 to 64 characters.",
                code="missing_required_parameter",
                param=f"{where}.name",
            )
        parameters = tool.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise EventError(
                "`parameters` must be a JSON schema object.",
                code="invalid_value",
                param=f"{where}.parameters",
            )
        described: dict[str, Any] = {"type": "function", "name": name, "parameters": parameters}
        if isinstance(tool.get("description"), str):
            described["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):  # a Tantra extension: see chat_tools
            described["strict"] = tool["strict"]
        tools.append(described)
    return tools


def choice_of(given: str | dict[str, Any], tools: list[dict[str, Any]], param: str) -> str | dict[str, Any]:
    """`tool_choice` as kept and described (GA's shape for one function); a function that is not
    among `tools` is an error, as vLLM's would be."""
    if isinstance(given, str) and given in _MODES:
        return given
    if isinstance(given, str):
        name: Any = given  # beta: the function's name
    else:
        function = given.get("function")
        name = given.get("name") or (function.get("name") if isinstance(function, dict) else None)
        if given.get("type") != "function" or not isinstance(name, str):
            raise EventError(
                '`tool_choice` is `auto`, `none`, `required` or `{"type": "function", "name": ...}`.',
                code="invalid_value",
                param=param,
            )
    if not any(tool["name"] == name for tool in tools):
        raise EventError(
            f"`tool_choice` names the function {name!r}, which is not among the tools.",
            code="invalid_value",
            param=param,
        )
    return {"type": "function", "name": name}


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The flat realtime tools as chat completion tools, `strict` unless the tool says otherwise:
    vLLM then constrains a call's arguments to the function's `parameters` (without it, 0.32
    constrains only the call's envelope and the arguments may be any text), so a voice agent
    always gets arguments it can parse, as from OpenAI's realtime models."""
    return [
        {"type": "function", "function": {"strict": True, **{k: v for k, v in tool.items() if k != "type"}}}
        for tool in tools
    ]


def chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice["name"]}}


def beta_choice(choice: str | dict[str, Any]) -> str:
    """`tool_choice` as beta's session describes it: a mode, or the function's name."""
    return choice if isinstance(choice, str) else str(choice["name"])
