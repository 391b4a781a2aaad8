"""Retry, breaker, routing and failover logic against fake upstreams (httpx.MockTransport); the
real-engine behaviour is in test_replicas_vllm.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Message

from gateway.errors import APIError, EngineTimeout, EngineUnavailable, InvalidRequest, Overloaded
from gateway.services.relay import SSERelay, StreamUsage
from gateway.settings.sections import ModelRoute, UpstreamConfig
from gateway.upstreams.attempt import Attempt, Target
from gateway.upstreams.breaker import CircuitBreaker
from gateway.upstreams.dispatch import Dispatcher, RetryPolicy
from gateway.upstreams.failover import Failover, StreamTranscript, can_continue
from gateway.upstreams.pool import PoolPolicy, UpstreamPool
from gateway.upstreams.retry import RetryBudget
from gateway.upstreams.stream import UpstreamRequest, UpstreamStream
from gateway.upstreams.timeouts import Deadline, Timeouts

CHAT = "/v1/chat/completions"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_closes_after_a_trial() -> None:
    clock = Clock()
    seen: list[str] = []
    breaker = CircuitBreaker(failures=3, open_s=5, on_change=seen.append, clock=clock)
    breaker.failure()
    breaker.failure()
    breaker.success()  # not consecutive: the count starts again
    for _ in range(3):
        breaker.failure()
    assert breaker.state == "open" and not breaker.allows()
    clock.now = 5.0
    assert breaker.allows()
    breaker.acquire()
    assert breaker.state == "half_open" and not breaker.allows()  # one trial at a time
    breaker.failure()
    assert breaker.state == "open" and not breaker.allows()
    clock.now = 10.0
    breaker.acquire()
    breaker.success()
    assert breaker.state == "closed" and breaker.allows()
    assert seen == ["open", "half_open", "open", "half_open", "closed"]


def test_retry_budget_is_a_share_of_requests_in_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, window_s=10, minimum=1, clock=clock)
    for _ in range(10):
        budget.request()
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]  # 1 + 20% of 10
    clock.now = 11.0
    assert budget.try_spend()  # the window has moved on


# -- fake upstreams ----------------------------------------------------------------------------


def sse(*bodies: dict[str, Any]) -> list[bytes]:
    return [b"data: " + orjson.dumps(body) + b"\n\n" for body in bodies]


def chunk(
    cid: str, text: str | None = None, *, role: bool = False, finish: str | None = None
) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {"content": text}
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 111 if cid == "first" else 222,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def usage_event(cid: str, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 222,
        "model": "m",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


Handler = Callable[[httpx.Request], Any]


def make_pool(handlers: dict[str, Handler], **policy: Any) -> tuple[UpstreamPool, httpx.AsyncClient]:
    async def route(request: httpx.Request) -> httpx.Response:
        result = handlers[request.url.host](request)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, httpx.Response)
        return result

    client = httpx.AsyncClient(transport=httpx.MockTransport(route), timeout=5)
    urls = {name: f"http://{name}" for name in handlers}
    settings = {"breaker_failures": 2, "breaker_open_s": 30.0, "max_outstanding": 0, **policy}
    pool = UpstreamPool(client, urls, {}, {}, PoolPolicy(**settings))
    return pool, client


def make_dispatcher(pool: UpstreamPool, attempts: int = 3, ttft_s: float = 5) -> Dispatcher:
    return Dispatcher(
        pool,
        budget=RetryBudget(ratio=0.5, window_s=10, minimum=5),
        retry=lambda: RetryPolicy(attempts, 0.0, 0.01),
        timeouts=lambda: Timeouts(connect_s=1, ttft_s=ttft_s, inter_token_s=1, total_s=30),
    )


def streaming(events: list[bytes], fail_after: int | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for index, event in enumerate(events):
                if fail_after is not None and index == fail_after:
                    raise httpx.ReadError("connection reset")
                yield event
                await asyncio.sleep(0)

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    return handler


def refusing(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused")


async def test_a_refused_connection_is_retried_on_another_replica() -> None:
    calls: list[str] = []

    def counted(handler: Handler) -> Handler:
        def wrapper(request: httpx.Request) -> Any:
            calls.append(request.url.host)
            return handler(request)

        return wrapper

    ok = streaming([*sse(chunk("x", role=True), chunk("x", "hi", finish="stop")), b"data: [DONE]\n\n"])
    pool, client = make_pool({"a": counted(refusing), "b": counted(ok)})
    dispatcher = make_dispatcher(pool)
    async with client:
        for _ in range(20):  # routing is random among equals: `a` gets picked, and fails, twice
            attempt = await dispatcher.open_stream(
                CHAT, b'{"model":"m"}', {}, dispatcher.plan("m"), Deadline(30)
            )
            assert attempt.member.name == "b"
            await attempt.close()
    assert pool.members["a"].breaker.state == "open"  # two refusals opened it: no more traffic
    assert calls.count("a") == 2


async def test_client_errors_are_not_retried_and_429_honours_retry_after() -> None:
    bad = {
        "error": {"message": "bad logit bias", "type": "BadRequestError", "param": "logit_bias", "code": 400}
    }
    pool, client = make_pool({"a": lambda request: httpx.Response(400, json=bad)})
    async with client:
        with pytest.raises(InvalidRequest):
            await make_dispatcher(pool).open_stream(
                CHAT, b"{}", {}, make_dispatcher(pool).plan("m"), Deadline(30)
            )
        assert pool.members["a"].breaker.consecutive_failures == 0

    answers = iter([httpx.Response(429, headers={"retry-after": "0.2"}, json={"error": "busy"})])
    events = [*sse(chunk("x", "hi", finish="stop")), b"data: [DONE]\n\n"]
    pool, client = make_pool({"a": lambda request: next(answers, None) or streaming(events)(request)})
    async with client:
        started = asyncio.get_running_loop().time()
        attempt = await make_dispatcher(pool).open_stream(
            CHAT, b"{}", {}, make_dispatcher(pool).plan("m"), Deadline(30)
        )
        assert asyncio.get_running_loop().time() - started >= 0.01  # capped at backoff_max_s=0.01
        await attempt.close()


async def test_a_hung_upstream_trips_the_ttft_timeout() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError

    pool, client = make_pool({"a": hang})
    dispatcher = make_dispatcher(pool, attempts=1, ttft_s=0.2)
    async with client:
        with pytest.raises(EngineTimeout):
            await dispatcher.open_stream(CHAT, b"{}", {}, dispatcher.plan("m"), Deadline(30))
    assert pool.members["a"].outstanding == 0


async def test_routing_prefers_the_prefix_replica_then_the_least_busy_and_sheds_when_full() -> None:
    pool, client = make_pool({"a": refusing, "b": refusing, "c": refusing}, max_outstanding=2)
    members = list(pool.members.values())
    async with client:
        chosen = {pool.choose(members, "system prompt 1").name for _ in range(5)}
        assert len(chosen) == 1  # the same prefix, the same replica
        preferred = pool.members[chosen.pop()]
        preferred.outstanding = 2  # full
        assert pool.choose(members, "system prompt 1") is not preferred
        for member in members:
            member.outstanding = 2
        with pytest.raises(Overloaded) as shed:
            pool.choose(members, None)
        assert shed.value.status == 503 and shed.value.headers["retry-after"] == "1"
        for member in members:
            trip(member.breaker)
        with pytest.raises(EngineUnavailable):
            pool.choose(members, None)


async def test_fallback_chain_answers_when_the_model_upstreams_are_down() -> None:
    seen: list[bytes] = []

    def backup(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return streaming([*sse(chunk("x", "hi", finish="stop")), b"data: [DONE]\n\n"])(request)

    pool, client = make_pool({"local": refusing, "remote": backup})
    pool.reconfigure(
        {"local": "http://local", "remote": "http://remote"},
        {"remote": UpstreamConfig(url="http://remote")},
        {
            "chat": ModelRoute(upstreams=["local"], fallbacks=["chat-backup"]),
            "chat-backup": ModelRoute(upstreams=["remote"], served_name="tiny"),
        },
    )
    dispatcher = make_dispatcher(pool)
    async with client:
        attempt = await dispatcher.open_stream(
            CHAT, b'{"model":"chat"}', {}, dispatcher.plan("chat"), Deadline(30)
        )
        assert attempt.member.name == "remote" and attempt.target.model == "chat-backup"
        await attempt.close()
    assert orjson.loads(seen[0])["model"] == "tiny"


async def test_a_404_moves_on_to_the_fallback_and_a_400_ends_the_chain() -> None:
    def missing(request: httpx.Request) -> httpx.Response:
        error = {"message": "The model `chat` does not exist.", "type": "NotFoundError", "code": 404}
        return httpx.Response(404, json={"error": error, "object": "error"})

    def bad(request: httpx.Request) -> httpx.Response:
        error = {"message": "bad logit bias", "type": "BadRequestError", "param": "logit_bias", "code": 400}
        return httpx.Response(400, json={"error": error, "object": "error"})

    answer = streaming([*sse(chunk("x", "hi", finish="stop")), b"data: [DONE]\n\n"])
    for primary, expected in ((missing, None), (bad, 400)):
        pool, client = make_pool({"local": primary, "remote": answer})
        pool.reconfigure(
            {"local": "http://local", "remote": "http://remote"},
            {},
            {
                "chat": ModelRoute(upstreams=["local"], fallbacks=["chat-backup"]),
                "chat-backup": ModelRoute(upstreams=["remote"]),
            },
        )
        dispatcher = make_dispatcher(pool)
        async with client:
            if expected is None:
                attempt = await dispatcher.open_stream(
                    CHAT, b'{"model":"chat"}', {}, dispatcher.plan("chat"), Deadline(30)
                )
                assert attempt.target.model == "chat-backup"
                await attempt.close()
            else:
                with pytest.raises(APIError) as raised:
                    await dispatcher.open_stream(
                        CHAT, b'{"model":"chat"}', {}, dispatcher.plan("chat"), Deadline(30)
                    )
                assert raised.value.status == expected
        assert pool.members["local"].breaker.state == "closed"  # an answer, not a failure


# -- failover ------------------------------------------------------------------------------------


def test_which_requests_can_be_continued() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    assert can_continue(CHAT, base)
    assert not can_continue(CHAT, base | {"n": 2})
    assert not can_continue(CHAT, base | {"logprobs": True})
    assert not can_continue(CHAT, base | {"tools": [{"type": "function"}]})
    assert not can_continue(CHAT, base | {"response_format": {"type": "json_object"}})
    assert can_continue(CHAT, base | {"response_format": {"type": "text"}, "logprobs": False})
    assert can_continue("/v1/completions", {"model": "m", "prompt": "once"})
    assert not can_continue("/v1/completions", {"model": "m", "prompt": [1, 2, 3]})


def test_continuation_requests_the_rest_of_the_answer() -> None:
    payload = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10,
        "stream": True,
    }
    transcript = StreamTranscript(CHAT, payload)
    for event in sse(chunk("first", role=True), chunk("first", "Hel"), chunk("first", "lo")):
        transcript.see(orjson.loads(event[6:]))
    body = orjson.loads(transcript.continuation(already=2) or b"")
    assert body["messages"][-1] == {"role": "assistant", "content": "Hello"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["max_tokens"] == 8 and body["stream_options"] == {"include_usage": True}
    assert transcript.continuation(already=10) is None

    completion = StreamTranscript("/v1/completions", {"model": "m", "prompt": "Once", "max_tokens": 5})
    completion.see({"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "text": " upon"}]})
    assert orjson.loads(completion.continuation(already=1) or b"")["prompt"] == "Once upon"


class Collector:
    def __init__(self) -> None:
        self.body = b""
        self.done = asyncio.Event()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                self.done.set()

    async def receive(self) -> Message:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError


async def run_relay(
    handlers: dict[str, Handler], payload: dict[str, Any]
) -> tuple[list[dict[str, Any]], bytes]:
    pool, client = make_pool(handlers)
    dispatcher = make_dispatcher(pool)
    async with client:
        plan = [t for t in dispatcher.plan("m")]
        trip(pool.members["b"].breaker)  # the first stream must go to `a`
        deadline = Deadline(30)
        attempt = await dispatcher.open_stream(
            CHAT, orjson.dumps(payload), {"x-request-id": "r"}, plan, deadline
        )
        pool.members["b"].breaker.success()
        body = await relay_with_failover(dispatcher, attempt, payload, plan, deadline)
    events = [orjson.loads(line[6:]) for line in body.split(b"\n\n") if line.startswith(b"data: {")]
    return events, body


def trip(breaker: CircuitBreaker) -> None:
    """Open the breaker at once, as that many failures in a row would."""
    for _ in range(breaker.threshold):
        breaker.failure("tripped by the test")


def relayed(attempt: Attempt, inter_token_s: float) -> UpstreamStream:
    """`attempt`'s stream with no failover (nothing to continue it on)."""
    return UpstreamStream(attempt, inter_token_s=inter_token_s, deadline=None, failover=None)


