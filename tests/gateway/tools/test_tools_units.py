"""The server-side tools' logic without an engine (issue 23, points 6 and 7): the MCP tool loop
against a scripted engine and a real MCP server (mcp_server.py), its limits and approvals; the
approval and allowed-tools filters; MCP items as the engine reads them; the SSRF guard of MCP
connections; citations from `[n]` markers; web search with a SearXNG-compatible provider."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from adapters.addresses import AddressPolicy
from gateway.protocol.hosted_tools import McpTool
from gateway.services.citations import annotations_of, file_citation, url_citation
from gateway.services.mcp_client import BlockedAddress, McpServers
from gateway.services.mcp_tools import McpTools
from gateway.services.responses_items import for_engine
from gateway.services.web_search import SearxngProvider, WebSearch
from tests.gateway.tools import mcp_server
from tests.gateway.tools.search_server import searxng_app
from tests.servers import ThreadedServer


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with mcp_server.serve() as server:
        yield server.url + "/mcp"


def servers(*networks: str) -> McpServers:
    return McpServers(AddressPolicy(networks), timeout_s=10, max_output_chars=1000)


def tool(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "shop", "server_url": url, **extra}


class Scripted:
    """An engine answering each turn with an `add` call, then a message once told `none`."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(orjson.loads(orjson.dumps(body)))
        usage = {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}
        if body.get("tool_choice") == "none":
            message = {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "5"}],
            }
            return {"output": [message], "usage": usage}
        call = {"type": "function_call", "call_id": "c1", "name": "add", "arguments": '{"a": 2, "b": 3}'}
        return {"output": [call], "usage": usage}


async def test_the_loop_calls_until_its_step_limit(mcp_url: str) -> None:
    loop = McpTools(servers("127.0.0.1/32"), max_steps=2, deadline_s=60)
    payload: dict[str, Any] = {
        "tools": [tool(mcp_url, require_approval="never", headers={"authorization": "Bearer secret"})],
        "tool_choice": {"type": "mcp", "server_label": "shop"},
    }
    body: dict[str, Any] = {"input": [{"role": "user", "content": "2+3?"}], **payload}  # as the engine's copy
    run = await loop.prepare(payload, [], 0, body)
    assert run is not None and [t["name"] for t in body["tools"]] == ["lookup_order", "add", "explode"]
    assert body["tool_choice"] == "required"
    engine = Scripted()
    answer = await loop.run(run, body, engine)
    kinds = [item["type"] for item in answer["output"]]
    assert kinds == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    assert [item.get("output") for item in answer["output"][1:3]] == ["5", "5"]
    # Forced on the first turn only; the third turn (past two steps) may not call.
    assert [b["tool_choice"] for b in engine.bodies] == ["required", "auto", "none"]
    # Each turn's engine input holds the calls and their outputs so far.
    assert [i["type"] for i in engine.bodies[2]["input"][1:]] == ["function_call", "function_call_output"] * 2
    assert answer["usage"] == {"input_tokens": 30, "output_tokens": 6, "total_tokens": 36}
    # The response shows the request's MCP tool (never its headers) and tool choice, not the engine's.
    assert answer["tools"] == [{k: v for k, v in payload["tools"][0].items() if k != "headers"}]
    assert answer["tool_choice"] == {"type": "mcp", "server_label": "shop"}


async def test_approval_stops_the_loop_and_the_answer_runs_the_call(mcp_url: str) -> None:
    loop = McpTools(servers("127.0.0.1/32"), max_steps=4, deadline_s=60)
    payload = {"tools": [tool(mcp_url, allowed_tools=["add"])]}
    body: dict[str, Any] = {"input": []}
    run = await loop.prepare(payload, [], 0, body)
    assert run is not None
    first = await loop.run(run, body, Scripted())
    listing, request = first["output"]
    assert listing["tools"][0]["name"] == "add" and len(listing["tools"]) == 1
    assert request["type"] == "mcp_approval_request" and request["arguments"] == '{"a": 2, "b": 3}'
    # The follow-up: the history holds the listing (reused, not listed again) and the request.
    answer = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    items = [*first["output"], answer]
    body = {"input": for_engine(items)}
    again = await loop.prepare(payload, items, 1, body)
    assert again is not None and [i["type"] for i in again.added] == ["mcp_call"]
    assert again.added[0]["output"] == "5" and again.added[0]["approval_request_id"] == request["id"]
    assert body["tool_choice"] == "auto"
    assert [i["type"] for i in body["input"]] == ["function_call", "function_call_output"]
    denied = {**answer, "approve": False}
    body = {"input": []}
    refused = await loop.prepare(payload, [*first["output"], denied], 1, body)
    assert refused is not None and refused.added == [] and body["input"] == []


def test_approval_and_allowed_filters() -> None:
    def mcp(**extra: Any) -> McpTool:
        return McpTool.model_validate(tool("https://mcp.example.com", **extra))

    assert mcp().needs_approval("x")  # OpenAI's default: always
    assert not mcp(require_approval="never").needs_approval("x")
    only = mcp(require_approval={"never": {"tool_names": ["safe"]}})
    assert not only.needs_approval("safe") and only.needs_approval("other")
    listed = mcp(require_approval={"always": {"tool_names": ["risky"]}})
    assert listed.needs_approval("risky") and not listed.needs_approval("other")
    assert mcp(allowed_tools=["a"]).allows("a") and not mcp(allowed_tools=["a"]).allows("b")
    assert mcp(allowed_tools={"tool_names": ["b"]}).allows("b") and mcp().allows("anything")


