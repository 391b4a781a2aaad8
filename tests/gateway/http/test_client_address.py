"""X-Forwarded-For and X-Forwarded-User are believed only from trusted proxies, read from the right."""

from __future__ import annotations

import pytest

from gateway.http.client_address import TrustedProxies

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
