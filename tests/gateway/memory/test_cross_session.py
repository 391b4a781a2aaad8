"""Cross-session memory on a shared backend (issue 19's acceptance): memories written through one
gateway replica are used by a chat served by another, after both restarted, with the real engines
(the tiny chat model, MiniLM embeddings) and each backend's real server. Each replica has a blob
directory of its own, so nothing but the shared backend and the one store carries the memories.
Users and tenants stay apart through the restarted replica too."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import openai
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer
from tests.services import ChromaServer, PostgresServer, pgvector_hnsw

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0 import MemoryClient

_names = itertools.count()


@pytest.fixture(scope="module", params=["chroma", "pgvector"])
def replica_settings(
    request: pytest.FixtureRequest,
    engine_url: str,
    embedding_engine_url: str,
    gateway_settings: Callable[..., Settings],
    model: str,
    embedding_model: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[], Settings]:
    """Settings of one more replica on the backend: the session's store and engines, its own blobs."""
    backend: dict[str, Any] = {"memory_backend": request.param}
    if request.param == "chroma":
        chroma: ChromaServer = request.getfixturevalue("chroma_server")
        backend["memory_chroma_url"] = chroma.url
    else:
        postgres: PostgresServer = request.getfixturevalue("pgvector_server")
        backend["memory_pgvector_url"] = postgres.create_database(f"replicas_{next(_names)}")
        backend["memory_pgvector_hnsw"] = pgvector_hnsw()

    def make() -> Settings:
        return gateway_settings(
            upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
            routing={"default_model": model},
            memory_embedding_model=embedding_model,
            memory_extraction_model=model,
            memory_extraction_max_tokens=64,
            blob_dir=tmp_path_factory.mktemp("replica-blobs"),
            **backend,
        )

    return make


def _replicas(make: Callable[[], Settings], count: int, stack: ExitStack) -> list[str]:
    return [stack.enter_context(ThreadedServer(create_app(make()))).url for _ in range(count)]


@pytest.fixture(scope="module")
def written(replica_settings: Callable[[], Settings], admin_key: str) -> Iterator[dict[str, str]]:
    """Two replicas up; memories of two users of one tenant (and one of another tenant) written
    through the first; then both replicas stopped."""
    with ExitStack() as stack:
        first, _second = _replicas(replica_settings, 2, stack)
        admin = AdminClient(first, admin_key)
        tenant = admin.tenant(f"cross-session-{next(_names)}", memory=True)
        key, _ = admin.key(tenant["id"], "chat")
        other = admin.tenant(f"cross-session-other-{next(_names)}", memory=True)
        other_key, _ = admin.key(other["id"], "chat")
        admin.close()
        client = MemoryClient(api_key=key, host=first)
        tea = client.add("I like green tea with jasmine.", user_id="zoe", infer=False)["results"][0]["id"]
        client.add("I drink coffee every morning.", user_id="yann", infer=False)
        MemoryClient(api_key=other_key, host=first).add("I like black tea.", user_id="zoe", infer=False)
    yield {"key": key, "other_key": other_key, "tea": tea}


def test_a_memory_written_on_one_replica_is_used_by_another_after_restart(
    written: dict[str, str], replica_settings: Callable[[], Settings], model: str
) -> None:
    with ExitStack() as stack:
        _first, second = _replicas(replica_settings, 2, stack)
        with openai.OpenAI(
            base_url=second + "/v1", api_key=written["key"], max_retries=0, timeout=300
        ) as sdk:
            raw = sdk.chat.completions.with_raw_response.create(
                model=model,
                messages=[{"role": "user", "content": "Which tea should I drink?"}],
                user="zoe",
                max_tokens=8,
            )
        assert raw.parse().choices[0].message is not None
        # zoe's own memory only: not yann's (another user), not the other tenant's zoe.
        ids = [part.split(":")[0] for part in raw.headers["x-tantra-memory"].split(",")]
        assert ids == [written["tea"]]
        used = raw.http_response.json()["usage"]["tantra_memory"]
        assert used[0]["id"] == written["tea"] and 0.2 <= used[0]["score"] <= 1.0


def test_users_and_tenants_stay_apart_on_the_shared_backend(
    written: dict[str, str], replica_settings: Callable[[], Settings]
) -> None:
    with ExitStack() as stack:
        (replica,) = _replicas(replica_settings, 1, stack)
        mine = MemoryClient(api_key=written["key"], host=replica)
        found = mine.search("green tea with jasmine", filters={"user_id": "yann"}, top_k=10)["results"]
        assert [r["memory"] for r in found] == ["I drink coffee every morning."]
        theirs = MemoryClient(api_key=written["other_key"], host=replica)
        found = theirs.search("green tea with jasmine", filters={"user_id": "zoe"}, top_k=10)["results"]
        assert [r["memory"] for r in found] == ["I like black tea."]
        assert written["tea"] not in {r["id"] for r in theirs.get_all(filters={"user_id": "zoe"})["results"]}
