"""The Files API through the real openai SDK against a real gateway (real Redis, SQLite store, local
blob store): create, list with pagination, retrieve, content, delete; purpose and expires_after
validation; tenant isolation; the per-file cap and the storage quota; the ledger."""

from __future__ import annotations

import io
import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from tests.gateway.files.conftest import QUOTA, FilesGateway
from tests.gateway.helpers import bearer, envelope

BATCH_LINE = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}


def _jsonl(lines: int = 3) -> bytes:
    return b"".join(json.dumps({**BATCH_LINE, "custom_id": f"r{i}"}).encode() + b"\n" for i in range(lines))


def test_create_retrieve_content_delete(client: openai.OpenAI, files_gateway: FilesGateway) -> None:
    data = _jsonl(5)
    before = time.time()
    created = client.files.create(file=("input.jsonl", io.BytesIO(data)), purpose="user_data")
    assert created.id.startswith("file-")
    assert created.object == "file"
    assert created.bytes == len(data)
    assert created.filename == "input.jsonl"
    assert created.purpose == "user_data"
    assert created.status == "processed"
    assert created.expires_at is None
    assert before - 1 <= created.created_at <= time.time() + 1

    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).content == data
    # The bytes live in the blob store, under the tenant's folder; nothing else is left behind.
    assert files_gateway.blob_dir is not None
    stored = [path for path in files_gateway.blob_dir.rglob("*") if path.is_file()]
    assert any(path.read_bytes() == data for path in stored)
    assert not [path for path in stored if path.name.endswith(".partial")]

    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    assert not any(path.is_file() and path.read_bytes() == data for path in files_gateway.blob_dir.rglob("*"))
    with pytest.raises(openai.NotFoundError) as missing:
        client.files.retrieve(created.id)
    assert missing.value.body["message"] == f"No such File object: {created.id}"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.files.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


def test_list_pages_and_filters(client: openai.OpenAI) -> None:
    ids = [client.files.create(file=(f"f{i}.txt", b"x" * i), purpose="assistants").id for i in range(5)]
    other = client.files.create(file=("v.png", b"png"), purpose="vision").id

    everything = client.files.list()
    assert [item.id for item in everything.data] == [other, *reversed(ids)]  # newest first
    assert everything.has_more is False

    page = client.files.list(limit=2, order="asc", purpose="assistants")
    assert [item.id for item in page.data] == ids[:2]
    assert page.has_more is True
    # The SDK follows `after` = last_id through every page.
    assert [item.id for item in client.files.list(limit=2, order="asc", purpose="assistants")] == ids
    raw = httpx.get(
        str(client.base_url) + "files",
        params={"limit": 2, "order": "asc", "purpose": "assistants"},
        headers=bearer(client.api_key),
    ).json()
    assert (raw["object"], raw["first_id"], raw["last_id"], raw["has_more"]) == ("list", ids[0], ids[1], True)
    assert [item.id for item in client.files.list(purpose="vision")] == [other]

    for params, param in (({"limit": 0}, "limit"), ({"limit": 10001}, "limit"), ({"order": "up"}, "order")):
        response = httpx.get(str(client.base_url) + "files", params=params, headers=bearer(client.api_key))
        assert envelope(response, 400)["param"] == param


