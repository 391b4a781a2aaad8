"""Remote MCP tools and web search in /v1/responses (issue 23, points 6 and 7): the real `openai`
SDK against a gateway in front of the session's real vLLM engine, calling a real MCP server (the `mcp`
SDK's MCPServer over streamable HTTP) the module starts on 127.0.0.1. The model has random weights, so
its call is forced by constraining its output (vLLM's structured outputs, a regex) to the call as the
model's chat template writes one (`<tool_call>{...}</tool_call>`), which vLLM's tool parser reads as
the call (a forced `tool_choice` constrains only the envelope, and random weights then write
whitespace forever inside it). The module's gateway allows one step, so the turn after a call answers
(the regex would call again).

The gateway here is the module's own only because its settings differ: the MCP server listens on
loopback, which the gateway refuses unless the operator opens it (TANTRA_TOOLS_URL_ALLOWED_NETWORKS);
the refusal itself is shown on the session's gateway, whose settings are the defaults. Its web search
provider is a stand-in for SearXNG's JSON API (search_server.py), SearXNG not being installed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.settings.schema import Settings
from tests.gateway.helpers import envelope
from tests.gateway.tools import mcp_server
from tests.gateway.tools.search_server import searxng_app
from tests.servers import ThreadedServer

MODEL = "tantra-tiny"
SHOW_PROMPT = {"enable_response_messages": True}
pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with mcp_server.serve() as server:
        yield server.url + "/mcp"


@pytest.fixture(scope="module")
def searx() -> Iterator[tuple[str, list[str]]]:
    asked: list[str] = []
    with ThreadedServer(searxng_app(asked)) as server:
        yield server.url, asked


@pytest.fixture(scope="module")
def tools_gateway(
    engine_url: str, gateway_settings: Callable[..., Settings], searx: tuple[str, list[str]]
) -> Iterator[str]:
    settings = gateway_settings(
        engine_url=engine_url,
        tools_url_allowed_networks=["127.0.0.1/32"],
        web_search_url=searx[0],
        tools_max_steps=1,
    )
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="module")
def client(tools_gateway: str, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=tools_gateway + "/v1", api_key=api_key, max_retries=0, timeout=120) as c:
        yield c


def mcp_tool(url: str, **extra: Any) -> Any:
    return {"type": "mcp", "server_label": "shop", "server_url": url, **extra}


def forced(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The model's output constrained to one call of `name` (Qwen's template, vLLM's hermes parser)."""
    text = "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"
    escaped = "".join("\\" + c if c in "{}[]().*+?^$|\\" else c for c in text)
    return {"structured_outputs": {"regex": escaped}}


def prompt_of(response: Any) -> str:
    messages = (response.model_extra or {}).get("input_messages") or []
    return "".join(m.get("message", "") for m in messages)


def test_listed_approved_called_and_used(client: openai.OpenAI, mcp_url: str) -> None:
    mcp_server.CALLS.clear()
    tool = mcp_tool(
        mcp_url, allowed_tools=["add", "lookup_order"], require_approval="always", headers={"x-key": "s3cret"}
    )
    first = client.responses.create(
        model=MODEL,
        input="What is the status of my order?",
        tools=[tool],
        max_output_tokens=64,
        extra_body=forced("lookup_order", {"order_id": "A1"}),
    )
    listing, request = first.output[0], first.output[1]
    assert listing.type == "mcp_list_tools" and listing.server_label == "shop"
    assert sorted(t.name for t in listing.tools) == ["add", "lookup_order"]  # `explode` not allowed
    assert request.type == "mcp_approval_request" and request.name == "lookup_order"
    arguments = json.loads(request.arguments)
    assert arguments == {"order_id": "A1"}
    assert mcp_server.CALLS == []  # nothing runs before the caller approves

    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}],
        tools=[tool],
        max_output_tokens=4,
        extra_body=SHOW_PROMPT,
    )
    call = second.output[0]
    assert call.type == "mcp_call" and call.approval_request_id == request.id
    assert (
        call.error is None
        and call.output == f"Order {arguments['order_id']}: shipped on 2026-12-01 (PAPAYA-42)."
    )
    assert [{"tool": "lookup_order", "order_id": arguments["order_id"]}] == mcp_server.CALLS
    assert not [item for item in second.output if item.type == "mcp_list_tools"]  # the listing was cached
    assert second.output[-1].type == "message"
    assert "PAPAYA-42" in prompt_of(second)  # the tool's result was in what the model was given
    assert second.usage is not None and second.usage.input_tokens > 0
    stored = client.responses.retrieve(second.id)
    assert stored.output[0].type == "mcp_call"
    assert stored.tools[0].type == "mcp" and "s3cret" not in stored.model_dump_json()  # headers never kept


