"""X-Forwarded-For and X-Forwarded-User are believed only from trusted proxies, read from the right."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.http.client_address import TrustedProxies, client_address, forwarded_user
from gateway.http.edge import EdgeMiddleware

PROXIES = TrustedProxies(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("192.0.2.1", "203.0.113.7", "192.0.2.1"),  # an untrusted peer's header is ignored
        ("10.0.0.2", "", "10.0.0.2"),  # a proxy that forwarded nothing
        ("10.0.0.2", "203.0.113.7", "203.0.113.7"),
        ("10.0.0.2", "1.1.1.1, 203.0.113.7", "203.0.113.7"),  # what the client wrote is ignored
        ("10.0.0.2", "203.0.113.7, 10.9.9.9", "203.0.113.7"),  # a chain of trusted proxies
        ("10.0.0.2", "203.0.113.7, not-an-ip", "10.0.0.2"),  # garbage stops the walk
        ("fd00::5", "2001:db8::1", "2001:db8::1"),
        ("10.0.0.2", "10.1.1.1, 10.2.2.2", "10.1.1.1"),  # all trusted: the left-most
        ("testclient", "203.0.113.7", "testclient"),  # not an address: not trusted
        (None, "203.0.113.7", None),
    ],
)
def test_client_address(peer: str | None, forwarded: str, client: str | None) -> None:
    assert PROXIES.client_address(peer, {"x-forwarded-for": forwarded}) == client


def test_nobody_is_trusted_by_default() -> None:
    headers = {"x-forwarded-for": "203.0.113.7", "x-forwarded-user": "alice"}
    assert TrustedProxies().client_address("10.0.0.2", headers) == "10.0.0.2"
    assert TrustedProxies().forwarded_user("10.0.0.2", headers) is None


def test_forwarded_user_is_bounded_and_printable() -> None:
    user = PROXIES.forwarded_user("10.0.0.2", {"x-forwarded-user": "al\x00ice" + "x" * 500})
    assert user is not None and user.startswith("alice") and len(user) == 90
    assert PROXIES.forwarded_user("192.0.2.1", {"x-forwarded-user": "alice"}) is None
    assert PROXIES.forwarded_user("10.0.0.2", {"x-forwarded-user": "  "}) is None


def _resolved(proxies: TrustedProxies, peer: str, forwarded: str) -> str | None:
    """What a route sees as `client_address` behind EdgeMiddleware."""
    seen: list[str | None] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        seen.append(client_address(request))
        return PlainTextResponse("ok")

    app = EdgeMiddleware(Starlette(routes=[Route("/", endpoint)]), proxies=proxies)
    with TestClient(app, client=(peer, 1234)) as client:
        client.get("/", headers={"x-forwarded-for": forwarded})
    return seen[0]


def test_every_route_sees_the_address_a_trusted_proxy_forwarded() -> None:
    # The address the rejection budget, the auth-failure throttle and the audit log all count by.
    assert _resolved(PROXIES, "10.0.0.2", "203.0.113.7") == "203.0.113.7"
    assert _resolved(PROXIES, "192.0.2.1", "203.0.113.7") == "192.0.2.1"
    assert _resolved(TrustedProxies(), "10.0.0.2", "203.0.113.7") == "10.0.0.2"


def test_the_end_user_a_trusted_proxy_names_is_kept_for_the_ledger() -> None:
    seen: list[str | None] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        seen.append(forwarded_user(request))
        return PlainTextResponse("ok")

    app = EdgeMiddleware(Starlette(routes=[Route("/", endpoint)]), proxies=PROXIES)
    for peer in ("10.0.0.2", "192.0.2.1"):
        with TestClient(app, client=(peer, 1234)) as client:
            client.get("/", headers={"x-forwarded-user": "alice"})
    assert seen == ["alice", None]  # an untrusted peer names nobody
