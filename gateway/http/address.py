"""Which client a connection comes from: the address refusals and unknown keys are counted against."""

from __future__ import annotations

from starlette.requests import HTTPConnection


def client_address(connection: HTTPConnection) -> str | None:
    """The connection's peer address (None when the server does not know it).

    The one place the gateway decides who the client is: behind a reverse proxy every request has
    the proxy's address, so deployments that throttle per address need the proxy's forwarded
    address read here, from proxies the operator trusts only.
    """
    client = connection.client
    return client.host if client is not None else None
