"""The Responses API's server-side tools built from the settings (a builder of the composition root;
docs/orchestration.md, "Server-side tools"): remote MCP tools and their loop, and web search."""

from __future__ import annotations

import httpx

from adapters.addresses import AddressPolicy
from gateway.services.citation_check import CitationChecks, Options
from gateway.services.mcp_client import McpServers
from gateway.services.mcp_tools import McpTools
from gateway.services.responses import ResponsesService
from gateway.services.vector_stores import VectorStoresService
from gateway.services.web_search import SearxngProvider, VectorStoreProvider, WebSearch
from gateway.settings.schema import Settings
from gateway.upstreams.dispatch import Dispatcher


def hosted_tools(settings: Settings, responses: ResponsesService, dispatcher: Dispatcher) -> None:
    """Hand the Responses API the MCP tool loop (unless TANTRA_TOOLS_MCP_ENABLED is false), with
    TANTRA_WEB_SEARCH_URL web search over that SearXNG-compatible API, and the search tools'
    citation verification pass (asked per request, or always with TANTRA_CITATIONS_VERIFY)."""
    responses.citations = CitationChecks(
        dispatcher,
        Options(
            default=settings.citations_verify,
            method=settings.citations_verify_method,
            embedding_model=settings.citations_embedding_model
            or settings.vector_stores_embedding_model
            or settings.memory_embedding_model,
            threshold=settings.citations_threshold,
            judge_model=settings.citations_judge_model,
        ),
    )
    responses.background.citations = responses.citations  # background responses' pass
    if settings.tools_mcp_enabled:
        policy = AddressPolicy([str(net) for net in settings.tools_url_allowed_networks])
        servers = McpServers(
            policy, timeout_s=settings.tools_call_timeout_s, max_output_chars=settings.tools_max_output_chars
        )
        responses.mcp = McpTools(
            servers, max_steps=settings.tools_max_steps, deadline_s=settings.tools_deadline_s
        )
    if settings.web_search_url:
        # One client for the process's life, as the engine's (closed with the process).
        client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        provider = SearxngProvider(settings.web_search_url, client, timeout_s=settings.web_search_timeout_s)
        responses.web_search = WebSearch(provider, max_results=settings.web_search_max_results)


def offline_web_search(settings: Settings, responses: ResponsesService, stores: VectorStoresService) -> None:
    """Web search over the tenant's own vector stores, when no search API is configured."""
    if responses.web_search is None:
        provider = VectorStoreProvider(stores)
        responses.web_search = WebSearch(provider, max_results=settings.web_search_max_results)
