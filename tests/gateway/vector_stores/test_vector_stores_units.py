"""The vector stores API's logic with the real openai SDK as the client and a stand-in engine
(fake_engine.py: bag-of-words embeddings, a word tokenizer, a Responses model counting its input):
paths and answer shapes, ingestion as jobs, chunking, search ranking, attribute filters, the score
threshold, tenant isolation, errors in OpenAI's envelope, and the file_search tool's items and
citations. The real engines: test_vector_stores.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import FileChunkingStrategyParam, StaticFileChunkingStrategyObjectParam
from openai.types.responses import (
    FileSearchToolParam,
    ResponseFileSearchToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)
from openai.types.responses.response_output_text import AnnotationFileCitation

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.gateway.vector_stores.fake_engine import CHAT, EMBEDDING, FakeEngine
from tests.servers import ThreadedServer

TEA = (
    "Green tea is brewed with water at eighty degrees for three minutes; "
    "boiling water makes green tea bitter."
)
ROME = "# Rome\n\nThe Colosseum in Rome held fifty thousand spectators who watched gladiators fight."
RUST = (
    "<html><head><style>p {color: red}</style><script>var borrow = 1;</script></head>"
    "<body><h1>Rust</h1><p>The Rust borrow checker enforces ownership rules at compile time.</p>"
    "</body></html>"
)
LONG = " ".join(f"word{n}" for n in range(250))
SMALL: StaticFileChunkingStrategyObjectParam = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20},
}


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeEngine, str]]:
    engine = FakeEngine()
    with ThreadedServer(engine.app) as server:
        yield engine, server.url


@pytest.fixture(scope="module")
def gateway(
    fake: tuple[FakeEngine, str],
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, AdminClient]]:
    tmp = tmp_path_factory.mktemp("vector-units")
    settings = gateway_settings(
        # Its own store: the session's other gateways would otherwise claim this one's ingestion jobs
        # from the shared job table (and embed with their own engines).
        database_url=f"sqlite+aiosqlite:///{tmp / 'store.db'}",
        engine_url=fake[1],
        vector_stores_embedding_model=EMBEDDING,
        memory_enabled=False,
        blob_dir=tmp / "blobs",
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield server.url, admin
        admin.close()


@pytest.fixture(scope="module")
def new_client(gateway: tuple[str, AdminClient]) -> Callable[[str], openai.OpenAI]:
    url, admin = gateway

    def make(name: str) -> openai.OpenAI:
        tenant = admin.tenant(name)
        secret, _ = admin.key(tenant["id"], name)
        return openai.OpenAI(api_key=secret, base_url=url + "/v1", max_retries=0)

    return make


@pytest.fixture(scope="module")
def knowledge(new_client: Callable[[str], openai.OpenAI]) -> tuple[openai.OpenAI, str, dict[str, str]]:
    """One tenant's store of four files (text, markdown, HTML, a long text), ingested."""
    client = new_client("vs-units")
    files = {
        name: client.files.create(file=(name, body.encode()), purpose="assistants").id
        for name, body in (("tea.txt", TEA), ("rome.md", ROME), ("rust.html", RUST), ("long.txt", LONG))
    }
    store = client.vector_stores.create(name="kb", metadata={"team": "docs"})
    attributes: dict[str, dict[str, Any]] = {
        "tea.txt": {"topic": "drinks", "year": 2020},
        "rome.md": {"topic": "history", "year": 1990},
        "rust.html": {"topic": "code", "year": 2015, "public": True},
        "long.txt": {"topic": "filler", "year": 2000},
    }
    for name, file_id in files.items():
        strategy: FileChunkingStrategyParam = SMALL if name == "long.txt" else {"type": "auto"}
        done = client.vector_stores.files.create_and_poll(
            file_id,
            vector_store_id=store.id,
            attributes=attributes[name],
            chunking_strategy=strategy,
            poll_interval_ms=50,
        )
        assert done.status == "completed", done.last_error
    return client, store.id, files


