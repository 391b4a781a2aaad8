"""The Uploads API through the real openai SDK: three parts joined into one file (md5 checked), the
part cap, parts that do not add up, cancel, and another tenant's upload."""

from __future__ import annotations

import hashlib
import io
import os

import httpx
import openai
import pytest

from tests.gateway.files.conftest import FilesGateway
from tests.gateway.helpers import bearer, envelope


def test_three_parts_make_one_file(client: openai.OpenAI, files_gateway: FilesGateway) -> None:
    parts = [os.urandom(700_000), os.urandom(900_000), os.urandom(123)]
    whole = b"".join(parts)
    upload = client.uploads.create(
        filename="big.jsonl", purpose="batch", bytes=len(whole), mime_type="application/jsonl"
    )
    assert upload.id.startswith("upload_")
    assert (upload.object, upload.status, upload.bytes, upload.file) == (
        "upload",
        "pending",
        len(whole),
        None,
    )
    assert upload.expires_at == upload.created_at + 3600
    made = [client.uploads.parts.create(upload.id, data=part) for part in parts]
    assert all(part.object == "upload.part" and part.upload_id == upload.id for part in made)
    # Joined in the order the completion names, not the order they arrived.
    done = client.uploads.complete(
        upload.id, part_ids=[part.id for part in made], md5=hashlib.md5(whole).hexdigest()
    )
    assert done.status == "completed"
    assert done.file is not None
    assert (done.file.bytes, done.file.filename, done.file.purpose) == (len(whole), "big.jsonl", "batch")
    assert client.files.content(done.file.id).content == whole
    assert client.files.retrieve(done.file.id).id == done.file.id
    # The parts' blobs are gone once joined: only the file's bytes are stored.
    assert files_gateway.blob_dir is not None
    assert not [path for path in (files_gateway.blob_dir / "parts").rglob("*") if path.is_file()]
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload.id, part_ids=[part.id for part in made])  # not pending any more


def test_part_order_md5_and_sizes(client: openai.OpenAI) -> None:
    upload = client.uploads.create(filename="o.bin", purpose="user_data", bytes=6, mime_type="text/plain")
    first = client.uploads.parts.create(upload.id, data=b"abc")
    second = client.uploads.parts.create(upload.id, data=b"def")
    with pytest.raises(openai.BadRequestError) as bad:
        client.uploads.complete(upload.id, part_ids=[first.id, second.id], md5="0" * 32)
    assert bad.value.body["param"] == "md5"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.uploads.complete(upload.id, part_ids=[first.id])
    assert bad.value.body["param"] == "part_ids"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.uploads.complete(upload.id, part_ids=[first.id, "part_nope"])
    assert bad.value.body["param"] == "part_ids"  # type: ignore[index]
    done = client.uploads.complete(upload.id, part_ids=[second.id, first.id])
    assert done.file is not None
    assert client.files.content(done.file.id).content == b"defabc"


def test_caps_and_cancel(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.uploads.create(filename="h.bin", purpose="user_data", bytes=5 * 1024 * 1024, mime_type="x/y")
    assert bad.value.body["param"] == "bytes"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.uploads.create(filename="h.bin", purpose="nope", bytes=1, mime_type="x/y")  # type: ignore[arg-type]
    assert bad.value.body["param"] == "purpose"  # type: ignore[index]
    upload = client.uploads.create(
        filename="c.bin", purpose="user_data", bytes=2 * 1024 * 1024, mime_type="x/y"
    )
    with pytest.raises(openai.APIStatusError) as refused:
        client.uploads.parts.create(upload.id, data=b"p" * (1024 * 1024 + 1))  # a part is 1 MiB at most here
    assert refused.value.status_code == 413
    client.uploads.parts.create(upload.id, data=b"p" * 1024)
    cancelled = client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload.id, data=b"late")


def test_quota_counts_open_uploads(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        client.uploads.create(
            filename="q.bin", purpose="user_data", bytes=4 * 1024 * 1024 - 1, mime_type="x/y"
        )
    assert refused.value.status_code == 413
    assert refused.value.body["code"] == "storage_quota_exceeded"  # type: ignore[index]
    # A part of an open upload is stored bytes: 1 MiB of the 3 MiB quota, so 2 MiB are left.
    upload = client.uploads.create(
        filename="q.bin", purpose="user_data", bytes=2 * 1024 * 1024, mime_type="x/y"
    )
    client.uploads.parts.create(upload.id, data=b"q" * (1024 * 1024))
    client.files.create(file=("fits.bin", b"f" * (2 * 1024 * 1024)), purpose="user_data")
    with pytest.raises(openai.APIStatusError) as refused:
        client.files.create(file=("over.bin", b"!"), purpose="user_data")
    assert refused.value.body["code"] == "storage_quota_exceeded"  # type: ignore[index]
    # Cancelling the upload gives its parts' bytes back.
    client.uploads.cancel(upload.id)
    client.files.create(file=("now.bin", b"!"), purpose="user_data")


def test_another_tenants_upload_is_not_found(client: openai.OpenAI, files_gateway: FilesGateway) -> None:
    upload = client.uploads.create(filename="t.bin", purpose="user_data", bytes=1, mime_type="x/y")
    with files_gateway.client(files_gateway.tenant_key("upload-intruder")) as intruder:
        with pytest.raises(openai.NotFoundError) as missing:
            intruder.uploads.parts.create(upload.id, data=io.BytesIO(b"x"))
        assert missing.value.body["message"] == f"No such Upload object: {upload.id}"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            intruder.uploads.cancel(upload.id)
        with pytest.raises(openai.NotFoundError):
            intruder.uploads.complete(upload.id, part_ids=["part_x"])
    response = httpx.post(
        str(client.base_url) + f"uploads/{upload.id}/complete", json={}, headers=bearer(client.api_key)
    )
    assert envelope(response, 400)["param"] == "part_ids"