async def relay_with_failover(
    dispatcher: Dispatcher, attempt: Attempt, payload: dict[str, Any], plan: list[Target], deadline: Deadline
) -> bytes:
    """What a client is sent of `attempt`'s stream, failing over along `plan` when it breaks."""
    request = UpstreamRequest(
        CHAT, orjson.dumps(payload), payload, "m", {"x-request-id": "r"}, failover_max=2
    )
    failover = Failover(dispatcher, request, plan=plan, deadline=deadline, affinity=None)
    stream = UpstreamStream(attempt, inter_token_s=5, deadline=deadline, failover=failover)
    relay = SSERelay(stream, usage=StreamUsage(forward_usage=True, observe=stream.observe))
    collector = Collector()
    await relay({"type": "http"}, collector.receive, collector.send)
    return collector.body


async def test_a_stream_torn_mid_way_continues_on_another_replica_as_one_stream() -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "stream": True}
    first = sse(chunk("first", role=True), chunk("first", "Hel"), chunk("first", "lo"), chunk("first", " wo"))
    rest = [
        *sse(
            chunk("second", role=True),
            chunk("second", "rld"),
            chunk("second", "!", finish="length"),
            usage_event("second", prompt=12, completion=2),
        ),
        b"data: [DONE]\n\n",
    ]
    seen: list[dict[str, Any]] = []

    def second(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"count": 3})
        seen.append(orjson.loads(request.content))
        return streaming(rest)(request)

    events, raw = await run_relay({"a": streaming(first, fail_after=4), "b": second}, payload)
    assert raw.endswith(b"data: [DONE]\n\n") and b'"error"' not in raw
    assert {event["id"] for event in events} == {"first"} and {event["created"] for event in events} == {111}
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "Hello world!"
    assert sum(1 for e in events if e["choices"] and "role" in e["choices"][0]["delta"]) == 1
    assert events[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    assert seen[0]["messages"][-1] == {"role": "assistant", "content": "Hello wo"}
    assert seen[0]["max_tokens"] == 3  # 6 minus the 3 tokens already streamed


async def test_a_stream_that_cannot_be_continued_ends_with_an_error_event() -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2, "stream": True}
    first = sse(chunk("first", role=True), chunk("first", "Hel"))
    pool, client = make_pool({"a": streaming(first, fail_after=2)})
    dispatcher = make_dispatcher(pool)
    async with client:
        attempt = await dispatcher.open_stream(
            CHAT, orjson.dumps(payload), {}, dispatcher.plan("m"), Deadline(30)
        )
        relay = SSERelay(relayed(attempt, 5), usage=StreamUsage(forward_usage=True))
        collector = Collector()
        await relay({"type": "http"}, collector.receive, collector.send)
    assert collector.body.endswith(b"data: [DONE]\n\n")
    last = [line for line in collector.body.split(b"\n\n") if line.startswith(b"data: {")][-1]
    assert orjson.loads(last[6:])["error"]["code"] == "engine_unavailable"


