"""A batch whose job keeps failing (here: its input file's blob is gone from the blob store) ends
`failed` with a `batch_failed` error once the runner's attempts are spent, as OpenAI's failed batches
do, instead of showing `validating` forever. No engine: the run fails before any line is sent."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import openai

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer


def test_a_batch_whose_runs_all_fail_ends_failed(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path: Path
) -> None:
    # A store and blob directory of its own: no other gateway of the session claims the job.
    settings = gateway_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        blob_dir=tmp_path / "blobs",
        jobs_poll_s=0.1,
        jobs_max_attempts=2,
        jobs_retry_backoff_s=0.1,
    )
    with ThreadedServer(create_app(settings)) as server, closing(AdminClient(server.url, admin_key)) as admin:
        tenant = admin.tenant("give-up")
        secret, _ = admin.key(tenant["id"], "k")
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=30)
        line = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
        file_id = client.files.create(file=("in.jsonl", io.BytesIO(line)), purpose="batch").id
        # The blob store lost the file (an operator's mistake, a replica on another disk).
        for blob in (tmp_path / "blobs").rglob("*"):
            if blob.is_file():
                blob.unlink()
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        deadline = time.monotonic() + 60
        while (batch := client.batches.retrieve(batch.id)).status not in {"failed", "completed"}:
            assert time.monotonic() < deadline, batch
            time.sleep(0.1)
        assert batch.status == "failed"
        assert batch.failed_at is not None
        assert batch.errors is not None and batch.errors.data is not None
        assert [error.code for error in batch.errors.data] == ["batch_failed"]
