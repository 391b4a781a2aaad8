"""The Files and Uploads APIs end to end with the S3 backend: a real gateway whose blobs live in a
bucket of moto's standalone S3 server (over HTTP), the real openai SDK as the client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import boto3
import openai
import pytest

from gateway import Settings, create_app
from tests.gateway.files.conftest import FilesGateway
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer
from tests.services import S3Server


@pytest.fixture(scope="module")
def s3_gateway(
    gateway_settings: Callable[..., Settings], admin_key: str, s3_server: S3Server
) -> Iterator[tuple[FilesGateway, object, str]]:
    bucket = s3_server.bucket("tantra-files-e2e")
    settings = gateway_settings(
        blob_backend="s3",
        blob_s3_bucket=bucket,
        blob_s3_prefix="gw/",
        blob_s3_endpoint_url=s3_server.url,
        blob_s3_region="us-east-1",
        blob_s3_access_key_id="test",
        blob_s3_secret_access_key="test",
        blob_s3_part_bytes=5 * 1024 * 1024,
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    with ThreadedServer(create_app(settings)) as server, ThreadedServer(create_app(settings)) as other:
        admin = AdminClient(server.url, admin_key)
        yield FilesGateway(server.url, admin, None), s3, other.url
        admin.close()


def _keys(s3: object) -> list[str]:
    listing = s3.list_objects_v2(Bucket="tantra-files-e2e")  # type: ignore[attr-defined]
    return [item["Key"] for item in listing.get("Contents", [])]


def test_files_and_uploads_on_s3(s3_gateway: tuple[FilesGateway, object, str]) -> None:
    gateway, s3, other_replica = s3_gateway
    with gateway.client(gateway.tenant_key("s3")) as client:
        data = os.urandom(6 * 1024 * 1024 + 7)  # two S3 parts
        made = client.files.create(file=("s3.bin", data), purpose="user_data")
        assert made.bytes == len(data)
        keys = _keys(s3)
        assert len(keys) == 1 and keys[0].startswith("gw/files/")
        assert client.files.content(made.id).content == data
        assert [item.id for item in client.files.list()] == [made.id]
        # Another replica (its own process state, the same store and bucket) serves the same file.
        with openai.OpenAI(base_url=other_replica + "/v1", api_key=client.api_key, max_retries=0) as replica:
            assert replica.files.retrieve(made.id).bytes == len(data)
            assert replica.files.content(made.id).content == data

        upload = client.uploads.create(filename="u.txt", purpose="batch", bytes=9, mime_type="text/plain")
        parts = [client.uploads.parts.create(upload.id, data=chunk) for chunk in (b"one", b"two", b"333")]
        assert len([key for key in _keys(s3) if key.startswith("gw/parts/")]) == 3
        done = client.uploads.complete(upload.id, part_ids=[part.id for part in parts])
        assert done.file is not None
        assert client.files.content(done.file.id).content == b"onetwo333"
        assert not [key for key in _keys(s3) if key.startswith("gw/parts/")]

        client.files.delete(made.id)
        client.files.delete(done.file.id)
        assert _keys(s3) == []
        assert list(client.files.list()) == []
