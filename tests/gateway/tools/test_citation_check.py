"""The citation verification pass on the real engines (issue 23, point 7), through the openai SDK: a
`file_search` answer on the session's tiny chat model whose text is forced (vLLM's structured
outputs, a regex) to two sentences citing the file found, one the file's own words and one unrelated;
MiniLM on the session's embedding engine finds the first supported and the second not, in JSON and in
the stream's final event. The judge method asks the tiny model itself, its verdict constrained by a
JSON schema: random weights make the verdict noise, so only its shape is checked.

The gateway is this module's own (both session engines behind it) for its own SQLite store, as
tests/gateway/vector_stores' is: the session's other gateways would claim its ingestion jobs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai.types.responses import FileSearchToolParam, ResponseOutputMessage, ResponseOutputText
from openai.types.responses.response_output_text import AnnotationFileCitation

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient, wait_for
from tests.servers import ThreadedServer

pytestmark = pytest.mark.engine
TEA = (
    "Brewing green tea: heat the water to about eighty degrees Celsius, never boiling, and steep the "
    "leaves for two to three minutes, or the tea turns bitter."
)
QUESTION = "How hot should the water be for green tea?"
SUPPORTED = TEA[:-1] + " [1]."  # the file's own sentence, verbatim
UNRELATED = "Penguins ride bicycles across the frozen desert at night [1]."


@pytest.fixture(scope="module")
def knowledge(
    engine_url: str,
    embedding_engine_url: str,
    embedding_model: str,
    model: str,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[openai.OpenAI, str]]:
    tmp = tmp_path_factory.mktemp("citations")
    settings = gateway_settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'store.db'}",
        upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
        routing={"default_model": model},
        vector_stores_embedding_model=embedding_model,
        blob_dir=tmp / "blobs",
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        secret, _ = admin.key(admin.tenant("citations")["id"], "citations")
        client = openai.OpenAI(api_key=secret, base_url=server.url + "/v1", max_retries=0, timeout=120)
        file_id = client.files.create(file=("tea.txt", TEA.encode()), purpose="assistants").id
        store = client.vector_stores.create(name="kitchen")
        done = client.vector_stores.files.create_and_poll(
            file_id, vector_store_id=store.id, poll_interval_ms=100
        )
        assert done.status == "completed", done.last_error
        yield client, store.id
        client.close()
        admin.close()


def ask(client: openai.OpenAI, store_id: str, tantra: dict[str, Any], **extra: Any) -> Any:
    tool: FileSearchToolParam = {"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 1}
    forced = {"regex": re.escape(f"{SUPPORTED} {UNRELATED}")}
    return client.responses.create(
        model="tantra-tiny",
        input=QUESTION,
        tools=[tool],
        max_output_tokens=200,
        extra_body={"tantra": tantra, "structured_outputs": forced},
        **extra,
    )


def citations(response: Any) -> tuple[str, list[AnnotationFileCitation]]:
    messages = [item for item in response.output if isinstance(item, ResponseOutputMessage)]
    parts = [part for part in messages[0].content if isinstance(part, ResponseOutputText)]
    found = [a for a in parts[0].annotations if isinstance(a, AnnotationFileCitation)]
    return parts[0].text, found


def verdicts(found: list[AnnotationFileCitation]) -> list[dict[str, Any]]:
    return [(a.model_extra or {})["tantra"] for a in found]


def test_embedding_finds_the_unrelated_sentence(knowledge: tuple[openai.OpenAI, str], model: str) -> None:
    client, store_id = knowledge
    response = ask(client, store_id, {"verify_citations": True})
    text, found = citations(response)
    assert text == f"{SUPPORTED} {UNRELATED}"
    assert [a.filename for a in found] == ["tea.txt", "tea.txt"]  # the SDK parsed the extended objects
    first, second = verdicts(found)
    assert (first["sentence"], first["start"], first["end"]) == (0, 0, len(SUPPORTED))
    assert second["sentence"] == 1 and text[second["start"] : second["end"]] == UNRELATED
    assert first["supported"] is True and second["supported"] is False, (first, second)
    assert first["score"] > 0.5 > second["score"]
    summary = (response.model_extra or {})["tantra"]["citations"]
    assert summary == {"method": "embedding", "checked": 2, "supported": 1, "unsupported": [1]}
    # Not asked: no pass, no extension fields.
    plain = ask(client, store_id, {})
    assert "tantra" not in (plain.model_extra or {})
    assert all("tantra" not in (a.model_extra or {}) for a in citations(plain)[1])


def test_streamed_scores_arrive_in_the_final_event(knowledge: tuple[openai.OpenAI, str]) -> None:
    client, store_id = knowledge
    with ask(client, store_id, {"verify_citations": True}, stream=True) as stream:
        events = list(stream)
    assert events[-1].type == "response.completed"
    final = events[-1].response
    assert (final.model_extra or {})["tantra"]["citations"]["unsupported"] == [1]
    assert [v["supported"] for v in verdicts(citations(final)[1])] == [True, False]

    def stored() -> bool:  # a streamed response is stored once its stream has ended
        try:
            kept = client.responses.retrieve(final.id)
        except openai.NotFoundError:
            return False
        return bool((kept.model_extra or {})["tantra"]["citations"]["checked"] == 2)

    wait_for(stored, timeout=60)


def test_the_judge_method_asks_a_served_model(knowledge: tuple[openai.OpenAI, str]) -> None:
    client, store_id = knowledge
    response = ask(client, store_id, {"verify_citations": True, "citation_method": "judge"})
    summary = (response.model_extra or {})["tantra"]["citations"]
    assert summary["method"] == "judge" and "error" not in summary
    judged = verdicts(citations(response)[1])
    assert [v["sentence"] for v in judged] == [0, 1]
    for verdict in judged:  # the tiny model's verdict is noise; an unfinished one stays unjudged
        assert verdict["supported"] in (True, False, None)
        assert verdict["score"] == (None if verdict["supported"] is None else float(verdict["supported"]))
    assert summary["checked"] == sum(v["supported"] is not None for v in judged)
    assert summary["unsupported"] == [v["sentence"] for v in judged if v["supported"] is False]


def test_bad_options_are_400s(knowledge: tuple[openai.OpenAI, str]) -> None:
    client, store_id = knowledge
    for tantra, param in (
        ({"verify_citations": "maybe"}, "tantra.verify_citations"),
        ({"bogus": 1}, "tantra.bogus"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            ask(client, store_id, tantra)
        assert caught.value.status_code == 400
        error = caught.value.body
        assert isinstance(error, dict) and error.get("param") == param, error


def test_a_background_response_carries_the_same_citations(knowledge: tuple[openai.OpenAI, str]) -> None:
    """`background: true`: the job rebuilds the search results and the pass from its payload, so the
    stored response has the `file_search_call` item once, the annotations and their verdicts."""
    client, store_id = knowledge
    queued = ask(client, store_id, {"verify_citations": True}, background=True)
    assert queued.status in ("queued", "in_progress")

    def ended() -> bool:
        return client.responses.retrieve(queued.id).status in ("completed", "failed", "incomplete")

    wait_for(ended, timeout=120)
    response = client.responses.retrieve(queued.id)
    assert response.status == "completed", response.error
    assert [item.type for item in response.output].count("file_search_call") == 1
    text, found = citations(response)
    assert text == f"{SUPPORTED} {UNRELATED}"
    assert [a.filename for a in found] == ["tea.txt", "tea.txt"]
    assert [v["supported"] for v in verdicts(found)] == [True, False]
    summary = (response.model_extra or {})["tantra"]["citations"]
    assert summary == {"method": "embedding", "checked": 2, "supported": 1, "unsupported": [1]}
    # The stream of events stored for it ends with the same verified response.
    with client.responses.retrieve(queued.id, stream=True) as stream:
        events = list(stream)
    assert events[-1].type == "response.completed"
    assert (events[-1].response.model_extra or {})["tantra"]["citations"]["unsupported"] == [1]
