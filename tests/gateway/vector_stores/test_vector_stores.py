"""Vector stores and file search on the real engines, through the openai SDK: files uploaded (text,
markdown, HTML, PDF) are cut with MiniLM's own tokenizer and embedded by the session's embedding
engine as jobs; MiniLM ranks the right file first; attribute filters and tenants hold; and the
Responses API on the session's chat engine answers a `file_search` request with the call item, its
results and a file citation, the results in the prompt the engine counted.

The gateway here is this module's own (in process, both session engines behind it) only for its own
SQLite store: the session's other gateways share the session store's job table and would claim these
ingestion jobs with engines that serve no embedding model."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest
from openai.types.responses import (
    FileSearchToolParam,
    ResponseFileSearchToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)
from openai.types.responses.response_output_text import AnnotationFileCitation

from gateway import Settings, create_app
from tests.adapters.media import text_pdf
from tests.gateway.helpers import AdminClient
from tests.gateway.vector_stores.stream_checks import check_call_events
from tests.servers import ThreadedServer

DOCUMENTS: dict[str, tuple[bytes, dict[str, str | float | bool]]] = {
    "tea.txt": (
        b"Brewing green tea: heat the water to about eighty degrees Celsius, never boiling, and steep "
        b"the leaves for two to three minutes, or the tea turns bitter.",
        {"kind": "kitchen", "year": 2021},
    ),
    "volcanoes.md": (
        b"# Volcanoes\n\nMagma rises from the mantle through cracks in the crust; when pressure builds, "
        b"the volcano erupts and lava flows down its slopes.",
        {"kind": "science", "year": 2019},
    ),
    "bread.html": (
        b"<html><body><h1>Sourdough</h1><p>Feed the sourdough starter with flour and water, let the "
        b"dough rise overnight, then bake the loaf in a hot oven.</p></body></html>",
        {"kind": "kitchen", "year": 2012},
    ),
    "station.pdf": (
        text_pdf(
            [
                "The International Space Station orbits the Earth\nevery ninety minutes, about four "
                "hundred kilometres up."
            ]
        ),
        {"kind": "science", "year": 2024},
    ),
}
QUERIES = {
    "What temperature should the water be for green tea?": "tea.txt",
    "Why do volcanoes erupt lava?": "volcanoes.md",
    "How long does the space station take to go around the planet?": "station.pdf",
}


@pytest.fixture(scope="module")
def vector_gateway(
    engine_url: str,
    embedding_engine_url: str,
    embedding_model: str,
    model: str,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, AdminClient]]:
    tmp = tmp_path_factory.mktemp("vector-stores")
    settings = gateway_settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'store.db'}",
        upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
        routing={"default_model": model},
        vector_stores_embedding_model=embedding_model,
        blob_dir=tmp / "blobs",
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield server.url, admin
        admin.close()


def client_for(gateway: tuple[str, AdminClient], name: str) -> openai.OpenAI:
    url, admin = gateway
    secret, _ = admin.key(admin.tenant(name)["id"], name)
    return openai.OpenAI(api_key=secret, base_url=url + "/v1", max_retries=0)


@pytest.fixture(scope="module")
def knowledge(vector_gateway: tuple[str, AdminClient]) -> tuple[openai.OpenAI, str, dict[str, str]]:
    client = client_for(vector_gateway, "vector-stores")
    files = {
        name: client.files.create(file=(name, data), purpose="assistants").id
        for name, (data, _) in DOCUMENTS.items()
    }
    store = client.vector_stores.create(name="library")
    for name, file_id in files.items():
        done = client.vector_stores.files.create_and_poll(
            file_id, vector_store_id=store.id, attributes=DOCUMENTS[name][1], poll_interval_ms=100
        )
        assert done.status == "completed", (name, done.last_error)
    return client, store.id, files


def test_minilm_ranks_the_right_file_first(knowledge: tuple[openai.OpenAI, str, dict[str, str]]) -> None:
    client, store_id, files = knowledge
    assert client.vector_stores.retrieve(store_id).file_counts.completed == len(DOCUMENTS)
    for query, expected in QUERIES.items():
        page = client.vector_stores.search(store_id, query=query, max_num_results=4)
        assert page.data[0].filename == expected, (
            query,
            [(r.filename, r.score) for r in page.data],
        )
        assert page.data[0].file_id == files[expected] and 0 < page.data[0].score <= 1.0001
    pdf = client.vector_stores.files.content(files["station.pdf"], vector_store_id=store_id)
    # The file's own text, cut at MiniLM's (uncased) token boundaries: its case is kept.
    assert "International Space Station" in " ".join(p.text or "" for p in pdf)
    science = client.vector_stores.search(
        store_id, query="green tea water", filters={"type": "eq", "key": "kind", "value": "science"}
    )
    assert {r.filename for r in science.data} <= {"volcanoes.md", "station.pdf"} and science.data
    recent = client.vector_stores.search(
        store_id,
        query="kitchen",
        filters={
            "type": "and",
            "filters": [
                {"type": "eq", "key": "kind", "value": "kitchen"},
                {"type": "gt", "key": "year", "value": 2015},
            ],
        },
    )
    assert [r.filename for r in recent.data] == ["tea.txt"]


def test_another_tenant_gets_404(
    knowledge: tuple[openai.OpenAI, str, dict[str, str]], vector_gateway: tuple[str, AdminClient]
) -> None:
    _, store_id, _ = knowledge
    other = client_for(vector_gateway, "vector-stores-other")
    with pytest.raises(openai.NotFoundError):
        other.vector_stores.retrieve(store_id)
    with pytest.raises(openai.NotFoundError):
        other.vector_stores.search(store_id, query="green tea")


def test_file_search_in_responses_on_the_chat_engine(
    knowledge: tuple[openai.OpenAI, str, dict[str, str]], model: str
) -> None:
    client, store_id, files = knowledge
    question = "What temperature should the water be for green tea?"
    plain = client.responses.create(model=model, input=question, max_output_tokens=4)
    tool: FileSearchToolParam = {"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 2}
    response = client.responses.create(
        model=model, input=question, tools=[tool], include=["file_search_call.results"], max_output_tokens=4
    )
    call = response.output[0]
    assert isinstance(call, ResponseFileSearchToolCall) and call.queries == [question]
    assert call.results is not None and call.results[0].filename == "tea.txt"
    messages = [item for item in response.output if isinstance(item, ResponseOutputMessage)]
    assert messages, response.output
    texts = [part for part in messages[0].content if isinstance(part, ResponseOutputText)]
    citations = [a for a in texts[0].annotations if isinstance(a, AnnotationFileCitation)]
    assert citations[0].file_id == files["tea.txt"] and citations[0].filename == "tea.txt"
    # The engine counted the results it was given: the prompt grew by at least the chunks' words.
    assert response.usage is not None and plain.usage is not None
    assert response.usage.input_tokens >= plain.usage.input_tokens + 30
    assert client.responses.retrieve(response.id).output[0].type == "file_search_call"
    # Streamed through the SDK's stream helper: the call's own events after vLLM's leading two, one
    # run of sequence numbers, vLLM's items moved past the call; the final event (response.incomplete
    # at max_output_tokens, as OpenAI names it) carries the item too.
    with client.responses.stream(model=model, input=question, tools=[tool], max_output_tokens=4) as stream:
        events = list(stream)
    ends = [e for e in events if e.type in ("response.completed", "response.incomplete")]
    assert ends and ends[0].response.output[0].type == "file_search_call"
    leading = ["response.created", "response.in_progress"]
    check_call_events(events, leading, ends[0].response.output[0].id, question)
