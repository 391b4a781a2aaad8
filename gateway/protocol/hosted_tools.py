"""The Responses API's server-side tools the gateway runs itself, as OpenAI spells them: remote MCP
servers (`{"type": "mcp", ...}`) and web search (`web_search`, `web_search_preview`).
docs/orchestration.md, "Server-side tools"."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.protocol.common import Open


class ToolNames(Open):
    """OpenAI's tool filter: `{"tool_names": [...]}` (`read_only` is not judged here)."""

    tool_names: list[str] | None = None
    read_only: bool | None = None


class ApprovalFilter(Open):
    """`require_approval` as an object: the tools that always, and that never, need approval."""

    always: ToolNames | None = None
    never: ToolNames | None = None


class McpTool(Open):
    """A remote MCP server the gateway lists and calls over streamable HTTP."""

    type: Literal["mcp"]
    server_label: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    server_url: str = Field(min_length=1, max_length=2048)
    server_description: str | None = None
    headers: dict[str, str] | None = None
    allowed_tools: list[str] | ToolNames | None = None
    # OpenAI's default is "always": nothing runs on a server without the caller saying so.
    require_approval: Literal["always", "never"] | ApprovalFilter | None = "always"

    def allows(self, name: str) -> bool:
        allowed = self.allowed_tools
        if allowed is None:
            return True
        names = allowed if isinstance(allowed, list) else allowed.tool_names
        return names is None or name in names

    def needs_approval(self, name: str) -> bool:
        rule = self.require_approval
        if rule is None or rule == "always":
            return True
        if rule == "never":
            return False
        if rule.never is not None and name in (rule.never.tool_names or []):
            return False
        if rule.always is not None and rule.always.tool_names is not None:
            return name in rule.always.tool_names
        # Named only under `never`: the others need approval (OpenAI's default).
        return True


class ApprovalResponse(Open):
    """An `mcp_approval_response` input item: the caller's answer to an `mcp_approval_request`."""

    type: Literal["mcp_approval_response"]
    approval_request_id: str = Field(min_length=1)
    approve: bool
    reason: str | None = None


class UserLocation(Open):
    type: Literal["approximate"] | None = "approximate"
    city: str | None = None
    country: str | None = None
    region: str | None = None
    timezone: str | None = None


class WebSearchTool(Open):
    """OpenAI's `web_search` (and its `web_search_preview` name)."""

    type: Literal[
        "web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11"
    ]
    search_context_size: Literal["low", "medium", "high"] | None = "medium"
    user_location: UserLocation | None = None
    filters: dict[str, Any] | None = None
