"""The Responses API's server-side tools (docs/orchestration.md, "Server-side tools"): remote MCP
servers and web search, the tool loop's limits, and where their URLs may point.

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, IPvAnyNetwork


class ToolsFields(BaseModel):
    """Remote MCP tools and web search in /v1/responses, run by the gateway's own tool loop."""

    tools_mcp_enabled: bool = Field(
        True, description='Serve `{"type": "mcp"}` tools in /v1/responses (false: a 400 on the tool).'
    )
    # SSRF guard (the hardening issue's rules, adapters/addresses.py): a server_url or the search
    # provider must resolve to public addresses only, unless inside these CIDRs; every request
    # connects to the address that was checked (no second DNS answer).
    tools_url_allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="CIDRs (`10.1.2.0/24`, `127.0.0.1/32`) MCP server URLs may resolve to although "
        "not public; empty: public addresses only.",
    )
    # One response's tool loop: model asks, gateway calls, result fed back, model again.
    tools_max_steps: int = Field(
        8, ge=1, le=64, description="Model turns with tool calls per response; then it must answer."
    )
    tools_deadline_s: float = Field(
        120.0, gt=0, description="Longest tool loop of one response (tool calls and model turns)."
    )
    tools_call_timeout_s: float = Field(
        30.0, gt=0, description="Longest single MCP request (listing the tools, one call)."
    )
    tools_max_output_chars: int = Field(
        20_000, ge=256, description="An MCP call's output past this is cut (what the model is fed)."
    )
    web_search_url: str = Field(
        "",
        description="A SearXNG-compatible search API (`GET <url>/search?q=...&format=json`) for the "
        "`web_search` tool; empty: the tenant's own vector stores are searched (offline).",
    )
    web_search_max_results: int = Field(5, ge=1, le=20, description="Web search results fed to the model.")
    web_search_timeout_s: float = Field(10.0, gt=0, description="Longest web search request.")
    # The citation verification pass (docs/orchestration.md, "Citation verification").
    citations_verify: bool = Field(
        False,
        description="Verify the citations of every /v1/responses answer that used file or web search "
        '(a request\'s `tantra: {"verify_citations": ...}` overrides it).',
    )
    citations_verify_method: Literal["embedding", "judge"] = Field(
        "embedding",
        description="`embedding`: cosine of each cited sentence and its source passage over "
        "TANTRA_CITATIONS_EMBEDDING_MODEL; `judge`: an entailment prompt to TANTRA_CITATIONS_JUDGE_MODEL.",
    )
    citations_embedding_model: str = Field(
        "",
        description="The served embedding model of the `embedding` method. Empty: "
        "TANTRA_VECTOR_STORES_EMBEDDING_MODEL, else TANTRA_MEMORY_EMBEDDING_MODEL.",
    )
    citations_threshold: float = Field(
        0.4,
        ge=-1,
        le=1,
        description="The least cosine at which the `embedding` method calls a sentence supported.",
    )
    citations_judge_model: str = Field(
        "", description="The served model of the `judge` method. Empty: the response's own model."
    )
