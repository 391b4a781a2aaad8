"""Engine discovery end to end (issue 26's acceptance): three engines behind one DNS name served by a
real DNS server (dnslib, tests/dns_records.py), one removed and one added while the openai SDK
streams through the gateway; no client error, a breaker and an affinity key per member, the removed
member drained before it is dropped.

The three "pods" are the session's one real engine (fixture `engine_url`, which binds 127.0.0.1
only) reached through a real forwarding TCP proxy per address on the loopback network (127.0.0.2,
.3, .4, .5, all on one port as a Service's pods are): no second engine is started, and each proxy
counts the chat requests that reach its "pod", can slow its answers (a busy pod, so a stream is
still in flight when its record goes) and can break (reset every connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway import Settings, create_app
from tests.dns_records import RecordServer
from tests.servers import ThreadedServer

pytestmark = pytest.mark.engine

NAME = "engines.tantra.test"
PODS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
LEAVER, JOINER = "127.0.0.3", "127.0.0.5"
STREAMS = 4  # concurrent streaming clients


class PodProxy:
    """A real TCP forwarder from (address, port) to the engine, counting the chat requests it sees."""

    def __init__(self, address: str, port: int, engine: tuple[str, int]) -> None:
        self.address, self.port, self.engine = address, port, engine
        self.chats = 0
        self.delay_s = 0.0  # added before each chunk of the engine's answer
        self.broken = False
        self._tail = b""
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.address, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.break_connections()
        if self._handlers:  # each ends at its connections' reset; none is left to the loop's end
            await asyncio.wait(self._handlers, timeout=5)

    def break_connections(self) -> None:
        """Reset every connection now and every new one: a pod that died."""
        self.broken = True
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.broken:
            writer.transport.abort()
            return
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.engine)
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pump(reader, upstream_writer, count=True), self._pump(upstream_reader, writer)
            )
        finally:
            for each in (writer, upstream_writer):
                self._writers.discard(each)
                each.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool = False
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                if count:
                    seen = self._tail + chunk
                    self.chats += seen.count(b"POST /v1/chat/completions")
                    self._tail = seen[-32:]
                elif self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()


def common_free_port() -> int:
    """A port free on every pod address."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((PODS[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for address in (*PODS, JOINER):
                with socket.socket() as sock:
                    sock.bind((address, port))
            return port
        except OSError:
            continue
    raise AssertionError("no port free on every loopback address")


@pytest.fixture
def dns() -> Iterator[RecordServer]:
    with RecordServer() as server:
        yield server


def get(url: str) -> httpx.Response:
    """A quick probe of the gateway (in its own thread) from the test's loop."""
    return httpx.get(url, timeout=10)


def members(gateway: str) -> dict[str, dict[str, Any]]:
    upstreams: dict[str, dict[str, Any]] = get(gateway + "/health/upstreams").json()["upstreams"]
    return upstreams


async def until(condition: Callable[[], bool], within_s: float) -> None:
    for _ in range(int(within_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_pods_join_and_leave_under_streaming_load(
    engine_url: str, gateway_settings: Callable[..., Settings], dns: RecordServer, api_key: str, model: str
) -> None:
    engine = httpx.URL(engine_url)
    port = common_free_port()
    proxies = {
        address: PodProxy(address, port, (engine.host, engine.port or 80)) for address in (*PODS, JOINER)
    }
    for proxy in proxies.values():
        await proxy.start()
    dns.set(NAME, PODS)
    settings = gateway_settings(
        upstreams={"engine": {"url": f"http://{NAME}:{port}", "discovery": {"interval_s": 0.3}}},
        discovery_nameserver=dns.nameserver,
        breaker_failures=2,
        breaker_open_s=60,  # an opened breaker stays open for the assertions
    )
    with ThreadedServer(create_app(settings)) as server:
        gateway = server.url
        client = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=api_key, max_retries=0)
        try:
            await until(lambda: len(members(gateway)) == 3, within_s=10)
            assert set(members(gateway)) == {f"engine@{address}" for address in PODS}
            await _join_and_leave(gateway, client, model, proxies, dns)
            await _affinity_and_breakers(gateway, client, model, proxies)
        finally:
            await client.close()
            for proxy in proxies.values():
                await proxy.close()


async def _join_and_leave(
    gateway: str, client: openai.AsyncOpenAI, model: str, proxies: dict[str, PodProxy], dns: RecordServer
) -> None:
    """Streams run throughout; a pod leaves with a stream in flight and another joins."""
    stop = asyncio.Event()
    finished: list[str | None] = []

    async def streamer(index: int) -> None:
        while not stop.is_set():
            stream = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"client {index}, stream {len(finished)}"}],
                max_tokens=24,
                stream=True,
            )
            reasons = [choice.finish_reason async for chunk in stream for choice in chunk.choices]
            finished.append(reasons[-1])

    proxies[LEAVER].delay_s = 0.1  # a busy pod: its streams last seconds
    load = [asyncio.create_task(streamer(index)) for index in range(STREAMS)]
    try:
        await until(lambda: members(gateway)[f"engine@{LEAVER}"]["outstanding"] >= 1, within_s=30)
        dns.set(NAME, (PODS[0], PODS[2], JOINER))
        await until(lambda: f"engine@{JOINER}" in members(gateway), within_s=10)
        leaving = members(gateway).get(f"engine@{LEAVER}")
        assert leaving is not None and leaving["draining"] and leaving["outstanding"] >= 1, leaving
        await until(lambda: f"engine@{LEAVER}" not in members(gateway), within_s=30)  # drained, dropped
        after_drop = proxies[LEAVER].chats
        joined_before = proxies[JOINER].chats
        await until(lambda: proxies[JOINER].chats >= joined_before + 3, within_s=30)
        assert proxies[LEAVER].chats == after_drop  # nothing new reached the drained pod
    finally:
        stop.set()
        results = await asyncio.gather(*load, return_exceptions=True)
    errors = [result for result in results if isinstance(result, BaseException)]
    assert not errors, errors  # no client saw an error (and the SDK retried nothing: max_retries=0)
    assert finished and all(reason in {"length", "stop"} for reason in finished), finished
    assert all(proxies[address].chats > 0 for address in (*PODS, JOINER))


