"""A response's function calls as they stream: the chat completion's `delta.tool_calls` pieces
become `function_call` output items, sent as OpenAI's Realtime API sends them
(`response.output_item.added`, `response.function_call_arguments.delta` for each piece of the
arguments, then `.done`, `response.output_item.done`)."""

from __future__ import annotations

from typing import Any, Protocol

from gateway.realtime.events import new_id
from gateway.realtime.tools import FunctionCall


class Output(Protocol):
    """What the calls need of their response."""

    id: str

    async def open_item(self, item: FunctionCall) -> int:
        """Adds `item` to the response's output (announced), and returns its output index."""

    async def close_item(self, item: FunctionCall, index: int) -> None: ...

    async def emit(self, event: dict[str, Any]) -> None: ...


class Calls:
    """The function calls of one response, by the chat stream's tool call index."""

    def __init__(self, response: Output) -> None:
        self._response = response
        self._open: dict[int, tuple[FunctionCall, int]] = {}  # tool call index: item, output index

    async def feed(self, pieces: list[dict[str, Any]]) -> None:
        """One chunk's `delta.tool_calls`: the first piece of a call names it, later ones carry
        more of its arguments."""
        for piece in pieces:
            function = piece.get("function") or {}
            index = int(piece.get("index") or 0)
            if index not in self._open:
                call = FunctionCall(
                    new_id("item"),
                    str(piece.get("id") or new_id("call")),
                    str(function.get("name") or ""),
                    status="in_progress",
                )
                self._open[index] = (call, await self._response.open_item(call))
            call, output_index = self._open[index]
            if function.get("name") and not call.name:
                call.name = str(function["name"])
            if delta := function.get("arguments"):
                call.arguments += delta
                await self._response.emit(
                    {
                        **self._where(call, output_index),
                        "type": "response.function_call_arguments.delta",
                        "delta": delta,
                    }
                )

    async def finish(self, *, complete: bool) -> None:
        """Each call's arguments are done (also when the response was cut short, as OpenAI's)."""
        for call, output_index in self._open.values():
            call.status = "completed" if complete else "incomplete"
            await self._response.emit(
                {
                    **self._where(call, output_index),
                    "type": "response.function_call_arguments.done",
                    "name": call.name,
                    "arguments": call.arguments,
                }
            )
            await self._response.close_item(call, output_index)

    def _where(self, call: FunctionCall, output_index: int) -> dict[str, Any]:
        return {
            "response_id": self._response.id,
            "item_id": call.id,
            "output_index": output_index,
            "call_id": call.call_id,
        }
