"""One Responses create request, resolved (`Turn`): the response's id, its items, what the engine is
sent, and how the engine's response object is shown back to the client."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.protocol.responses_api import ResponsesRequest
from gateway.services.citation_check import Verification
from gateway.services.file_search import Searched
from gateway.services.mcp_tools import McpRun
from gateway.services.memory_chat import Placement
from gateway.services.memory_responses import shown_memory
from gateway.services.responses_items import shown
from gateway.services.web_search import Browsed


@dataclasses.dataclass(frozen=True)
class Turn:
    """One create request, resolved: the response's id, its items and what the engine is sent."""

    response_id: str
    model: str
    parsed: ResponsesRequest
    items: list[dict[str, Any]]
    engine_body: dict[str, Any]
    metadata: dict[str, str]
    new_items: int = 0
    # The search tools' runs (file_search.py, web_search.py): their items and citations added.
    hosted: tuple[Searched | Browsed, ...] = ()
    # The request's remote MCP tools (mcp_tools.py): the gateway runs the tool loop.
    mcp: McpRun | None = None
    # The citation verification pass, when asked (citation_check.py).
    verification: Verification | None = None
    # The end user's memories placed in the engine body (memory_responses.py).
    memory: Placement | None = None

    async def checked(self, response: dict[str, Any]) -> dict[str, Any]:
        """The shown response with its citations verified, when the request asked."""
        return response if self.verification is None else await self.verification.apply(response)

    def show(self, body: dict[str, Any]) -> dict[str, Any]:
        out = shown(
            applied(body, self.hosted),
            response_id=self.response_id,
            previous_response_id=self.parsed.previous_response_id,
            store=self.parsed.store is not False,
            background=bool(self.parsed.background),
            metadata=self.metadata,
            conversation=self.parsed.conversation,
        )
        return shown_memory(out, self.memory, self.parsed.instructions)

    @property
    def fresh(self) -> list[dict[str, Any]]:
        """This request's own input items (after the previous response's or the conversation's)."""
        return self.items[len(self.items) - self.new_items :]


def applied(body: dict[str, Any], hosted: tuple[Searched | Browsed, ...]) -> dict[str, Any]:
    for ran in reversed(hosted):  # file_search's item first, as the tools were listed
        body = ran.apply(body)
    return body
