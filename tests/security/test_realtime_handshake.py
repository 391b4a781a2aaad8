"""Issue 16, point 16: a WebSocket whose Authorization header is not `Bearer` gets the same 401
envelope as any other key problem. On 7ddd8cf the header was read outside the route's error path,
and the answer was the app's generic handler's; the test passes there too (under Starlette's
TestClient), so it guards the behaviour rather than proving the old code wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from gateway import Settings, create_app


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Token sk-tantra-x"])
def test_a_non_bearer_authorization_is_a_401_denial(
    gateway_settings: Callable[..., Settings], authorization: str
) -> None:
    app = create_app(gateway_settings())
    headers = {"authorization": authorization}
    with TestClient(app) as client:
        over_http = client.get("/v1/models", headers=headers)
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            client.websocket_connect("/v1/realtime?model=m", headers=headers),
        ):
            pass
    response: Any = denied.value
    assert over_http.status_code == 401
    assert response.status_code == 401
    assert response.json() == over_http.json()
    assert response.json()["error"]["code"] == "invalid_api_key"
