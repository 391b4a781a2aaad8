"""TANTRA_WORKERS=2: one `python -m gateway` supervising two worker processes on one port, with the
session's real redis-server and a real fixed-latency upstream process (bench/upstream.py: its
streams last as long as asked, which the drain test needs).

Which worker answered is read from the access lines: with several workers every log line carries
the worker's index and pid (gateway/observability/logs.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.servers import upstream
from bench.upstream import Latency
from gateway.settings.schema import Settings
from gateway.workers import refusal, worker_settings
from tests.gateway.helpers import AdminClient, bearer, envelope, wait_for
from tests.servers import free_port
from tests.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]
MODEL = "workers-model"
RPM = 6


class Gateway:
    """`python -m gateway` with two workers, its JSON log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        operator_port = free_port()
        self.operator_url = f"http://127.0.0.1:{operator_port}"
        self.log = log
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            cwd=ROOT,
            env={
                **os.environ,
                **env,
                "TANTRA_PORT": str(self.port),
                "TANTRA_OPERATOR_PORT": str(operator_port),
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                found.append(orjson.loads(line))
        return found

    def workers(self) -> dict[int, int]:
        """Each worker index's latest pid, from the lines its uvicorn wrote when it started."""
        started = [line for line in self.lines() if str(line["event"]).startswith("Started server process")]
        return {line["worker"]: line["pid"] for line in started}

    def answered_by(self, key_prefix: str | None = None) -> set[int]:
        requests = [line for line in self.lines() if line["event"] == "request" and "pid" in line]
        return {line["pid"] for line in requests if key_prefix is None or line["key_prefix"] == key_prefix}

    def chats_answered(self) -> set[float]:
        """The 200s of chat completions /metrics counts, from 6 scrapes on fresh connections (so
        both workers answer some): one value when the metrics are the host's, not a worker's."""
        seen = set()
        for _ in range(6):
            text = httpx.get(self.operator_url + "/metrics", timeout=10).text
            samples = [
                sample
                for family in text_string_to_metric_families(text)
                if family.name == "tantra_requests"
                for sample in family.samples
                if sample.name == "tantra_requests_total"
                and sample.labels["route"] == "/v1/chat/completions"
                and sample.labels["status"] == "200"
            ]
            assert all("pid" not in sample.labels for sample in samples)
            seen.add(sum(sample.value for sample in samples))
        return seen

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-2000:]
        try:
            up = httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
        return up and len(self.workers()) == 2

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def fixed_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # 50 ms between tokens: a stream of 60 tokens is in flight for three seconds.
    latency = Latency(ttft_s=0.01, itl_s=0.05, default_tokens=4)
    service, url = upstream(tmp_path_factory.mktemp("workers-upstream"), latency, MODEL, [])
    with service:
        yield url