async def test_a_stalled_stream_trips_the_inter_token_timeout() -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            yield sse(chunk("first", role=True))[0]
            await asyncio.sleep(30)
            yield b""

        return httpx.Response(200, content=body())

    pool, client = make_pool({"a": stall})
    dispatcher = make_dispatcher(pool)
    async with client:
        attempt = await dispatcher.open_stream(CHAT, b"{}", {}, dispatcher.plan("m"), Deadline(30))
        relay = SSERelay(relayed(attempt, 0.3), usage=StreamUsage(forward_usage=True))
        collector = Collector()
        await asyncio.wait_for(relay({"type": "http"}, collector.receive, collector.send), 5)
    last = [line for line in collector.body.split(b"\n\n") if line.startswith(b"data: {")][-1]
    assert orjson.loads(last[6:])["error"]["code"] == "engine_timeout"


async def test_a_model_stays_known_while_its_upstreams_cannot_list_it() -> None:
    """Engines too busy (or down) to answer /v1/models keep their last list: a routed model's card
    must not push the unrouted ones out, or their requests get 404 instead of being served."""
    answering = {"on": True}

    def models(request: httpx.Request) -> httpx.Response:
        if not answering["on"]:
            raise httpx.ReadTimeout("busy")
        return httpx.Response(200, json={"data": [{"id": "m", "object": "model", "created": 1}]})

    pool, client = make_pool({"a": models, "b": models})
    pool.reconfigure({"a": "http://a", "b": "http://b"}, {}, {"alias": ModelRoute(served_name="m")})
    async with client:
        assert {card["id"] for card in await pool.list_models(1)} == {"m", "alias"}
        answering["on"] = False
        assert {card["id"] for card in await pool.list_models(1)} == {"m", "alias"}
        assert {member.name for member in pool.members_for("m")} == {"a", "b"}