def test_a_store_is_built_from_files_and_searched_by_meaning(
    knowledge: tuple[openai.OpenAI, str, dict[str, str]],
) -> None:
    client, store_id, files = knowledge
    store = client.vector_stores.retrieve(store_id)
    assert store.status == "completed" and store.name == "kb" and store.metadata == {"team": "docs"}
    assert store.file_counts.completed == 4 and store.file_counts.total == 4 and store.usage_bytes > 0
    for query, expected in (
        ("how hot should the water be for green tea", "tea.txt"),
        ("gladiators in the Colosseum", "rome.md"),
        ("what does the borrow checker enforce", "rust.html"),
    ):
        page = client.vector_stores.search(store_id, query=query, max_num_results=3)
        assert page.data[0].filename == expected, (query, [r.filename for r in page.data])
        assert page.data[0].file_id == files[expected] and page.data[0].content[0].type == "text"
        assert len(page.data) <= 3
    # HTML is searched as its text: no tags, no script or style.
    (html,) = client.vector_stores.files.content(files["rust.html"], vector_store_id=store_id)
    text = html.text or ""
    assert "borrow checker" in text and "<p>" not in text and "var borrow" not in text
    # A static strategy of 100 tokens with 20 of overlap: 250 words are 3 chunks.
    pieces = list(client.vector_stores.files.content(files["long.txt"], vector_store_id=store_id))
    assert [len((p.text or "").split()) for p in pieces] == [100, 100, 90]
    assert (pieces[1].text or "").split()[0] == "word80"
    long = client.vector_stores.files.retrieve(files["long.txt"], vector_store_id=store_id)
    assert long.chunking_strategy is not None and long.chunking_strategy.type == "static"
    auto = client.vector_stores.files.retrieve(files["tea.txt"], vector_store_id=store_id)
    assert auto.chunking_strategy.static.max_chunk_size_tokens == 800  # type: ignore[union-attr]
    assert auto.chunking_strategy.static.chunk_overlap_tokens == 400  # type: ignore[union-attr]


def test_filters_and_the_score_threshold(knowledge: tuple[openai.OpenAI, str, dict[str, str]]) -> None:
    client, store_id, _ = knowledge
    query = "green tea water"

    def names(**options: Any) -> set[str]:
        return {r.filename for r in client.vector_stores.search(store_id, query=query, **options).data}

    assert names(filters={"type": "eq", "key": "topic", "value": "history"}) == {"rome.md"}
    assert names(filters={"type": "gte", "key": "year", "value": 2015}) == {"tea.txt", "rust.html"}
    assert names(filters={"type": "in", "key": "topic", "value": ["code", "drinks"]}) == {
        "tea.txt",
        "rust.html",
    }
    compound = {
        "type": "or",
        "filters": [
            {"type": "eq", "key": "public", "value": True},
            {
                "type": "and",
                "filters": [
                    {"type": "lt", "key": "year", "value": 2000},
                    {"type": "ne", "key": "topic", "value": "x"},
                ],
            },
        ],
    }
    assert names(filters=compound) == {"rust.html", "rome.md"}
    best = client.vector_stores.search(store_id, query=query).data[0]
    assert best.filename == "tea.txt"
    above = names(ranking_options={"score_threshold": best.score - 1e-6})
    assert above == {"tea.txt"}
    # A list of queries: each chunk at its best score over them.
    both = client.vector_stores.search(store_id, query=["green tea", "gladiators"], max_num_results=2).data
    assert {r.filename for r in both} == {"tea.txt", "rome.md"}


