"""Issue 16, point 8: the work one request makes a replica do on its event loop is bounded before
it starts (the JSON values of a large body counted in a worker process before the loop parses it,
400 `too_many_json_values`; messages and content parts counted before validation, 400
`array_above_max_length`), and requests the gateway refuses anyway spend a rejection budget per
key and per client address in Redis, past which they get a cheap 429 before their body is even
read."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient, bearer, envelope
from tests.servers import ThreadedServer


def _error(response: Any, status: int) -> dict[str, Any]:
    """`envelope` for the test client's responses (whose httpx is not the typed one)."""
    return envelope(cast(httpx.Response, response), status)


def _address() -> tuple[str, int]:
    """A client address of its own per test: the budgets are counted per address in Redis."""
    return (f"198.51.100.{secrets.randbelow(250) + 1}-{secrets.token_hex(4)}", 40000)


def _chat(client: TestClient, messages: list[object], headers: dict[str, str] | None = None) -> Any:
    body = orjson.dumps({"model": "tantra-tiny", "messages": messages, "max_tokens": 1})
    return client.post(
        "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json", **(headers or {})},
    )


def test_a_flood_of_tiny_messages_is_refused_before_validation(
    gateway_settings: Callable[..., Settings],
) -> None:
    # The body: hundreds of thousands of one-letter messages, well under the 16 MiB cap.
    messages: list[object] = [{"role": "user", "content": "a"}] * 100_000
    with TestClient(create_app(gateway_settings(auth_enabled=False)), client=_address()) as client:
        error = _error(_chat(client, messages), 400)
    assert (error["param"], error["code"]) == ("messages", "array_above_max_length")
    assert "2048" in str(error["message"])


def test_message_and_part_counts_are_settings(gateway_settings: Callable[..., Settings]) -> None:
    settings = gateway_settings(auth_enabled=False, max_messages=3, max_content_parts=4)
    parts = [{"type": "text", "text": "a"}] * 5
    with TestClient(create_app(settings), client=_address()) as client:
        too_many = _error(_chat(client, [{"role": "user", "content": "a"}] * 4), 400)
        too_many_parts = _error(_chat(client, [{"role": "user", "content": parts}]), 400)
        batch = client.post("/v1/completions", json={"model": "tantra-tiny", "prompt": ["a"] * 4})
    assert (too_many["param"], too_many["code"]) == ("messages", "array_above_max_length")
    assert (too_many_parts["param"], too_many_parts["code"]) == ("messages", "array_above_max_length")
    assert _error(batch, 400)["param"] == "prompt"


def test_refusals_from_one_address_are_throttled_before_the_body_is_read(
    gateway_settings: Callable[..., Settings],
) -> None:
    settings = gateway_settings(auth_enabled=False, rejection_budget_per_address=5)
    with TestClient(create_app(settings), client=_address()) as client:
        for _ in range(5):
            _error(client.post("/v1/chat/completions", content=b"{not json"), 400)
        throttled = client.post("/v1/chat/completions", content=b"{not json")
        error = _error(throttled, 429)
        assert error["code"] == "too_many_rejections"
        assert 1 <= int(throttled.headers["retry-after"]) <= 61
        metrics = client.get("/metrics").text
    assert 'tantra_ratelimit_rejections_total{limit="rejections",scope="address"} 1.0' in metrics
    # Another client is not affected.
    with TestClient(create_app(settings), client=_address()) as other:
        _error(other.post("/v1/chat/completions", content=b"{not json"), 400)


