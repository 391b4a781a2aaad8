"""Session fixtures: one real vLLM engine on the tiny checkpoint, one gateway in front of it, real clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest

from engine.checkpoint import ensure_checkpoint
from engine.launcher import EngineConfig, EngineProcess
from gateway import Settings, create_app
from tests.servers import ThreadedServer, free_port

ROOT = Path(__file__).resolve().parents[1]
MODEL = "tantra-tiny"


@pytest.fixture(scope="session")
def model() -> str:
    return MODEL


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    return ensure_checkpoint(ROOT / ".cache" / "checkpoints" / "tiny", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def engine(tiny_checkpoint: Path) -> Iterator[EngineProcess]:
    """The one engine of the session; its log goes to .cache/test-engine.log (its tail shows on failure)."""
    log_path = ROOT / ".cache" / "test-engine.log"
    with log_path.open("w") as log:

        def sink(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        config = EngineConfig(
            model_dir=tiny_checkpoint, served_model_name=MODEL, port=free_port(), max_model_len=2048
        )
        with EngineProcess(config, log_sink=sink, startup_timeout=900) as process:
            yield process


@pytest.fixture(scope="session")
def engine_url(engine: EngineProcess) -> str:
    return engine.base_url


@pytest.fixture(scope="session")
def gateway_url(engine_url: str) -> Iterator[str]:
    settings = Settings(engine_url=engine_url)  # type: ignore[arg-type]
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="session")
def openai_client(gateway_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway_url + "/v1", api_key="sk-local", max_retries=0, timeout=120
    ) as client:
        yield client


@pytest.fixture
async def async_openai_client(gateway_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway_url + "/v1", api_key="sk-local", max_retries=0, timeout=120
    ) as client:
        yield client