def test_attributes_update_and_detaching_a_file(
    new_client: Callable[[str], openai.OpenAI],
) -> None:
    client = new_client("vs-units-update")
    file_id = client.files.create(file=("tea.txt", TEA.encode()), purpose="assistants").id
    store = client.vector_stores.create(name="one")
    client.vector_stores.files.create_and_poll(file_id, vector_store_id=store.id, poll_interval_ms=50)
    updated = client.vector_stores.files.update(file_id, vector_store_id=store.id, attributes={"lang": "en"})
    assert updated.attributes == {"lang": "en"}
    hit = client.vector_stores.search(
        store.id, query="tea", filters={"type": "eq", "key": "lang", "value": "en"}
    )
    assert [r.file_id for r in hit.data] == [file_id]
    listed = client.vector_stores.files.list(vector_store_id=store.id, filter="completed")
    assert [f.id for f in listed.data] == [file_id]
    deleted = client.vector_stores.files.delete(file_id, vector_store_id=store.id)
    assert deleted.deleted and deleted.object == "vector_store.file.deleted"
    assert client.vector_stores.search(store.id, query="tea").data == []
    assert client.vector_stores.retrieve(store.id).file_counts.total == 0
    modified = client.vector_stores.update(
        store.id, name="renamed", expires_after={"anchor": "last_active_at", "days": 7}
    )
    assert (
        modified.name == "renamed" and modified.expires_after is not None and modified.expires_at is not None
    )
    assert store.id in [s.id for s in client.vector_stores.list()]
    assert client.vector_stores.delete(store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_file_batches_and_an_unreadable_file(new_client: Callable[[str], openai.OpenAI]) -> None:
    client = new_client("vs-units-batch")
    good = client.files.create(file=("rome.md", ROME.encode()), purpose="assistants").id
    binary = client.files.create(file=("blob.bin", b"\x00\x01\x02" * 50), purpose="assistants").id
    store = client.vector_stores.create(name="batch")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[good, binary], attributes={"src": "batch"}, poll_interval_ms=50
    )
    assert batch.object == "vector_store.files_batch" and batch.status == "completed"
    assert batch.file_counts.completed == 1 and batch.file_counts.failed == 1
    failed = client.vector_stores.files.retrieve(binary, vector_store_id=store.id)
    assert failed.status == "failed" and failed.last_error is not None
    assert failed.last_error.code == "unsupported_file"
    files = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert {f.id for f in files.data} == {good, binary}
    assert all(f.attributes == {"src": "batch"} for f in files.data)
    again = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    assert again.id == batch.id


def test_the_ledger_counts_the_embedding_tokens(gateway: tuple[str, AdminClient]) -> None:
    url, admin = gateway
    tenant = admin.tenant("vs-units-ledger")
    secret, _ = admin.key(tenant["id"])
    client = openai.OpenAI(api_key=secret, base_url=url + "/v1", max_retries=0)
    file_id = client.files.create(file=("tea.txt", TEA.encode()), purpose="assistants").id
    store = client.vector_stores.create(name="ledger")
    client.vector_stores.files.create_and_poll(file_id, vector_store_id=store.id, poll_interval_ms=50)
    client.vector_stores.search(store.id, query="green tea")
    rows = {r["model"]: r for r in admin.usage(group_by="model", tenant_id=tenant["id"])}
    # Ingestion is two requests of the file's tokens (/tokenize, /v1/embeddings of its one chunk),
    # the search one of the query's (the stand-in counts one token per word).
    assert rows[EMBEDDING]["requests"] == 3
    assert rows[EMBEDDING]["prompt_tokens"] == 2 * len(TEA.split()) + 2


def test_an_engine_refusal_fails_the_file_at_once(
    new_client: Callable[[str], openai.OpenAI], fake: tuple[FakeEngine, str]
) -> None:
    engine, _ = fake
    client = new_client("vs-units-refused")
    file_id = client.files.create(file=("tea.txt", TEA.encode()), purpose="assistants").id
    store = client.vector_stores.create(name="refused")
    engine.refuse_embeddings = "This input is too long."
    try:
        done = client.vector_stores.files.create_and_poll(
            file_id, vector_store_id=store.id, poll_interval_ms=50
        )
    finally:
        engine.refuse_embeddings = None
    assert done.status == "failed" and done.last_error is not None
    assert done.last_error.code == "server_error" and "too long" in done.last_error.message
    assert client.vector_stores.retrieve(store.id).file_counts.failed == 1