def test_purpose_and_expiry_are_validated(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.create(file=("a.txt", b"a"), purpose="training")  # type: ignore[arg-type]
    assert bad.value.body["param"] == "purpose"  # type: ignore[index]
    for seconds in (3599, 2_592_001):
        with pytest.raises(openai.BadRequestError) as bad:
            client.files.create(
                file=("a.txt", b"a"),
                purpose="user_data",
                expires_after={"anchor": "created_at", "seconds": seconds},
            )
        assert bad.value.body["param"] == "expires_after.seconds"  # type: ignore[index]
    response = httpx.post(
        str(client.base_url) + "files", files={"file": ("a.txt", b"a")}, headers=bearer(client.api_key)
    )
    assert envelope(response, 400)["param"] == "purpose"
    response = httpx.post(
        str(client.base_url) + "files", files={"purpose": (None, "batch")}, headers=bearer(client.api_key)
    )
    assert envelope(response, 400)["param"] == "file"
    response = httpx.post(
        str(client.base_url) + "files", json={"purpose": "batch"}, headers=bearer(client.api_key)
    )
    assert envelope(response, 400)["code"] == "invalid_content_type"
    # Nothing refused was kept.
    assert list(client.files.list()) == []

    timed = client.files.create(
        file=("a.txt", b"a"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert timed.expires_at == timed.created_at + 3600
    batch = client.files.create(file=("b.jsonl", _jsonl()), purpose="batch")
    assert batch.expires_at == batch.created_at + 30 * 86400  # OpenAI's default for batch files


def test_expired_files_are_gone(
    client: openai.OpenAI, files_gateway: FilesGateway, database_url: str
) -> None:
    import asyncio

    from sqlalchemy import update

    from gateway.store import Database
    from gateway.store.file_models import StoredFile

    kept = client.files.create(file=("k.txt", b"keep"), purpose="user_data")
    gone = client.files.create(
        file=("g.txt", b"gone"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 3600}
    )

    async def expire() -> None:
        database = Database(database_url)
        async with database.session() as session:
            await session.execute(
                update(StoredFile).where(StoredFile.id == gone.id).values(expires_at=StoredFile.created_at)
            )
            await session.commit()
        await database.close()

    asyncio.run(expire())
    assert [item.id for item in client.files.list()] == [kept.id]
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(gone.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(gone.id)


def test_another_tenants_file_is_not_found(client: openai.OpenAI, files_gateway: FilesGateway) -> None:
    mine = client.files.create(file=("secret.txt", b"secret"), purpose="user_data")
    with files_gateway.client(files_gateway.tenant_key("intruder")) as intruder:
        assert list(intruder.files.list()) == []
        for call in (intruder.files.retrieve, intruder.files.content, intruder.files.delete):
            with pytest.raises(openai.NotFoundError) as missing:
                call(mine.id)
            assert missing.value.status_code == 404
            assert missing.value.body == {
                "message": f"No such File object: {mine.id}",
                "type": "invalid_request_error",
                "param": "id",
                "code": None,
            }
    assert client.files.content(mine.id).content == b"secret"  # still there
    response = httpx.get(str(client.base_url) + "files", headers=bearer("sk-wrong"))
    assert envelope(response, 401)["code"] == "invalid_api_key"


def test_file_cap_and_storage_quota(client: openai.OpenAI) -> None:
    # Over the per-file cap (2 MiB here): 413 file_too_large.
    with pytest.raises(openai.APIStatusError) as refused:
        client.files.create(file=("big.bin", b"x" * (2 * 1024 * 1024 + 1)), purpose="user_data")
    assert refused.value.status_code == 413
    assert refused.value.body["code"] == "file_too_large"  # type: ignore[index]
    # The quota (3 MiB a tenant): a first file of 1.5 MiB fits, a second of the same size does not.
    half = b"y" * (QUOTA // 2)
    client.files.create(file=("one.bin", half), purpose="user_data")
    with pytest.raises(openai.APIStatusError) as refused:
        client.files.create(file=("two.bin", half + b"!"), purpose="user_data")
    assert refused.value.status_code == 413
    assert refused.value.body["code"] == "storage_quota_exceeded"  # type: ignore[index]
    assert refused.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert len(list(client.files.list())) == 1
    # Exactly what is left still fits.
    client.files.create(file=("two.bin", half), purpose="user_data")


def test_declared_10_gb_is_refused_before_the_body(files_gateway: FilesGateway, tenant_key: str) -> None:
    """Headers declaring 10 GiB, then a few bytes: the answer comes without the body being sent."""
    address = urlsplit(files_gateway.url)
    boundary = "tantraboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.bin"\r\n\r\n'
    ).encode()
    request = (
        f"POST /v1/files HTTP/1.1\r\nHost: {address.hostname}\r\nAuthorization: Bearer {tenant_key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 10737418240\r\n\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request + head + b"z" * 1000)
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert time.monotonic() - started < 5
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    # Over the per-file cap (2 MiB here, below what the quota leaves): the file cap is named.
    assert body["error"]["code"] == "file_too_large"
    assert body["error"]["type"] == "invalid_request_error"


def test_every_call_is_in_the_ledger(files_gateway: FilesGateway, database_url: str) -> None:
    from tests.gateway.helpers import ledger_rows

    tenant = files_gateway.admin.tenant("ledgered-files")
    secret, key = files_gateway.admin.key(tenant["id"], "ledgered")
    with files_gateway.client(secret) as sdk:
        made = sdk.files.create(file=("l.txt", b"ledger"), purpose="user_data")
        sdk.files.retrieve(made.id)
        assert sdk.files.content(made.id).content == b"ledger"
        sdk.files.delete(made.id)
        with pytest.raises(openai.NotFoundError):
            sdk.files.retrieve(made.id)
    rows = ledger_rows(database_url, key["id"], 5)
    seen = sorted((row.endpoint, row.status, row.outcome) for row in rows)
    assert seen == sorted(
        [
            ("/v1/files", 200, "completed"),
            ("/v1/files/{file_id}", 200, "completed"),
            ("/v1/files/{file_id}/content", 200, "completed"),
            ("/v1/files/{file_id}", 200, "completed"),
            ("/v1/files/{file_id}", 404, "rejected"),
        ]
    )
    assert all(row.tenant_id == tenant["id"] and row.prompt_tokens == 0 for row in rows)


def test_a_client_that_leaves_mid_upload_leaves_nothing(
    client: openai.OpenAI, files_gateway: FilesGateway, tenant_key: str
) -> None:
    assert files_gateway.blob_dir is not None
    before = sorted(path for path in files_gateway.blob_dir.rglob("*") if path.is_file())
    address = urlsplit(files_gateway.url)
    boundary = "leavingboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="half.bin"\r\n\r\n'
    ).encode()
    request = (
        f"POST /v1/files HTTP/1.1\r\nHost: {address.hostname}\r\nAuthorization: Bearer {tenant_key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1048576\r\n\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request + head + b"h" * 300_000)
        time.sleep(0.5)  # the gateway is writing the part
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = sorted(path for path in files_gateway.blob_dir.rglob("*") if path.is_file())
        if now == before:
            break
        time.sleep(0.1)
    assert now == before  # the partial blob is gone
    assert list(client.files.list()) == []  # and no row is left


def test_uploads_running_at_once_share_the_quota(
    client: openai.OpenAI, files_gateway: FilesGateway, tenant_key: str
) -> None:
    """An upload in flight holds the room its Content-Length declares: a second upload of the same
    tenant meanwhile sees only what is left (3 MiB quota, 2 MiB held), and gets it back after."""
    address = urlsplit(files_gateway.url)
    boundary = "slowboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n\r\n'
    ).encode()
    request = (
        f"POST /v1/files HTTP/1.1\r\nHost: {address.hostname}\r\nAuthorization: Bearer {tenant_key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n"
    ).encode()
    second = ("second.bin", b"s" * (1536 * 1024))
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request + head + b"h" * 1000)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.files.create(file=second, purpose="user_data")
            except openai.APIStatusError as refused:
                assert refused.status_code == 413
                assert refused.body["code"] == "storage_quota_exceeded"  # type: ignore[index]
                break
            # The slow upload had not started yet: take the file back out and try again.
            for item in client.files.list():
                client.files.delete(item.id)
            assert time.monotonic() < deadline
            time.sleep(0.1)
    # The slow client left: its room is free again.
    deadline = time.monotonic() + 10
    while True:
        try:
            client.files.create(file=second, purpose="user_data")
            break
        except openai.APIStatusError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