async def test_a_recovered_upstream_is_probed_half_open_and_gets_the_next_request() -> None:
    alive = {"a": True}

    def maybe(request: httpx.Request) -> httpx.Response:
        if not alive["a"]:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json={"data": [{"id": "m"}]})

    pool, client = make_pool({"a": maybe, "b": lambda request: httpx.Response(200, json={"data": []})})
    pool.reconfigure({"a": "http://a", "b": "http://b"}, {}, {})
    async with client:
        await pool.list_models(1)
        pool.members["a"].breaker = CircuitBreaker(failures=1, open_s=0.2)
        pool.start()
        try:
            alive["a"] = False
            pool.members["a"].breaker.failure()
            members = list(pool.members.values())
            # Open, and probed in the background only: requests all go to b meanwhile.
            assert {pool.choose(members, "same prefix").name for _ in range(20)} == {"b"}
            await asyncio.sleep(1.0)
            assert pool.members["a"].breaker.state == "open"  # the probe failed: still open
            alive["a"] = True
            await asyncio.sleep(1.0)
            assert pool.members["a"].breaker.state == "half_open"
            # The trial goes to a whatever the prefix would prefer.
            assert all(pool.choose(members, f"prefix {i}").name == "a" for i in range(5))
        finally:
            await pool.close()


async def test_a_connection_that_breaks_after_done_ends_the_stream_cleanly() -> None:
    events = [*sse(chunk("first", role=True), chunk("first", "hi", finish="stop")), b"data: [DONE]\n\n"]
    pool, client = make_pool({"a": streaming([*events, b""], fail_after=3)})
    dispatcher = make_dispatcher(pool)
    async with client:
        attempt = await dispatcher.open_stream(CHAT, b"{}", {}, dispatcher.plan("m"), Deadline(30))
        relay = SSERelay(relayed(attempt, 5), usage=StreamUsage(forward_usage=True))
        collector = Collector()
        await relay({"type": "http"}, collector.receive, collector.send)
    assert collector.body.endswith(b"data: [DONE]\n\n") and b'"error"' not in collector.body
    assert pool.members["a"].outstanding == 0
