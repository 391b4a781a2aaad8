"""A real gateway (in process, uvicorn in a thread) on the session's Redis and SQLite store, with
local blobs and no engine: feedback rates stored objects, which the tests write to the same store
(a chat completion or a response needs an engine to be made; their rows are what the gateway keeps)
or make through the Conversations API. Fine-tuning jobs are accepted but not run (`jobs_enabled`
off): the export is tested up to a job's creation and the training file's check."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway import Settings, create_app
from gateway.store import Database, utcnow
from gateway.store.completions import CompletionStore, StoredCompletionRow
from gateway.store.responses import ResponseRow, ResponseStore
from tests.gateway.helpers import AdminClient, bearer
from tests.servers import ThreadedServer

BASE = "qwen2-tiny"
_tenants = itertools.count()


@dataclass
class Caller:
    secret: str
    key_id: str
    tenant_id: str
    url: str

    @property
    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.secret, max_retries=0, timeout=60)

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers=bearer(self.secret), timeout=30)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers=bearer(self.secret), timeout=30)

    def delete(self, path: str) -> httpx.Response:
        return httpx.delete(self.url + path, headers=bearer(self.secret), timeout=30)


@dataclass
class FeedbackGateway:
    url: str
    admin: AdminClient
    database_url: str

    def caller(self, name: str, **limits: Any) -> Caller:
        tenant = self.admin.tenant(f"{name}-{next(_tenants)}-{secrets.token_hex(3)}", **limits)
        secret, key = self.admin.key(tenant["id"], name)
        return Caller(secret, key["id"], tenant["id"], self.url)

    def completion(
        self, caller: Caller, prompt: str, answer: str, *, choices: list[str] | None = None
    ) -> str:
        """A stored chat completion of the caller's tenant, as `store: true` keeps it."""
        completion_id = "chatcmpl-" + secrets.token_hex(8)
        answers = choices or [answer]
        row = StoredCompletionRow(
            id=completion_id,
            model="tantra-tiny",
            created=0,
            created_at=utcnow(),
            request_id="req-" + completion_id,
            tenant_id=caller.tenant_id,
            created_by=caller.key_id,
            end_user=None,
            metadata={},
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
            choices=[
                {"index": n, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                for n, text in enumerate(answers)
            ],
            usage=None,
        )
        self._run(lambda db: CompletionStore(db).add([row]))
        return completion_id

    def response(self, caller: Caller, prompt: str, answer: str) -> str:
        response_id = "resp_" + secrets.token_hex(8)
        row = ResponseRow(
            id=response_id,
            tenant_id=caller.tenant_id,
            created_by=caller.key_id,
            end_user=None,
            created_at=utcnow(),
            metadata={},
            model="tantra-tiny",
            status="completed",
            background=False,
            previous_response_id=None,
            job_id=None,
            input_items=[
                {
                    "id": "msg_in",
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": prompt}],
                }
            ],
            body={
                "id": response_id,
                "instructions": "Answer in French.",
                "output": [
                    {"type": "reasoning", "id": "rs_1", "summary": []},
                    {
                        "id": "msg_out",
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": answer}],
                    },
                ],
            },
        )
        self._run(lambda db: ResponseStore(db).add(row))
        return response_id

    def _run(self, write: Callable[[Database], Any]) -> None:
        async def go() -> None:
            database = Database(self.database_url)
            try:
                await write(database)
            finally:
                await database.close()

        asyncio.run(go())


@pytest.fixture(scope="package")
def feedback_gateway(
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FeedbackGateway]:
    tmp: Path = tmp_path_factory.mktemp("feedback")
    # Its own store: the fine-tuning jobs made here stay pending (jobs off), and a later gateway
    # of the session would claim and train them if they were in the session's.
    database_url = f"sqlite+aiosqlite:///{tmp / 'store.db'}"
    settings = gateway_settings(
        database_url=database_url,
        blob_dir=tmp / "blobs",
        fine_tuning_work_dir=str(tmp / "work"),
        # Named only: no job runs here (jobs_enabled off), so no checkpoint is read.
        fine_tuning_base_models={BASE: str(tmp / "no-checkpoint")},
        fine_tuning_max_jobs=0,
        jobs_enabled=False,
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield FeedbackGateway(server.url, admin, database_url)
        admin.close()
