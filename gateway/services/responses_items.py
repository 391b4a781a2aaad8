"""The Responses API's items and objects as the gateway keeps them: a request's `input` as items with
ids, the history a follow-up sends the engine (`previous_response_id`), and the response object as
the client is shown it."""

from __future__ import annotations

import secrets
from typing import Any

# Item ids as OpenAI spells them, by the item's type.
_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}
# vLLM's extras of its response object, left out of what the client sees when they are empty.
# Items of the gateway's own tools the engine never reads: their results were context, a listing was
# turned into function tools, an approval was answered by running the call (an `mcp_call`).
_GATEWAY_ONLY = frozenset(
    {"file_search_call", "web_search_call", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response"}
)
_ENGINE_EXTRAS = ("input_messages", "output_messages", "kv_transfer_params", "ec_transfer_params")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def input_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`input` as items, each with an id and a type: a string is one user message; a message's string
    content becomes one text part (`input_text`, `output_text` for the assistant's)."""
    given = [{"role": "user", "content": value}] if isinstance(value, str) else value
    items = []
    for raw in given:
        item = dict(raw)
        kind = item.setdefault("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": content}]
            item.setdefault("status", "completed")
        item.setdefault("id", new_id(_PREFIXES.get(str(kind), "item")))
        items.append(item)
    return items


def for_engine(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as vLLM's renderer takes them: input messages without the ids and status the gateway
    gave them (vLLM reads a message with an id as an output message); output items as they were."""
    sent = []
    for item in items:
        kind = item.get("type")
        if kind in _GATEWAY_ONLY:
            continue  # the gateway's own tools' items (file_search.py, web_search.py, mcp_tools.py)
        if kind == "mcp_call":
            sent += engine_items(item)  # what the model called, and what it was given back
            continue
        if item.get("type") == "message" and item.get("role") != "assistant":
            item = {key: value for key, value in item.items() if key not in ("id", "status")}
        sent.append(item)
    return sent


def engine_items(call: dict[str, Any]) -> list[dict[str, Any]]:
    """An `mcp_call` item as the engine reads it: its function call and the call's output."""
    result = call.get("output") if call.get("error") is None else f"Error: {call.get('error')}"
    return [
        {
            "type": "function_call",
            "call_id": call["id"],
            "name": call["name"],
            "arguments": call.get("arguments") or "{}",
        },
        {"type": "function_call_output", "call_id": call["id"], "output": str(result or "")},
    ]


def history(previous_items: list[dict[str, Any]], previous_body: dict[str, Any]) -> list[dict[str, Any]]:
    """What a follow-up continues: the previous response's items and then its output (OpenAI leaves
    its `instructions` out)."""
    output = previous_body.get("output")
    return [*previous_items, *(output if isinstance(output, list) else [])]


def shown(
    body: dict[str, Any],
    *,
    response_id: str,
    previous_response_id: str | None,
    store: bool,
    background: bool,
    metadata: dict[str, str],
    conversation: str | None = None,
) -> dict[str, Any]:
    """The engine's response object as the client sees it: what the gateway changed on the way in
    put back (vLLM was sent `store: false` and the whole history instead of the previous id or the
    conversation's items)."""
    out = {key: value for key, value in body.items() if not (key in _ENGINE_EXTRAS and value is None)}
    out.update(
        id=response_id,
        object="response",
        previous_response_id=previous_response_id,
        store=store,
        background=background,
        metadata=metadata,
    )
    if conversation is not None:
        out["conversation"] = {"id": conversation}
    return out


def queued(
    response_id: str, model: str, payload: dict[str, Any], created_at: int, metadata: dict[str, str]
) -> dict[str, Any]:
    """A background response before its job runs: OpenAI's object with `status: queued`."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "queued",
        "background": True,
        "error": None,
        "incomplete_details": None,
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": payload.get("parallel_tool_calls", True),
        "previous_response_id": payload.get("previous_response_id"),
        "store": True,
        "temperature": payload.get("temperature"),
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": payload.get("tools") or [],
        "top_p": payload.get("top_p"),
        "usage": None,
        "user": payload.get("user"),
        "metadata": metadata,
        **({"conversation": {"id": payload["conversation"]}} if payload.get("conversation") else {}),
    }
