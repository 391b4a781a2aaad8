"""The Responses API's remote MCP tools and the gateway's tool loop (docs/orchestration.md,
"Server-side tools").

`prepare` (before the engine is called, as file_search.py's search): each `{"type": "mcp"}` tool's
server is listed (an `mcp_list_tools` output item), unless the history (previous_response_id or the
conversation) already holds its listing, which is reused as OpenAI caches it; its allowed tools go
to the engine as function tools, a `tool_choice` naming an MCP tool as a function choice. An
`mcp_approval_response` input item answering an earlier `mcp_approval_request` runs that call now.

`run` is the loop: the engine answers (JSON); each function call naming an MCP tool becomes an
`mcp_call` item (the server called, its output or error fed back as the call's output) or, when the
tool needs approval, an `mcp_approval_request` item that ends the response until the caller answers
it; then the engine goes again, until it answers without calling, `max_steps` turns have called
tools (the last turn is then asked with `tool_choice: none`), or `deadline_s` has passed. A forced
`tool_choice` holds for the first turn only (as OpenAI's), or the model would call forever. The
answer's usage is the sum of the turns'.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import APIError, InvalidRequest
from gateway.protocol.common import InvalidParam
from gateway.protocol.hosted_tools import ApprovalResponse, McpTool
from gateway.protocol.validation import parse_object
from gateway.services.mcp_client import BlockedAddress, McpServers, ToolServerError
from gateway.services.responses_items import engine_items, new_id

Trace = Callable[[str], AbstractContextManager[None]]
Engine = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
OnItem = Callable[[dict[str, Any]], Awaitable[None]]


class ToolListFailed(APIError):
    """OpenAI's 424 when an MCP server's tools cannot be listed."""

    status = 424
    type = "external_connector_error"
    code = "mcp_list_tools_failed"


@dataclass
class McpRun:
    """One request's MCP servers: which function name is whose tool, and the items made so far."""

    servers: dict[str, McpTool]  # server_label -> the request's tool
    names: dict[str, str]  # function name the engine sees -> server_label
    added: list[dict[str, Any]] = field(default_factory=list)
    # A child span of the request per listing and call (Ticket.stage; nothing by default).
    trace: Trace = field(default=lambda _name: nullcontext())
    # The request's `tools` and `tool_choice` as the response shows them (the MCP tools' `headers`,
    # credentials often, never shown nor stored), where the engine saw function tools.
    shown: dict[str, Any] = field(default_factory=dict)


