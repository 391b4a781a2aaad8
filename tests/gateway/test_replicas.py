"""Two gateway processes sharing one Redis and one database, hammered together by concurrent clients.

The window is shortened to 10 s (TANTRA_LIMITS_WINDOW_S) so that a run spans several windows in
half a minute; the limits mean "per window" exactly as they mean "per minute" by default.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.store import Database
from tests.gateway.helpers import AdminClient, bearer, envelope, ledger_now, wait_for
from tests.servers import free_port
from tests.services import PostgresServer, RedisServer

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
WINDOW_S = 10
RPM = 30  # requests per window, for the request-bound key
TPM = 1200  # tokens per window, for the token-bound key
RUN_S = 25
WORKERS_PER_KEY = 8


class Replica:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            cwd=ROOT,
            env={
                **os.environ,
                **env,
                "TANTRA_PORT": str(self.port),
                # Each replica's own operator port: two cannot share the default 9090.
                "TANTRA_OPERATOR_PORT": str(free_port()),
                "TANTRA_HOST": "127.0.0.1",
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # apart from the test runner's terminal and its signals
        )

    def wait_ready(self) -> None:
        def up() -> bool:
            assert self.process.poll() is None, "a gateway replica exited while starting"
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, interval=0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def shared_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """PostgreSQL as deployed when it can be had, else SQLite (WAL lets two processes share it)."""
    try:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database("replicas")
    except pytest.skip.Exception:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('replicas') / 'tantra.db'}"

    async def migrate() -> None:
        database = Database(url)
        await database.migrate()
        await database.close()

    asyncio.run(migrate())
    return url


@pytest.fixture(scope="module")
def replicas(
    engine_url: str,
    redis_server: RedisServer,
    shared_database: str,
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Replica]]:
    env = {
        "TANTRA_ENGINE_URL": engine_url,
        "TANTRA_REDIS_URL": redis_server.url,
        "TANTRA_DATABASE_URL": shared_database,
        "TANTRA_ADMIN_KEY": admin_key,
        "TANTRA_LIMITS_WINDOW_S": str(WINDOW_S),
        "TANTRA_LEDGER_FLUSH_INTERVAL_S": "0.2",
        "TANTRA_LOG_LEVEL": "warning",
        # The load below ignores Retry-After on purpose, to measure the limiter's precision; the
        # rejection budget would (rightly) shut such a client out for the rest of its window.
        "TANTRA_REJECTION_BUDGET_PER_KEY": "0",
    }
    logs = tmp_path_factory.mktemp("replica-logs")
    started = [Replica(env, logs / f"replica-{i}.log") for i in range(2)]
    try:
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


@dataclass
class Tally:
    admitted: int = 0
    tokens_received: int = 0
    rejected: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)


async def hammer(urls: list[str], key: str, model: str, tally: Tally, until: float) -> None:
    async with httpx.AsyncClient(timeout=60, headers=bearer(key)) as client:
        turn = random.randrange(len(urls))
        while time.monotonic() < until:
            turn += 1
            url = urls[turn % len(urls)]
            stream = random.random() < 0.4
            body: dict[str, Any] = {
                "model": model,
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": random.randint(1, 8),
                "ignore_eos": True,
            }
            if stream:
                body.update(stream=True, stream_options={"include_usage": True})
            response = await client.post(url + "/v1/chat/completions", json=body)
            tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                tally.admitted += 1
                tally.tokens_received += _usage(response, stream)
            elif response.status_code == 429:
                tally.rejected += 1
                if (
                    "retry-after" not in response.headers
                    or response.json()["error"]["code"] != "rate_limit_exceeded"
                ):
                    tally.bad.append(response.text)
                await asyncio.sleep(0.05)
            else:
                tally.bad.append(f"{response.status_code} {response.text[:300]}")


def _usage(response: httpx.Response, stream: bool) -> int:
    if not stream:
        return int(response.json()["usage"]["total_tokens"])
    import orjson

    for line in reversed(response.text.splitlines()):
        if line.startswith("data: {") and '"choices":[]' in line:
            return int(orjson.loads(line[6:])["usage"]["total_tokens"])
    raise AssertionError("a stream without its usage event: " + response.text[-300:])


def most_in_any_window(rows: list[Any], weight: Any) -> int:
    """The largest total that any window (t - W, t] of admission times holds."""
    times = [(row.created_at, weight(row)) for row in rows]
    times.sort(key=lambda item: item[0])
    best = start = total = 0
    for moment, amount in times:
        total += amount
        while (moment - times[start][0]).total_seconds() >= WINDOW_S:
            total -= times[start][1]
            start += 1
        best = max(best, total)
    return best


def test_two_replicas_hold_rpm_and_tpm(
    replicas: list[Replica], shared_database: str, admin_key: str, model: str
) -> None:
    admin = AdminClient(replicas[0].url, admin_key)
    tenant = admin.tenant("replicas")
    rpm_key, rpm_record = admin.key(tenant["id"], "rpm-bound", rpm=RPM)
    tpm_key, tpm_record = admin.key(tenant["id"], "tpm-bound", tpm=TPM)
    urls = [replica.url for replica in replicas]
    tallies = {"rpm": Tally(), "tpm": Tally()}

    async def run() -> None:
        until = time.monotonic() + RUN_S
        await asyncio.gather(
            *(hammer(urls, rpm_key, model, tallies["rpm"], until) for _ in range(WORKERS_PER_KEY)),
            *(hammer(urls, tpm_key, model, tallies["tpm"], until) for _ in range(WORKERS_PER_KEY)),
        )

    asyncio.run(run())
    time.sleep(1.0)  # both replicas flush their ledgers

    report = []
    for name, key_id, limit, weight in (
        ("rpm", rpm_record["id"], RPM, lambda row: 1),
        ("tpm", tpm_record["id"], TPM, lambda row: row.prompt_tokens + row.completion_tokens),
    ):
        tally = tallies[name]
        assert not tally.bad, tally.bad[:3]
        assert tally.rejected > 0, f"the {name} key was never limited: the test did not push hard enough"
        rows = [row for row in ledger_now(shared_database, key_id) if row.status == 200]
        assert len(rows) == tally.admitted
        assert sum(r.prompt_tokens + r.completion_tokens for r in rows) == tally.tokens_received
        peak = most_in_any_window(rows, weight)
        over = max(0.0, peak / limit - 1) * 100
        report.append(f"{name}: limit {limit}/{WINDOW_S}s, peak {peak}, over-admission {over:.2f}%, "
                      f"{tally.admitted} admitted, {tally.rejected} refused, {tally.statuses}")  # fmt: skip
        assert peak <= limit * 1.01, report[-1]
        served = {row.created_at.timestamp() for row in rows}
        assert max(served) - min(served) > 2 * WINDOW_S  # the run spanned several windows
    fell_open = sum(
        httpx.get(url + "/admin/status", headers=bearer(admin_key)).json()["limits"]["failed_open"]
        for url in urls
    )
    report.append(f"requests served unlimited because Redis was slow: {fell_open}")
    print("\n" + "\n".join(report))
    admin.close()


def test_revocation_and_rotation_reach_every_replica_within_a_second(
    replicas: list[Replica], admin_key: str
) -> None:
    first, second = (AdminClient(replica.url, admin_key) for replica in replicas)
    tenant = first.tenant("propagation")
    key, record = first.key(tenant["id"])

    def status(replica: Replica, secret: str) -> int:
        return httpx.get(replica.url + "/v1/models", headers=bearer(secret), timeout=10).status_code

    assert [status(r, key) for r in replicas] == [200, 200]  # cached on both now
    first.revoke(record["id"])
    revoked_at = time.monotonic()
    for replica in reversed(replicas):
        wait_for(lambda replica=replica: status(replica, key) == 401, timeout=5, interval=0.02)
    revocation_s = time.monotonic() - revoked_at
    assert revocation_s < 1.0

    old, record = first.key(tenant["id"])
    assert [status(r, old) for r in replicas] == [200, 200]
    new = second.rotate(record["id"])
    rotated_at = time.monotonic()
    for replica in replicas:
        wait_for(lambda replica=replica: status(replica, old) == 401, timeout=5, interval=0.02)
    rotation_s = time.monotonic() - rotated_at
    assert rotation_s < 1.0
    assert [status(r, new) for r in replicas] == [200, 200]
    envelope(httpx.get(replicas[0].url + "/v1/models", headers=bearer(old)), 401)

    # Limits change everywhere too.
    limited, record = first.key(tenant["id"], rpm=1000)
    assert [status(r, limited) for r in replicas] == [200, 200]
    second.patch_key(record["id"], allowed_models=["nothing-here"])
    changed_at = time.monotonic()

    def sees_no_models(replica: Replica) -> bool:
        response = httpx.get(replica.url + "/v1/models", headers=bearer(limited), timeout=10)
        return response.json()["data"] == []

    for replica in replicas:
        wait_for(lambda replica=replica: sees_no_models(replica), timeout=5, interval=0.02)
    change_s = time.monotonic() - changed_at
    assert change_s < 1.0
    print(f"\nrevocation {revocation_s * 1000:.0f} ms, rotation {rotation_s * 1000:.0f} ms, "
          f"limit change {change_s * 1000:.0f} ms on both replicas")  # fmt: skip
    first.close()
    second.close()