@pytest.fixture(scope="module")
def offline_gateway(gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    with ThreadedServer(create_app(gateway_settings(connect_timeout_s=1))) as server:
        yield server.url


def test_refusals_of_one_key_are_throttled_on_every_replica(
    gateway_settings: Callable[..., Settings], offline_gateway: str, admin_key: str
) -> None:
    admin = AdminClient(offline_gateway, admin_key)
    try:
        key, _ = admin.key(admin.tenant("point-8-" + secrets.token_hex(4))["id"])
    finally:
        admin.close()
    settings = gateway_settings(rejection_budget_per_key=4, max_body_bytes=1024)
    # Refusals of every kind count: invalid bodies (400), bodies too large (413), ...
    with TestClient(create_app(settings), client=_address()) as first:
        for _ in range(2):
            _error(first.post("/v1/chat/completions", headers=bearer(key), json={"model": "nope"}), 400)
        large = {"model": "tantra-tiny", "messages": [{"role": "user", "content": "a" * 2000}]}
        _error(first.post("/v1/chat/completions", headers=bearer(key), json=large), 413)
    # A second replica (same Redis) and another address: the key's budget is shared.
    with TestClient(create_app(settings), client=_address()) as second:
        _error(second.post("/v1/chat/completions", headers=bearer(key), content=b"{"), 400)
        throttled = second.post("/v1/chat/completions", headers=bearer(key), content=b"{")
    error = _error(throttled, 429)
    assert error["code"] == "too_many_rejections"
    assert "API key" in str(error["message"])


def _nested_empty_arrays(megabytes: int) -> bytes:
    """A chat body whose weight is in a field nobody reads: `megabytes` MiB of `[],[],...`."""
    count = megabytes * 1024 * 1024 // 3
    head = b'{"model": "tantra-tiny", "messages": [{"role": "user", "content": "a"}], "max_tokens": 1, "x": ['
    return head + b"[]," * count + b"[]]}"


def _livez_gaps(url: str, done: threading.Event, gaps: list[float]) -> None:
    """Ask /livez again and again until `done`, noting how long each answer took."""
    with httpx.Client(base_url=url, timeout=30) as client:
        while not done.is_set():
            started = time.monotonic()
            client.get("/livez").raise_for_status()
            gaps.append(time.monotonic() - started)
            time.sleep(0.01)


def test_a_body_of_millions_of_empty_arrays_does_not_stall_the_replica(
    gateway_settings: Callable[..., Settings],
) -> None:
    # Before the screen, the loop parsed 5M empty arrays in a field nobody reads: 2.5 to 5 s without
    # an answer to anyone (the messages and parts were few). Now a worker process counts them; the
    # gaps seen on this shared machine are under 0.1 s.
    body = _nested_empty_arrays(15)
    settings = gateway_settings(auth_enabled=False, connect_timeout_s=1)
    server = ThreadedServer(create_app(settings))
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        # A first large body starts the screening workers; the second is the one measured.
        client.post("/v1/chat/completions", content=_nested_empty_arrays(2))
        done, gaps = threading.Event(), list[float]()
        watcher = threading.Thread(target=_livez_gaps, args=(server.url, done, gaps))
        watcher.start()
        try:
            time.sleep(0.2)
            response = client.post(
                "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
            )
            time.sleep(0.2)
        finally:
            done.set()
            watcher.join()
    assert max(gaps) < 1.0, f"/livez went unanswered for {max(gaps):.2f} s"
    error = envelope(response, 400)
    assert error["code"] == "too_many_json_values"
    assert str(512 * 1024) in str(error["message"])


def test_the_json_value_limit_is_a_setting_and_small_bodies_are_not_screened(
    gateway_settings: Callable[..., Settings],
) -> None:
    settings = gateway_settings(auth_enabled=False, max_json_nodes=1000, connect_timeout_s=1)
    small = orjson.dumps({"model": "tantra-tiny", "prompt": [1] * 600, "max_tokens": 1})
    large = orjson.dumps({"model": "tantra-tiny", "prompt": list(range(2000)), "max_tokens": 1})
    invalid = large[:-1] + b"]"
    with TestClient(create_app(settings), client=_address()) as client:
        over = _error(client.post("/v1/completions", content=large), 400)
        not_json = _error(client.post("/v1/completions", content=invalid), 400)
    with TestClient(create_app(settings), client=_address()) as client:
        # Under 2 x 1000 bytes a body cannot hold 1000 values: it is parsed on the loop at once,
        # and no screening worker is even started.
        within = client.post("/v1/completions", content=small)
        screen = client.app.state.components.access.admission.screen  # type: ignore[attr-defined]
        assert screen._pool is None
    assert over["code"] == "too_many_json_values"
    assert "1000" in str(over["message"])
    assert "could not parse the JSON body" in str(not_json["message"])
    assert within.status_code != 400
