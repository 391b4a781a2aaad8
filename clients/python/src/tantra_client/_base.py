"""What every Tantra resource stands on: requests made through the openai SDK's own client, so that
Tantra's routes get the SDK's retries (honouring `retry-after-ms` / `Retry-After`), timeouts and
error classes (carrying OpenAI's error envelope) exactly as its OpenAI endpoints do.

The extension point: a resource for a new Tantra route subclasses `SyncAPIResource` (and
`AsyncAPIResource`) and is reached as `client.resource(MyResource)`, or is given a property on
`Tantra`/`AsyncTantra` once it ships in the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import httpx

if TYPE_CHECKING:
    from tantra_client._client import AsyncTantra, Tantra


@dataclass(frozen=True)
class Call:
    """One request to a Tantra route: `path` from the gateway's root (not under /v1)."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    admin: bool = False

    def options(self, client: Tantra | AsyncTantra) -> dict[str, Any]:
        params = {k: v for k, v in self.params.items() if v is not None}
        options: dict[str, Any] = {"params": params}
        if self.admin:
            if not client.admin_key:
                raise ValueError("This needs the admin key: Tantra(admin_key=...) or TANTRA_ADMIN_KEY.")
            options["headers"] = {"Authorization": f"Bearer {client.admin_key}"}
        return options


def _send_sync(client: Tantra, call: Call) -> httpx.Response:
    url, options = client.root_url + call.path, cast(Any, call.options(client))
    if call.method == "get":
        return client.get(url, cast_to=httpx.Response, options=options)
    if call.method == "patch":
        return client.patch(url, cast_to=httpx.Response, body=call.body, options=options)
    return client.post(url, cast_to=httpx.Response, body=call.body, options=options)


async def _send_async(client: AsyncTantra, call: Call) -> httpx.Response:
    url, options = client.root_url + call.path, cast(Any, call.options(client))
    if call.method == "get":
        return await client.get(url, cast_to=httpx.Response, options=options)
    if call.method == "patch":
        return await client.patch(url, cast_to=httpx.Response, body=call.body, options=options)
    return await client.post(url, cast_to=httpx.Response, body=call.body, options=options)


class SyncAPIResource:
    def __init__(self, client: Tantra) -> None:
        self._client = client

    def _response(self, call: Call) -> httpx.Response:
        return _send_sync(self._client, call)

    def _json(self, call: Call) -> Any:
        return self._response(call).json()


class AsyncAPIResource:
    def __init__(self, client: AsyncTantra) -> None:
        self._client = client

    async def _response(self, call: Call) -> httpx.Response:
        return await _send_async(self._client, call)

    async def _json(self, call: Call) -> Any:
        return (await self._response(call)).json()
