"""Who is really calling: the peer's address, or the one a trusted reverse proxy vouches for.

X-Forwarded-For is a list any client can start; only the entries appended by proxies we trust
mean anything. So the header is believed only when the peer itself is a trusted proxy, and it is
read from the right: each trusted hop is skipped, and the first address that is not a trusted proxy
is the client (whatever a client wrote further left is ignored).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_USER_CHARS = 90  # the audit actor column holds 100: "admin:" and this


class TrustedProxies:
    """The configured proxies (`TANTRA_TRUSTED_PROXIES`); empty: nobody's headers are believed."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    @property
    def configured(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str | None) -> bool:
        if not self._networks or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False  # a Unix socket peer, or the test client's "testclient"
        return any(ip in network for network in self._networks)

    def client_address(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        """The client's address: the peer's, unless the peer is a trusted proxy that forwarded one."""
        if not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in headers.get("x-forwarded-for", "").split(",") if hop.strip()]
        client = peer
        for hop in reversed(hops):
            if not _is_ip(hop):
                break  # garbage: stop at the last address a trusted proxy really wrote
            client = hop
            if not self.trusts(hop):
                break
        return client

    def forwarded_user(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        """The user an authenticating proxy (oauth2-proxy, nginx auth_request) names in
        X-Forwarded-User, only from a trusted proxy; bounded and printable, for the audit log."""
        if not self.trusts(peer):
            return None
        user = "".join(ch for ch in headers.get("x-forwarded-user", "") if ch.isprintable()).strip()
        return user[:_MAX_USER_CHARS] or None


def client_address(connection: HTTPConnection) -> str | None:
    """The client's address: what EdgeMiddleware resolved through the trusted proxies, else the peer's
    own (None when the server does not know it). The one place the gateway decides who the client
    is: refusals and unknown keys are counted against it, and the audit log records it."""
    resolved = connection.scope.get("state", {}).get("client_address")
    if resolved is not None:
        return str(resolved)
    client = connection.client
    return client.host if client is not None else None


def resolve_client(scope: Scope, proxies: TrustedProxies) -> None:
    """Store the client's address in the scope's state, once per connection (only with proxies
    configured: without, the peer is the client and nothing is parsed)."""
    client = scope.get("client")
    peer = client[0] if client else None
    if proxies.trusts(peer):
        headers = Headers(scope=scope)
        state = scope.setdefault("state", {})
        state["client_address"] = proxies.client_address(peer, headers)
        # The end user a trusted authenticating proxy names: the ledger's `end_user` when the
        # body names none (GDPR erasure by user).
        user = proxies.forwarded_user(peer, headers)
        if user is not None:
            state["forwarded_user"] = user


def forwarded_user(connection: HTTPConnection) -> str | None:
    """What `resolve_client` found in a trusted proxy's X-Forwarded-User, if anything."""
    found = connection.scope.get("state", {}).get("forwarded_user")
    return str(found) if found is not None else None


def _is_ip(text: str) -> bool:
    if len(text) > 64:  # the audit log's column; no real address is longer
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