def test_mcp_items_as_the_engine_reads_them() -> None:
    call = {
        "id": "mcp_1",
        "type": "mcp_call",
        "name": "add",
        "arguments": "{}",
        "output": None,
        "error": "boom",
    }
    items: list[dict[str, Any]] = [
        {"type": "mcp_list_tools", "server_label": "s", "tools": []},
        {"type": "mcp_approval_request", "id": "r", "name": "add", "arguments": "{}", "server_label": "s"},
        {"type": "mcp_approval_response", "approval_request_id": "r", "approve": True},
        call,
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    ]
    assert for_engine(items) == [
        {"type": "function_call", "call_id": "mcp_1", "name": "add", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "mcp_1", "output": "Error: boom"},
    ]


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:192.168.1.1"])
async def test_mcp_connections_obey_the_ssrf_rules(address: str) -> None:
    async def resolver(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address(address)]

    guarded = McpServers(AddressPolicy(), timeout_s=5, max_output_chars=100, resolver=resolver)
    with pytest.raises(BlockedAddress):
        await guarded.list_tools("http://mcp.example.com/mcp", None)
    failed = await guarded.call("http://mcp.example.com/mcp", None, "add", {})
    assert failed.output is None and failed.error is not None and "loopback, private" in failed.error
    with pytest.raises(BlockedAddress):
        guarded.check_url("http://user:pw@mcp.example.com/mcp")


def test_citations_from_markers() -> None:
    sources = [url_citation("https://a.example", "A"), url_citation("https://b.example", "B")]
    text = "Papayas grow in Mexico [2]. They are sweet [1][9]."
    found = annotations_of(text, sources)
    assert [(a["url"], a["start_index"], a["end_index"]) for a in found] == [
        ("https://b.example", 23, 26),
        ("https://a.example", 43, 46),
    ]
    assert text[23:26] == "[2]"
    # Unmarked sources are cited at the end, once per file.
    files = [
        file_citation("file-1", "a.txt"),
        file_citation("file-1", "a.txt"),
        file_citation("file-2", "b.txt"),
    ]
    assert annotations_of("No markers.", files) == [
        {"type": "file_citation", "file_id": "file-1", "filename": "a.txt", "index": 11},
        {"type": "file_citation", "file_id": "file-2", "filename": "b.txt", "index": 11},
    ]


async def test_web_search_with_a_searxng_provider() -> None:
    asked: list[str] = []
    with ThreadedServer(searxng_app(asked)) as server:
        async with httpx.AsyncClient() as client:
            search = WebSearch(SearxngProvider(server.url, client, timeout_s=5), max_results=4)
            body: dict[str, Any] = {
                "input": [{"role": "user", "content": "papaya?"}],
                "tools": [{"type": "web_search"}],
                "tool_choice": "auto",
            }
            payload = {
                "tools": [{"type": "web_search_preview"}],
                "include": ["web_search_call.action.sources"],
            }
            browsed = await search.prepare(None, payload, "papaya?", body)  # type: ignore[arg-type]
    assert browsed is not None and asked == ["papaya?"]
    assert "tools" not in body and "tool_choice" not in body
    context = body["input"][0]["content"][0]["text"]
    assert "[1] Papaya (https://fruit.example/papaya):\nPapayas are PAPAYA-7." in context
    message = {"type": "message", "content": [{"type": "output_text", "text": "Ripe [1]."}]}
    shown = browsed.apply({"output": [message]})
    call = shown["output"][0]
    assert call["type"] == "web_search_call" and call["status"] == "completed"
    assert call["action"]["query"] == "papaya?" and len(call["action"]["sources"]) == 2
    notes = shown["output"][1]["content"][0]["annotations"]
    assert notes[0] == {
        "type": "url_citation",
        "url": "https://fruit.example/papaya",
        "title": "Papaya",
        "start_index": 5,
        "end_index": 8,
    }
    assert notes[1]["url"] == "https://fruit.example/mango" and notes[1]["start_index"] == 9


async def test_a_failing_provider_is_a_failed_call() -> None:
    async with httpx.AsyncClient() as client:
        search = WebSearch(SearxngProvider("http://127.0.0.1:9", client, timeout_s=2), max_results=4)
        body: dict[str, Any] = {"input": [{"role": "user", "content": "q"}]}
        browsed = await search.prepare(None, {"tools": [{"type": "web_search"}]}, "q", body)  # type: ignore[arg-type]
    assert browsed is not None and browsed.failed and browsed.pages == []
    assert browsed.apply({"output": []})["output"][0]["status"] == "failed"


def test_file_search_shows_its_call_results_and_citations() -> None:
    from gateway.services.file_search import Searched
    from gateway.services.vector_core import Result

    results = [
        Result("file-a", "a.txt", 0.9, "Alpha is A.", {}),
        Result("file-b", "b.txt", 0.5, "Beta is B.", {"k": 1}),
    ]
    searched = Searched("fs_1", ["alpha?"], results, include_results=True)
    assert "[1] a.txt (file file-a):\nAlpha is A." in searched.context
    assert "[2] b.txt (file file-b):\nBeta is B." in searched.context
    assert Searched("fs_2", ["q"], [], include_results=False).context == ""
    message = {"type": "message", "content": [{"type": "output_text", "text": "A [2]."}]}
    body = {"output": [message]}
    shown = searched.apply(body)
    assert body == {"output": [message]} and "annotations" not in message["content"][0]  # a copy
    call, answer = shown["output"]
    assert call["type"] == "file_search_call" and call["queries"] == ["alpha?"]
    assert [r["file_id"] for r in call["results"]] == ["file-a", "file-b"]
    files = [(n["file_id"], n["index"]) for n in answer["content"][0]["annotations"]]
    assert files == [("file-b", 2), ("file-a", 6)]  # the unmarked source: at the end of the text
    assert searched.apply({"error": "x"}) == {"error": "x"}