async def _affinity_and_breakers(
    gateway: str, client: openai.AsyncOpenAI, model: str, proxies: dict[str, PodProxy]
) -> None:
    """One prompt prefix keeps one pod; a pod that dies opens its own breaker only, and the
    requests it failed are retried on the others before their first byte."""
    prompt = "Affinity: " + "the same long system prompt, " * 12

    async def ask(content: str) -> None:
        answer = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}], max_tokens=1
        )
        assert answer.choices[0].finish_reason in {"length", "stop"}

    before = {address: proxy.chats for address, proxy in proxies.items()}
    for turn in range(5):
        await ask(f"{prompt} turn {turn}")
    gained = {address: proxy.chats - before[address] for address, proxy in proxies.items()}
    assert sorted(gained.values()) == [0, 0, 0, 5], gained  # every turn on one pod

    dead = PODS[2]
    proxies[dead].break_connections()
    for turn in range(24):
        await ask(f"request {turn} to a pool with a dead pod")
    states = {name: member["state"] for name, member in members(gateway).items()}
    assert states == {
        f"engine@{PODS[0]}": "closed",
        f"engine@{dead}": "open",
        f"engine@{JOINER}": "closed",
    }, states


async def test_no_engine_yet_is_a_ready_gateway_answering_503_then_one_joins(
    engine_url: str, gateway_settings: Callable[..., Settings], dns: RecordServer, api_key: str, model: str
) -> None:
    """Issue 26, point 6: a discovered upstream whose name has no record yet (engines scaled to zero,
    or all down): the gateway is ready (it stays in its Service), its engines are not, and the SDK
    gets OpenAI's 503 envelope with Retry-After; once the engine's address is in DNS it answers."""
    engine = httpx.URL(engine_url)
    dns.set(NAME, None)  # NXDOMAIN, as a headless Service with no ready pod
    settings = gateway_settings(
        upstreams={"engine": {"url": f"http://{NAME}:{engine.port}", "discovery": {"interval_s": 0.3}}},
        discovery_nameserver=dns.nameserver,
        health_interval_s=0.5,
    )
    with ThreadedServer(create_app(settings)) as server:
        gateway = server.url
        client = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=api_key, max_retries=0)
        try:
            await until(lambda: dns.queries >= 2, within_s=10)  # A and AAAA asked: no member
            assert get(gateway + "/readyz").status_code == 200
            engines = get(gateway + "/readyz?engines=1")
            assert engines.status_code == 503 and engines.json()["error"]["code"] == "not_ready"
            assert "tantra_engines_ready 0.0" in get(gateway + "/metrics").text
            with pytest.raises(openai.APIStatusError) as refused:
                await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1
                )
            assert refused.value.status_code == 503
            assert refused.value.response.headers["retry-after"] == "1"
            assert refused.value.body == {
                "message": "No upstream is reachable; try again shortly.",
                "type": "server_error",
                "param": None,
                "code": "engine_unavailable",
            }

            dns.set(NAME, (engine.host,))  # the engine's pod is ready
            await until(lambda: get(gateway + "/readyz?engines=1").status_code == 200, within_s=30)
            assert "tantra_engines_ready 1.0" in get(gateway + "/metrics").text
            answer = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1
            )
            assert answer.choices[0].finish_reason in {"length", "stop"}
        finally:
            await client.close()


async def test_scaled_to_zero_a_request_is_held_until_the_first_engine_joins(
    engine_url: str, gateway_settings: Callable[..., Settings], dns: RecordServer, api_key: str, model: str
) -> None:
    """Issue 26, point 2: with TANTRA_COLD_START_WAIT_S, the SDK's request for a model with no engine
    (scaled to zero) waits in the gateway, counted in tantra_requests_waiting{model} (what KEDA's
    activation trigger reads), and is answered by the engine once its address is in DNS."""
    engine = httpx.URL(engine_url)
    dns.set(NAME, None)
    settings = gateway_settings(
        upstreams={"engine": {"url": f"http://{NAME}:{engine.port}", "discovery": {"interval_s": 0.3}}},
        discovery_nameserver=dns.nameserver,
        cold_start_wait_s=60,
    )
    held = f'tantra_requests_waiting{{model="{model}"}} 1.0'
    with ThreadedServer(create_app(settings)) as server:
        gateway = server.url
        client = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=api_key, max_retries=0)
        try:
            answer = asyncio.create_task(
                client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1
                )
            )
            await until(lambda: held in get(gateway + "/metrics").text, within_s=10)
            assert not answer.done()
            dns.set(NAME, (engine.host,))  # the first engine pod is ready
            completion = await asyncio.wait_for(answer, 30)
            assert completion.choices[0].finish_reason in {"length", "stop"}
            assert held not in get(gateway + "/metrics").text
        finally:
            await client.close()
