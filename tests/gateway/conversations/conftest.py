"""A gateway of its own for the Conversations tests (no engine needed: no model is called), on the
session's Redis and store, and a fresh tenant with a key for each test."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import openai
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

_tenants = itertools.count()


@dataclass
class ConversationsGateway:
    url: str
    admin: AdminClient

    def tenant_key(self, name: str) -> tuple[str, str]:
        """(secret, key id) of a new tenant's key."""
        tenant = self.admin.tenant(f"{name}-{next(_tenants)}")
        secret, record = self.admin.key(tenant["id"], name)
        return secret, str(record["id"])

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def conversations_gateway(
    gateway_settings: Callable[..., Settings], admin_key: str
) -> Iterator[ConversationsGateway]:
    with ThreadedServer(create_app(gateway_settings())) as server:
        admin = AdminClient(server.url, admin_key)
        yield ConversationsGateway(server.url, admin)
        admin.close()


@pytest.fixture
def tenant_key(conversations_gateway: ConversationsGateway) -> tuple[str, str]:
    return conversations_gateway.tenant_key("conversations")


@pytest.fixture
def client(
    conversations_gateway: ConversationsGateway, tenant_key: tuple[str, str]
) -> Iterator[openai.OpenAI]:
    with conversations_gateway.client(tenant_key[0]) as sdk:
        yield sdk
