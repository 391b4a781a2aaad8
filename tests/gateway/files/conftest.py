"""A gateway of its own for the Files and Uploads tests (no engine needed: no model is called), on the
session's Redis and store, its blobs in a temporary directory, and a tenant with a key."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

_tenants = itertools.count()
QUOTA = 3 * 1024 * 1024


@dataclass
class FilesGateway:
    url: str
    admin: AdminClient
    blob_dir: Path | None

    def tenant_key(self, name: str) -> str:
        tenant = self.admin.tenant(f"{name}-{next(_tenants)}")
        secret, _ = self.admin.key(tenant["id"], name)
        return secret

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def files_gateway(gateway_settings: Callable[..., Settings], admin_key: str) -> Iterator[FilesGateway]:
    settings = gateway_settings(
        files_storage_quota_bytes=QUOTA,
        files_max_file_bytes=2 * 1024 * 1024,
        files_max_part_bytes=1024 * 1024,
        files_max_upload_bytes=4 * 1024 * 1024,
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield FilesGateway(server.url, admin, settings.blob_dir)
        admin.close()


@pytest.fixture
def tenant_key(files_gateway: FilesGateway) -> str:
    """A fresh tenant (an empty quota) and its key, for each test."""
    return files_gateway.tenant_key("files")


@pytest.fixture
def client(files_gateway: FilesGateway, tenant_key: str) -> Iterator[openai.OpenAI]:
    with files_gateway.client(tenant_key) as sdk:
        yield sdk