def test_streamed_without_approval(client: openai.OpenAI, mcp_url: str) -> None:
    mcp_server.CALLS.clear()
    tool = mcp_tool(mcp_url, allowed_tools={"tool_names": ["add"]}, require_approval="never")
    with client.responses.create(
        model=MODEL,
        input="Add two numbers.",
        tools=[tool],
        max_output_tokens=64,
        stream=True,
        extra_body=forced("add", {"a": 2, "b": 3}),
    ) as stream:
        events = list(stream)
    names = [e.type for e in events]
    assert names[:2] == ["response.created", "response.in_progress"]
    expected = [
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
    ]
    assert [n for n in names if n.startswith("response.mcp")] == expected
    assert names[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final: Any = events[-1].response  # type: ignore[union-attr]
    call = final.output[1]
    assert call.type == "mcp_call" and call.output == "5" and call.arguments == '{"a": 2, "b": 3}'
    assert mcp_server.CALLS == [{"tool": "add", "a": 2, "b": 3}]
    assert final.output[-1].type == "message"


def test_a_failing_tool_is_a_failed_call(client: openai.OpenAI, mcp_url: str) -> None:
    response = client.responses.create(
        model=MODEL,
        input="Break it.",
        tools=[mcp_tool(mcp_url, require_approval={"never": {"tool_names": ["explode"]}})],
        max_output_tokens=64,
        extra_body=forced("explode", {"reason": "now"}),
    )
    call: Any = next(item for item in response.output if item.type == "mcp_call")
    assert call.output is None and call.error == "Error executing tool explode"
    assert call.status == "failed"


def test_loopback_refused_by_default(gateway_url: str, auth: dict[str, str], mcp_url: str) -> None:
    body = {"model": MODEL, "input": "hi", "tools": [mcp_tool(mcp_url)]}
    error = envelope(httpx.post(gateway_url + "/v1/responses", json=body, headers=auth, timeout=30), 400)
    assert error["param"] == "tools[0].server_url" and error["code"] == "url_not_allowed"
    assert "loopback" in error["message"]


def test_bad_tools_are_400s(
    client: openai.OpenAI, tools_gateway: str, auth: dict[str, str], mcp_url: str
) -> None:
    def post(tool: Any, **extra: Any) -> dict[str, Any]:
        body = {"model": MODEL, "input": "hi", "tools": [tool], **extra}
        return envelope(httpx.post(tools_gateway + "/v1/responses", json=body, headers=auth, timeout=30), 400)

    assert post({"type": "mcp", "server_label": "shop"})["param"] == "tools[0].server_url"
    assert post(mcp_tool("file:///etc/passwd"))["param"] == "tools[0].server_url"
    assert post(mcp_tool(mcp_url, require_approval="sometimes"))["param"].startswith(
        "tools[0].require_approval"
    )
    wrong = post(mcp_tool(mcp_url), tool_choice={"type": "mcp", "server_label": "shop", "name": "nope"})
    assert wrong["param"] == "tool_choice"
    unknown = post(
        mcp_tool(mcp_url),
        input=[{"type": "mcp_approval_response", "approval_request_id": "x", "approve": True}],
    )
    assert unknown["param"] == "input[0].approval_request_id"


def test_web_search_cites_its_pages(client: openai.OpenAI, searx: tuple[str, list[str]]) -> None:
    question = "Where do papayas grow?"
    response = client.responses.create(
        model=MODEL,
        input=question,
        tools=[{"type": "web_search"}],
        include=["web_search_call.action.sources"],
        max_output_tokens=4,
        extra_body={**SHOW_PROMPT, "ignore_eos": True},
    )
    call, message = response.output[0], response.output[-1]
    assert call.type == "web_search_call" and call.status == "completed" and searx[1][-1] == question
    action = call.action.model_dump()
    assert action["query"] == question
    assert [s["url"] for s in action["sources"]] == [
        "https://fruit.example/papaya",
        "https://fruit.example/mango",
    ]
    assert "Papayas are PAPAYA-7." in prompt_of(response)  # the pages were the model's context
    assert message.type == "message"
    notes = [a.model_dump() for a in message.content[0].annotations]  # type: ignore[union-attr]
    end = len(message.content[0].text)  # type: ignore[union-attr]
    # The random model writes no [n] markers: each page is cited at the end of the text.
    assert notes == [
        {
            "type": "url_citation",
            "url": "https://fruit.example/papaya",
            "title": "Papaya",
            "start_index": end,
            "end_index": end,
        },
        {
            "type": "url_citation",
            "url": "https://fruit.example/mango",
            "title": "Mango",
            "start_index": end,
            "end_index": end,
        },
    ]
    with client.responses.create(
        model=MODEL, input=question, tools=[{"type": "web_search_preview"}], max_output_tokens=2, stream=True
    ) as stream:
        last = list(stream)[-1]
    assert last.response.output[0].type == "web_search_call"  # type: ignore[union-attr]