class McpTools:
    def __init__(self, servers: McpServers, *, max_steps: int, deadline_s: float) -> None:
        self.servers = servers
        self._max_steps = max_steps
        self._deadline_s = deadline_s

    async def prepare(
        self,
        payload: dict[str, Any],
        items: list[dict[str, Any]],
        fresh: int,
        engine_body: dict[str, Any],
        trace: Trace | None = None,
    ) -> McpRun | None:
        """The engine body with the MCP tools as function tools (see the module's words); None when
        the request has no MCP tool."""
        tools = payload.get("tools")
        if not isinstance(tools, list) or not any(_is_mcp(t) for t in tools):
            return None
        run = McpRun({}, {}) if trace is None else McpRun({}, {}, trace=trace)
        sent: list[Any] = []
        for n, raw in enumerate(tools):
            if not _is_mcp(raw):
                if raw in (engine_body.get("tools") or []):  # not a tool the gateway ran already
                    sent.append(raw)
                continue
            tool = _parse(McpTool, raw, f"tools[{n}]")
            if tool.server_label in run.servers:
                raise InvalidRequest(
                    "Each MCP server needs its own `server_label`.", param=f"tools[{n}].server_label"
                )
            run.servers[tool.server_label] = tool
            for listed in await self._listing(run, tool, items, n):
                if tool.allows(listed["name"]) and listed["name"] not in run.names:
                    run.names[listed["name"]] = tool.server_label
                    sent.append(_function(listed))
        run.shown = {
            "tools": [{k: v for k, v in t.items() if k != "headers"} if _is_mcp(t) else t for t in tools],
            "tool_choice": payload.get("tool_choice", "auto"),
        }
        engine_body["tools"] = sent
        engine_body["tool_choice"] = _choice(engine_body.get("tool_choice"), run)
        await self._answer_approvals(run, items, len(items) - fresh, engine_body)
        return run

    async def _listing(
        self, run: McpRun, tool: McpTool, items: list[dict[str, Any]], n: int
    ) -> list[dict[str, Any]]:
        for item in reversed(items):
            if item.get("type") == "mcp_list_tools" and item.get("server_label") == tool.server_label:
                return list(item.get("tools") or [])
        try:
            self.servers.check_url(tool.server_url)
            with run.trace("mcp.list_tools"):
                found = await self.servers.list_tools(tool.server_url, tool.headers)
            listed = [t for t in found if tool.allows(t["name"])]
        except BlockedAddress as exc:
            raise InvalidRequest(str(exc), param=f"tools[{n}].server_url", code="url_not_allowed") from None
        except ToolServerError as exc:
            raise ToolListFailed(
                f"Error retrieving tool list from MCP server: '{tool.server_label}'. {exc}",
                param=f"tools[{n}]",
            ) from None
        run.added.append(
            {
                "id": new_id("mcpl"),
                "type": "mcp_list_tools",
                "server_label": tool.server_label,
                "tools": listed,
                "error": None,
            }
        )
        return listed

    async def _answer_approvals(
        self, run: McpRun, items: list[dict[str, Any]], first_fresh: int, engine_body: dict[str, Any]
    ) -> None:
        """Run the calls the request's `mcp_approval_response` items approve."""
        requests = {i.get("id"): i for i in items if i.get("type") == "mcp_approval_request"}
        for n, item in enumerate(items[first_fresh:]):
            if item.get("type") != "mcp_approval_response":
                continue
            answer = _parse(ApprovalResponse, item, f"input[{n}]")
            request = requests.get(answer.approval_request_id)
            if request is None:
                raise InvalidRequest(
                    f"No mcp_approval_request with id '{answer.approval_request_id}' in this conversation.",
                    param=f"input[{n}].approval_request_id",
                )
            if not answer.approve:
                continue  # denied: never called; the model answers without it
            call = await self._call(
                run, str(request["server_label"]), str(request["name"]), request.get("arguments")
            )
            call["approval_request_id"] = answer.approval_request_id
            run.added.append(call)
            engine_body["input"] = [*engine_body.get("input", []), *engine_items(call)]
            engine_body["tool_choice"] = "auto"

    async def _call(self, run: McpRun, label: str, name: str, arguments: Any) -> dict[str, Any]:
        tool = run.servers.get(label)
        text = arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode()
        item: dict[str, Any] = {
            "id": new_id("mcp"),
            "type": "mcp_call",
            "server_label": label,
            "name": name,
            "arguments": text,
            "output": None,
            "error": None,
            "approval_request_id": None,
            "status": "completed",
        }
        try:
            parsed = orjson.loads(text or "{}")
        except orjson.JSONDecodeError:
            parsed = None
        if tool is None:
            item["error"] = f"The MCP server '{label}' is not among this request's tools."
        elif not isinstance(parsed, dict):
            item["error"] = "The tool's arguments are not a JSON object."
        else:
            with run.trace("mcp.call"):
                result = await self.servers.call(tool.server_url, tool.headers, name, parsed)
            item["output"], item["error"] = result.output, result.error
        if item["error"] is not None:
            item["status"] = "failed"
        return item

    async def run(
        self, run: McpRun, engine_body: dict[str, Any], engine: Engine, on_item: OnItem | None = None
    ) -> dict[str, Any]:
        """The loop (see the module's words): the last engine answer with every item the loop made
        ahead of its own output, and the turns' usage summed."""
        body = copy.deepcopy(engine_body)
        body["stream"] = False
        made = list(run.added)
        usage: dict[str, Any] = {}
        ends = time.monotonic() + self._deadline_s
        steps = 0
        while True:
            if steps >= self._max_steps or time.monotonic() > ends:
                body["tool_choice"] = "none"
            answer = await engine(body)
            _add_usage(usage, answer.get("usage"))
            output = [o for o in answer.get("output") or [] if isinstance(o, dict)]
            calls = [o for o in output if o.get("type") == "function_call" and o.get("name") in run.names]
            if not calls or body.get("tool_choice") == "none":
                break
            steps += 1
            pending = False
            for call in calls:
                item = await self._step(run, call, body)
                pending = pending or item["type"] == "mcp_approval_request"
                made.append(item)
                if on_item is not None:
                    await on_item(item)
            body["tool_choice"] = "auto"
            if pending:
                break
        answer["output"] = [*made, *(o for o in output if o not in calls)]
        answer.update(run.shown)
        if usage:
            answer["usage"] = usage
        return answer

    async def _step(self, run: McpRun, call: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        label, name = run.names[str(call["name"])], str(call["name"])
        if run.servers[label].needs_approval(name):
            return {
                "id": new_id("mcpr"),
                "type": "mcp_approval_request",
                "server_label": label,
                "name": name,
                "arguments": call.get("arguments") or "{}",
            }
        item = await self._call(run, label, name, call.get("arguments"))
        body["input"] = [*body.get("input", []), *engine_items(item)]
        return item


def _is_mcp(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("type") == "mcp"


def _parse(model: Any, raw: Any, param: str) -> Any:
    try:
        return parse_object(model, raw, "A tool must be an object.")
    except InvalidParam as exc:
        raise InvalidRequest(
            exc.message, param=f"{param}.{exc.param}" if exc.param else param, code=exc.code
        ) from None


def _function(listed: dict[str, Any]) -> dict[str, Any]:
    schema = listed.get("input_schema")
    return {
        "type": "function",
        "name": listed["name"],
        "description": listed.get("description") or "",
        "parameters": schema if isinstance(schema, dict) else {"type": "object", "properties": {}},
        # Not `strict`: vLLM would pin the arguments with a grammar some servers' schemas do not
        # compile to; the server judges them, and a refused call is a failed `mcp_call` the model reads.
        "strict": False,
    }


def _choice(choice: Any, run: McpRun) -> Any:
    """`tool_choice` for the engine: `{"type": "mcp", "server_label", "name"}` as a function choice
    (a server without `name`: any of its tools, `required`)."""
    if not (isinstance(choice, dict) and choice.get("type") == "mcp"):
        return choice if choice is not None else "auto"
    label, name = choice.get("server_label"), choice.get("name")
    if label not in run.servers:
        raise InvalidRequest(
            f"tool_choice names the MCP server '{label}', which is not among the tools.", param="tool_choice"
        )
    if name is None:
        return "required"
    if run.names.get(str(name)) != label:
        raise InvalidRequest(f"The MCP server '{label}' has no allowed tool '{name}'.", param="tool_choice")
    return {"type": "function", "name": name}


def _add_usage(total: dict[str, Any], usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        value = usage.get(key)
        if isinstance(value, int):
            total[key] = total.get(key, 0) + value
    for key, value in usage.items():
        total.setdefault(key, value)
