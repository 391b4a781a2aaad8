"""Issue 16, point 14: key rotation had no lock. A second rotation inside the first one's grace
period ended the original secret at once, and rotations at the same moment all "succeeded" although
only one of their secrets worked. Now a rotation is a compare-and-swap under the row's lock: while a
grace period runs a rotation with grace is refused (409), and of concurrent rotations one wins."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import httpx
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient, bearer
from tests.servers import ThreadedServer
from tests.services import PostgresServer

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, database_url: str) -> str:
    if request.param == "sqlite":
        return database_url
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"rotation_{next(_names)}")


def _works(url: str, secret: str) -> bool:
    """Authenticated (the request gets past the key check, whatever the engine then says)."""
    answer = httpx.get(url + "/v1/models", headers=bearer(secret), timeout=30)
    return answer.status_code != 401


async def _rotate_at_once(url: str, admin_key: str, key_id: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers=bearer(admin_key), timeout=30) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(f"/admin/keys/{key_id}/rotate", json={"grace_seconds": 300})
                    for _ in range(count)
                )
            )
        )


def test_a_second_rotation_in_a_grace_period_keeps_the_original_secret(
    gateway_settings: Callable[..., Settings], store_url: str, admin_key: str
) -> None:
    with ThreadedServer(create_app(gateway_settings(database_url=store_url))) as server:
        admin = AdminClient(server.url, admin_key)
        tenant = admin.tenant(f"rotation-{next(_names)}")
        original, record = admin.key(tenant["id"])
        first = admin.rotate(record["id"], grace_seconds=300)
        again = admin.http.post(f"/admin/keys/{record['id']}/rotate", json={"grace_seconds": 300})
        still = (_works(server.url, original), _works(server.url, first))
        admin.close()
    assert again.status_code == 409, again.text
    assert again.json()["error"]["type"] == "invalid_request_error"
    assert still == (True, True)


def test_concurrent_rotations_one_wins_and_every_secret_handed_out_works(
    gateway_settings: Callable[..., Settings], store_url: str, admin_key: str
) -> None:
    with ThreadedServer(create_app(gateway_settings(database_url=store_url))) as server:
        admin = AdminClient(server.url, admin_key)
        tenant = admin.tenant(f"rotation-{next(_names)}")
        original, record = admin.key(tenant["id"])
        answers = asyncio.run(_rotate_at_once(server.url, admin_key, record["id"], 4))
        handed_out = [answer.json()["key"] for answer in answers if answer.status_code == 200]
        working = [_works(server.url, secret) for secret in [original, *handed_out]]
        admin.close()
    assert sorted(answer.status_code for answer in answers) == [200, 409, 409, 409]
    assert working == [True, True]