@pytest.fixture(scope="module")
def gateway(
    fixed_upstream: str, redis_server: RedisServer, admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    state = tmp_path_factory.mktemp("workers")
    env = {
        "TANTRA_WORKERS": "2",
        "TANTRA_HOST": "127.0.0.1",
        "TANTRA_ENGINE_URL": fixed_upstream,
        "TANTRA_REDIS_URL": redis_server.url,
        "TANTRA_DATABASE_URL": f"sqlite+aiosqlite:///{state / 'tantra.db'}",
        "TANTRA_ADMIN_KEY": admin_key,
        "TANTRA_LOG_FORMAT": "json",
        "TANTRA_LOG_LEVEL": "info",
        "TANTRA_HEALTH_DEEP": "false",
        # Exactly RPM admitted, however fast the test asks (no shutting out after the 429s).
        "TANTRA_REJECTION_BUDGET_PER_KEY": "0",
    }
    started = Gateway(env, state / "gateway.log")
    try:
        wait_for(started.ready, timeout=240, interval=0.5)
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def admin(gateway: Gateway, admin_key: str) -> Iterator[AdminClient]:
    client = AdminClient(gateway.url, admin_key)
    yield client
    client.close()


def _chat(url: str, key: str, tokens: int = 2) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": tokens}
    # A client (a connection) per request, so the two workers' accepts race for each.
    with httpx.Client(timeout=60, headers=bearer(key)) as client:
        return client.post(url + "/v1/chat/completions", json=body)


def test_refused_without_redis_and_pools_are_split() -> None:
    alone = Settings(redis_url="memory://", media_workers=3, screen_workers=2, jobs_enabled=True)
    assert refusal(alone, 1) is None
    message = refusal(alone, 2)
    assert message is not None and "TANTRA_REDIS_URL" in message and "TANTRA_WORKERS" in message
    shares = [worker_settings(alone, index, 2) for index in range(2)]
    assert [s.media_workers for s in shares] == [2, 1]
    assert [s.screen_workers for s in shares] == [1, 1]
    assert [s.jobs_enabled for s in shares] == [True, False]
    assert not any(s.database_auto_migrate for s in shares)
    assert Settings(workers="auto").worker_count() == len(os.sched_getaffinity(0))
    assert Settings(workers=0).worker_count() == len(os.sched_getaffinity(0))


def test_two_workers_answer_on_one_port(gateway: Gateway, admin: AdminClient) -> None:
    tenant = admin.tenant("workers")
    key, _ = admin.key(tenant["id"], "both")
    workers = set(gateway.workers().values())
    with ThreadPoolExecutor(16) as pool:
        for _ in range(10):
            statuses = list(pool.map(lambda _: _chat(gateway.url, key).status_code, range(16)))
            assert statuses == [200] * 16
            if gateway.answered_by() >= workers:
                break
    assert gateway.answered_by() == workers


def test_metrics_are_the_hosts_whichever_worker_is_scraped(gateway: Gateway, admin: AdminClient) -> None:
    tenant = admin.tenant("workers-metrics")
    key, _ = admin.key(tenant["id"], "metrics")
    [before] = gateway.chats_answered()
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: _chat(gateway.url, key).status_code, range(8))) == [200] * 8
    assert gateway.chats_answered() == {before + 8}
    text = httpx.get(gateway.operator_url + "/metrics", timeout=10).text
    in_flight = [line for line in text.splitlines() if line.startswith("tantra_requests_in_flight{")]
    assert in_flight and all("pid=" not in line for line in in_flight)  # summed over the live workers


def test_limits_hold_across_workers(gateway: Gateway, admin: AdminClient) -> None:
    tenant = admin.tenant("workers-limited")
    key, _ = admin.key(tenant["id"], "rpm", rpm=RPM)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: _chat(gateway.url, key), range(3 * RPM)))
    assert sum(r.status_code == 200 for r in responses) == RPM
    refused = [r for r in responses if r.status_code != 200]
    assert all(envelope(r, 429)["code"] == "rate_limit_exceeded" for r in refused)


def test_a_killed_worker_is_replaced(gateway: Gateway, admin: AdminClient) -> None:
    before = gateway.workers()
    [answered] = gateway.chats_answered()
    os.kill(before[1], signal.SIGKILL)
    wait_for(lambda: gateway.workers().get(1) not in (None, before[1]), timeout=120, interval=0.5)
    assert gateway.process.poll() is None
    assert gateway.workers()[0] == before[0]
    tenant = admin.tenant("workers-after-kill")
    key, _ = admin.key(tenant["id"], "after")
    assert all(_chat(gateway.url, key).status_code == 200 for _ in range(4))
    # The dead worker's counts stay in the host's totals (a counter never goes back).
    assert gateway.chats_answered() == {answered + 4}


def test_sigterm_drains_a_stream_in_flight(gateway: Gateway, admin: AdminClient) -> None:
    tenant = admin.tenant("workers-drain")
    key, _ = admin.key(tenant["id"], "drain")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 60, "stream": True}
    events = []
    with (
        httpx.Client(timeout=60, headers=bearer(key)) as client,
        client.stream("POST", gateway.url + "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                if len(events) == 1:
                    gateway.process.send_signal(signal.SIGTERM)
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    content = [chunk for chunk in chunks if chunk["choices"] and chunk["choices"][0]["delta"].get("content")]
    assert len(content) == 60
    assert gateway.process.wait(60) == 0
    assert not any(_alive(pid) for pid in gateway.workers().values())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