def test_another_tenant_finds_nothing(
    knowledge: tuple[openai.OpenAI, str, dict[str, str]], new_client: Callable[[str], openai.OpenAI]
) -> None:
    _, store_id, files = knowledge
    other = new_client("vs-units-other")
    for call in (
        lambda: other.vector_stores.retrieve(store_id),
        lambda: other.vector_stores.search(store_id, query="green tea"),
        lambda: other.vector_stores.files.list(vector_store_id=store_id),
        lambda: other.vector_stores.files.retrieve(files["tea.txt"], vector_store_id=store_id),
        lambda: other.vector_stores.delete(store_id),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.body["code"] == "not_found"  # type: ignore[index]
    own = other.vector_stores.create(name="mine")
    with pytest.raises(openai.NotFoundError):  # another tenant's file cannot be attached
        other.vector_stores.files.create(vector_store_id=own.id, file_id=files["tea.txt"])
    assert store_id not in [s.id for s in other.vector_stores.list()]
    with pytest.raises(openai.NotFoundError) as caught:  # nor searched through file_search
        other.responses.create(
            model=CHAT, input="tea", tools=[{"type": "file_search", "vector_store_ids": [store_id]}]
        )
    assert caught.value.body["param"] == "tools[0].vector_store_ids"  # type: ignore[index]


def test_bad_input_is_openais_400(
    knowledge: tuple[openai.OpenAI, str, dict[str, str]], gateway: tuple[str, AdminClient]
) -> None:
    client, store_id, files = knowledge
    url = gateway[0] + f"/v1/vector_stores/{store_id}"
    headers = {"authorization": f"Bearer {client.api_key}"}
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/search", {}, "query"),
        ("/search", {"query": ""}, "query"),
        ("/search", {"query": "x", "max_num_results": 51}, "max_num_results"),
        ("/search", {"query": "x", "filters": {"type": "near", "key": "a", "value": 1}}, "filters"),
        (
            "/files",
            {
                "file_id": files["tea.txt"],
                "chunking_strategy": {
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 80},
                },
            },
            "chunking_strategy.static",
        ),
        (
            "/files",
            {
                "file_id": files["tea.txt"],
                "chunking_strategy": {
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0},
                },
            },
            "chunking_strategy.static.max_chunk_size_tokens",
        ),
        ("/file_batches", {}, "file_ids"),
    ]
    for path, body, param in cases:
        answer = httpx.post(url + path, json=body, headers=headers)
        assert answer.status_code == 400, (path, body, answer.text)
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"].startswith(param), (body, error)
    bad = httpx.post(gateway[0] + "/v1/vector_stores", json={"metadata": {"k": 1}}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "metadata.k"
    missing = httpx.get(gateway[0] + "/v1/vector_stores/vs_nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "vector_store_id"


def test_file_search_in_the_responses_api(
    knowledge: tuple[openai.OpenAI, str, dict[str, str]], fake: tuple[FakeEngine, str]
) -> None:
    client, store_id, files = knowledge
    engine, _ = fake
    question = "how hot should the water be for green tea"
    plain = client.responses.create(model=CHAT, input=question)
    tool: FileSearchToolParam = {"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 2}
    response = client.responses.create(
        model=CHAT, input=question, tools=[tool], include=["file_search_call.results"]
    )
    sent = engine.responses[-1]
    assert "tools" not in sent and "include" not in sent  # the engine never sees the tool
    assert "eighty degrees" in str(sent["input"])  # the results are in the model's context
    call, message = response.output
    assert isinstance(call, ResponseFileSearchToolCall) and isinstance(message, ResponseOutputMessage)
    assert call.status == "completed" and call.queries == [question]
    assert call.results is not None and call.results[0].filename == "tea.txt" and len(call.results) <= 2
    (text,) = message.content
    assert isinstance(text, ResponseOutputText)
    citations = [a for a in text.annotations if isinstance(a, AnnotationFileCitation)]
    assert citations and citations[0].file_id == files["tea.txt"] and citations[0].filename == "tea.txt"
    assert citations[0].index == len(text.text)
    assert response.usage is not None and plain.usage is not None
    assert response.usage.input_tokens > plain.usage.input_tokens + 10
    # Without `include`, the call carries no results; the stored response keeps the item.
    bare = client.responses.create(model=CHAT, input=question, tools=[tool])
    first = bare.output[0]
    assert isinstance(first, ResponseFileSearchToolCall) and first.results is None
    stored = client.responses.retrieve(bare.id)
    assert stored.output[0].type == "file_search_call"
    # A follow-up sends the engine no file_search_call item.
    client.responses.create(model=CHAT, input="and black tea?", previous_response_id=bare.id)
    assert "file_search_call" not in str(engine.responses[-1]["input"])
