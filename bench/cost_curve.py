"""The cost curve (issue 24, point 4): what one open stream costs the gateway, from 1 to 1,024 streams.

For each N in 1, 16, 64, 256 and 1,024, N streamed chat completions are held open (each worker
sends its next stream as the last ends) against the fixed-latency upstream (`bench/upstream.py`),
directly and through the gateway (base profile, default settings, one process), side by side in
one run, the order alternating per N. Per cell:

- gateway RSS per open stream: the process's VmRSS (/proc/<pid>/status), median over the window,
  minus its idle VmRSS just before, over N. Each N gets a fresh gateway, so the idle figure is not
  inflated by a larger N's heap that Python keeps;
- gateway CPU per token relayed: utime + stime (/proc/<pid>/stat) over the window, over the tokens
  the client received in it;
- added inter-token latency p50/p99 (through minus direct) and the throughput ratio (tokens/s).

The load is `bench/curve_client.py`: aiohttp on uvloop in separate processes, which find tokens in
the bytes without parsing JSON; their CPU is reported beside the upstream's so a run shows whether
the client side kept up. Cores as in the rest of the bench: client and upstream on the first core,
the gateway on the second.

    .venv/bin/python -m bench.cost_curve                      # the curve (about 4 minutes)
    .venv/bin/python -m bench.cost_curve --streams 1,16 --duration 2   # a quick look
    .venv/bin/python -m bench.cost_curve --profile DIR        # also py-spy each gateway cell into DIR
    .venv/bin/python -m bench.cost_curve --variant before=/tmp/old    # another gateway, side by side
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench import profiles, servers
from bench.curve_client import Share, merge, raise_fd_limit, run_share
from bench.procs import Service, usable_cpus
from bench.stats import percentile
from bench.upstream import Latency

MODEL = "bench-model"
STREAMS = (1, 16, 64, 256, 1024)
STREAMS_PER_CLIENT = 256
Progress = Callable[[str], None]


@dataclass(frozen=True)
class CurvePlan:
    """Every knob of the curve; the default is the `make bench` run."""

    streams: tuple[int, ...] = STREAMS
    tokens: int = 32
    # 100 ms between tokens: at 1,024 streams the upstream sends 10k events/s, which the upstream and
    # the client processes keep up with on one shared core; at 50 ms the direct side itself fell
    # behind at 1,024 (9.3k of 20.5k tokens/s with other tenants on the machine).
    latency: Latency = field(default_factory=lambda: Latency(ttft_s=0.02, itl_s=0.1, default_tokens=32))
    duration_s: float = 6.0
    ramp_s: float = 1.5
    idle_s: float = 2.0
    variants: tuple[tuple[str, Path | None, tuple[tuple[str, str], ...]], ...] = ()
    """Other gateways beside the tree's: (label, a copy of the `gateway` package or None for the
    tree, TANTRA_* settings on top of the defaults)."""
    profile_dir: Path | None = None
    """py-spy each gateway cell into this directory (wall-clock samples)."""
    cprofile_dir: Path | None = None
    """cProfile each gateway (CPU time, one file per N) into this directory."""
    fresh_gateways: bool = True
    """A new gateway per N (so its idle RSS is not a larger N's heap); the smoke run keeps one."""

    @classmethod
    def smoke(cls) -> CurvePlan:
        return cls(
            streams=(1, 4),
            tokens=8,
            latency=Latency(ttft_s=0.005, itl_s=0.01, default_tokens=8),
            duration_s=0.6,
            ramp_s=0.4,
            idle_s=0.2,
            fresh_gateways=False,
        )

    @classmethod
    def quick(cls) -> CurvePlan:
        return cls(streams=(1, 64, 256), duration_s=3.0)


class Sampler:
    """A gateway process's RSS and CPU time, read from /proc: the numbers a cell bills it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._ticks = os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def waited_s(self) -> float:
        """Seconds the process was runnable but waited for a core (/proc/<pid>/schedstat): on a
        shared machine, how much other tenants held it back."""
        return int(Path(f"/proc/{self.pid}/schedstat").read_text().split()[1]) / 1e9

    def cpu_s(self) -> float:
        # Field 2 (comm) may hold spaces; the fields after its closing parenthesis are fixed.
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks


def measure(logs: Path, plan: CurvePlan, progress: Progress = print) -> dict[str, Any]:
    """Start the upstream once, then per N a fresh gateway (and each variant); interleave with direct."""
    raise_fd_limit()
    cpus = usable_cpus()
    load_cpus, gateway_cpus = cpus[:1], cpus[1:2] or cpus[:1]
    rows: list[dict[str, Any]] = []
    load_average = [os.getloadavg()]
    # The client processes inherit the load core; started once, before any cell.
    clients = max(1, math.ceil(max(plan.streams) / STREAMS_PER_CLIENT))
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(_client_pool(clients, load_cpus))
        upstream, upstream_url = servers.upstream(logs, plan.latency, MODEL, load_cpus)
        stack.enter_context(upstream)
        direct = Sampler(upstream.pid)
        gateways = [("tantra", None, ()), *plan.variants]
        running: dict[str, tuple[Service, str]] = {}
        stack.callback(_stop_all, running)
        for index, n in enumerate(plan.streams):
            cells = [("direct", None, ()), *gateways]
            if index % 2:  # who goes first alternates
                cells = [*gateways, ("direct", None, ())]
            for name, src, settings in cells:
                if name == "direct":
                    row = _cell(pool, clients, upstream_url, None, direct, n, plan, name)
                else:
                    gateway = _Gateway(name, src, dict(settings), gateway_cpus, logs, upstream_url)
                    row = _gateway_cell(pool, clients, direct, n, plan, gateway, running)
                rows.append(row)
                progress(_progress_line(row))
            load_average.append(os.getloadavg())
    return summarise(rows, plan, load_average)


def _stop_all(running: dict[str, tuple[Service, str]]) -> None:
    for service, _ in running.values():
        service.stop()


@contextlib.contextmanager
def _client_pool(clients: int, cpus: list[int]) -> Iterator[ProcessPoolExecutor]:
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        pool = ProcessPoolExecutor(max_workers=clients, mp_context=get_context("spawn"))
        # Every process started and importing before the first cell, not inside it.
        list(pool.map(raise_fd_limit_remote, range(clients)))
    finally:
        os.sched_setaffinity(0, mine)
    with pool:
        yield pool


def raise_fd_limit_remote(_: int) -> int:
    import aiohttp  # noqa: F401 -- imported now, not in the first cell
    import uvloop  # noqa: F401

    return raise_fd_limit()


@dataclass(frozen=True)
class _Gateway:
    name: str
    src: Path | None
    settings: dict[str, str]
    cpus: list[int]
    logs: Path
    upstream_url: str


def _gateway_cell(
    pool: ProcessPoolExecutor,
    clients: int,
    upstream: Sampler,
    n: int,
    plan: CurvePlan,
    spec: _Gateway,
    running: dict[str, tuple[Service, str]],
) -> dict[str, Any]:
    """The gateway (base profile, one process) for this N: warmed, its idle state read, loaded."""
    name = spec.name
    with _gateway(n, plan, spec, running) as (gateway, url):
        # First requests pay for imports and pools: a few short streams, not measured.
        warm = replace(plan, streams=(min(n, 4),), duration_s=0.5, ramp_s=0.3, profile_dir=None)
        _run_shares(pool, 1, url, min(n, 4), warm)
        sampler = Sampler(gateway.pid)
        idle_rss, idle_cores = _idle(sampler, plan.idle_s)
        with _py_spy(plan.profile_dir, gateway.pid, f"{name}-{n}", plan):
            row = _cell(pool, clients, url, sampler, upstream, n, plan, name)
    row["idle_rss_kib"], row["idle_cores"] = idle_rss, idle_cores
    if row["rss_kib"] is not None:
        row["rss_kib_per_stream"] = (row["rss_kib"] - idle_rss) / n
    if row["cpu_s"] is not None and row["tokens"]:
        # What the gateway spends with nothing in flight (timers, health checks) is not per token.
        busy = row["cpu_s"] - idle_cores * plan.duration_s
        row["cpu_us_per_token"] = 1e6 * max(busy, 0.0) / row["tokens"]
    return row


@contextlib.contextmanager
def _gateway(
    n: int,
    plan: CurvePlan,
    spec: _Gateway,
    running: dict[str, tuple[Service, str]],
) -> Iterator[tuple[Service, str]]:
    """A fresh gateway for this N, stopped after it; or, without `plan.fresh_gateways`, the one
    in `running` (started on first use, stopped by the caller)."""
    if not plan.fresh_gateways and spec.name in running:
        yield running[spec.name]
        return
    base = profiles.settings_for(profiles.by_name("tantra"), None, spec.logs / "state")
    # Nothing is in flight when a cell's gateway is stopped; a short drain lets it exit (and write
    # its profile) well before `Service.stop` would kill it.
    env = {**base, "TANTRA_WORKERS": "1", "TANTRA_DRAIN_GRACE_S": "2", **spec.settings}
    if plan.cprofile_dir is not None:
        plan.cprofile_dir.mkdir(parents=True, exist_ok=True)
        env["BENCH_CPROFILE"] = str(plan.cprofile_dir / f"{spec.name}-{n}.prof")
    gateway, url = servers.tantra(
        spec.logs, f"curve-{spec.name}", spec.upstream_url, env, spec.cpus, spec.src
    )
    gateway.start()
    try:
        gateway.wait_ready()
    except BaseException:
        gateway.stop()
        raise
    if not plan.fresh_gateways:
        running[spec.name] = (gateway, url)
        yield gateway, url
        return
    try:
        yield gateway, url
    finally:
        gateway.stop()


def _idle(sampler: Sampler, seconds: float) -> tuple[int, float]:
    """The gateway with nothing in flight: its median RSS (KiB) and the cores it still uses."""
    samples = []
    cpu_from, started = sampler.cpu_s(), time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        samples.append(sampler.rss_kib())
        time.sleep(0.1)
    cores = (sampler.cpu_s() - cpu_from) / (time.monotonic() - started)
    return int(statistics.median(samples or [sampler.rss_kib()])), cores


def _cell(
    pool: ProcessPoolExecutor,
    clients: int,
    url: str,
    gateway: Sampler | None,
    upstream: Sampler,
    n: int,
    plan: CurvePlan,
    name: str,
) -> dict[str, Any]:
    """One target at N streams: the clients' numbers plus what the processes spent in the window."""
    start = time.monotonic() + 0.2
    window = (start + plan.ramp_s, start + plan.ramp_s + plan.duration_s)
    futures = _submit(pool, min(clients, n), url, n, plan, start, window)
    _sleep_until(window[0])
    cpu_from = gateway.cpu_s() if gateway else None
    waited_from = gateway.waited_s() if gateway else None
    upstream_from = upstream.cpu_s()
    rss: list[int] = []
    while time.monotonic() < window[1]:
        if gateway is not None:
            rss.append(gateway.rss_kib())
        time.sleep(min(0.2, max(0.0, window[1] - time.monotonic())))
    gateway_cpu = gateway.cpu_s() - cpu_from if gateway and cpu_from is not None else None
    waited = gateway.waited_s() - waited_from if gateway and waited_from is not None else None
    upstream_cpu = upstream.cpu_s() - upstream_from
    raw = merge([future.result() for future in futures])
    seconds = window[1] - window[0]
    tokens = raw["tokens"]
    return {
        "target": name,
        "streams": n,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "streams_done": raw["streams_done"],
        "errors": raw["errors"],
        "first_error": raw["first_error"],
        "itl_p50_ms": _ms(percentile(raw["itls"], 50)),
        "itl_p99_ms": _ms(percentile(raw["itls"], 99)),
        "ttft_p50_ms": _ms(percentile(raw["ttfts"], 50)),
        "rss_kib": int(statistics.median(rss)) if rss else None,
        "rss_kib_per_stream": None,
        "cpu_s": gateway_cpu,
        "gateway_cores": gateway_cpu / seconds if gateway_cpu is not None else None,
        "gateway_waited": waited / seconds if waited is not None else None,
        "cpu_us_per_token": 1e6 * gateway_cpu / tokens if gateway_cpu is not None and tokens else None,
        "upstream_cores": upstream_cpu / seconds,
        "client_cores": raw["client_cpu_s"] / seconds,
        "client_processes": raw["client_processes"],
    }


def _submit(
    pool: ProcessPoolExecutor,
    clients: int,
    url: str,
    n: int,
    plan: CurvePlan,
    start: float,
    window: tuple[float, float],
) -> list[Any]:
    shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    return [
        pool.submit(run_share, Share(url, MODEL, count, plan.tokens, start, window[0], window[1], seed=i))
        for i, count in enumerate(shares)
        if count
    ]


def _run_shares(pool: ProcessPoolExecutor, clients: int, url: str, n: int, plan: CurvePlan) -> None:
    start = time.monotonic() + 0.1
    window = (start + plan.ramp_s, start + plan.ramp_s + plan.duration_s)
    for future in _submit(pool, clients, url, n, plan, start, window):
        future.result()


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


@contextlib.contextmanager
def _py_spy(directory: Path | None, pid: int, label: str, plan: CurvePlan) -> Iterator[None]:
    """py-spy sampling the gateway through the cell (--profile), as a speedscope file per cell."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if directory is None or not Path(binary).exists():
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    seconds = math.ceil(plan.ramp_s + plan.duration_s + 1)
    argv = [binary, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200"]
    argv += [
        "--format",
        "speedscope",
        "--output",
        str(directory / f"{label}.speedscope.json"),
        "--nonblocking",
    ]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(timeout=30)
        if spy.poll() is None:
            spy.terminate()


def summarise(rows: list[dict[str, Any]], plan: CurvePlan, load_average: list[Any]) -> dict[str, Any]:
    """Each gateway row against direct at the same N: added ITL and the throughput ratio."""
    direct = {row["streams"]: row for row in rows if row["target"] == "direct"}
    for row in rows:
        base = direct.get(row["streams"])
        if row["target"] == "direct" or base is None:
            continue
        row["added_itl_p50_ms"] = _diff(row["itl_p50_ms"], base["itl_p50_ms"])
        row["added_itl_p99_ms"] = _diff(row["itl_p99_ms"], base["itl_p99_ms"])
        row["throughput_ratio"] = row["tokens_per_s"] / base["tokens_per_s"] if base["tokens_per_s"] else None
    return {
        "plan": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(plan).items()},
        "cores": len(usable_cpus()),
        "load_average": load_average,
        "rows": rows,
    }


def markdown(result: dict[str, Any] | None) -> list[str]:
    """The section of results.md (and cost_curve.md)."""
    if not result or not result.get("rows"):
        return []
    plan = result["plan"]
    latency = plan["latency"]
    loads = " to ".join(f"{la[0]:.1f}" for la in (result["load_average"][0], result["load_average"][-1]))
    lines = [
        f"## Cost curve: N streams held open, {plan['tokens']} tokens each, "
        f"{latency['itl_s'] * 1000:.0f} ms between tokens (fixed upstream), {result['cores']} cores, "
        f"load average {loads}",
        "",
        "| target | streams | tokens/s | x direct | ITL p50 / p99 ms | added ITL p50 / p99 ms | "
        "RSS per stream KiB | CPU us per token | gateway cores (waiting) | errors | "
        "client cores (procs) | upstream cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['target']} | {row['streams']} | {row['tokens_per_s']:.0f} | "
            f"{_num(row.get('throughput_ratio'))} | {_num(row['itl_p50_ms'])} / {_num(row['itl_p99_ms'])} | "
            f"{_num(row.get('added_itl_p50_ms'))} / {_num(row.get('added_itl_p99_ms'))} | "
            f"{_num(row.get('rss_kib_per_stream'), 1)} | {_num(row.get('cpu_us_per_token'), 1)} | "
            f"{_num(row.get('gateway_cores'))} ({_num(row.get('gateway_waited'))}) | "
            f"{row['errors']} | {row['client_cores']:.2f} ({row['client_processes']}) | "
            f"{row['upstream_cores']:.2f} |"
        )
    return [*lines, ""]


def plot(result: dict[str, Any], path: Path) -> None:
    """Per-stream memory, CPU per token and added ITL against N (log x), one line per gateway."""
    from bench.plots import plt

    rows = [row for row in result["rows"] if row["target"] != "direct"]
    targets = list(dict.fromkeys(row["target"] for row in rows))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    panels = (
        ("rss_kib_per_stream", "gateway RSS per open stream (KiB)"),
        ("cpu_us_per_token", "gateway CPU per token relayed (us)"),
        ("added_itl_p99_ms", "added inter-token latency p99 (ms)"),
    )
    for ax, (key, title) in zip(axes, panels, strict=True):
        for target in targets:
            mine = sorted(
                (r for r in rows if r["target"] == target and r.get(key) is not None),
                key=lambda r: r["streams"],
            )
            ax.plot([r["streams"] for r in mine], [r[key] for r in mine], "o-", label=target)
        ax.set_xscale("log")
        ax.set_xlabel("concurrent streams")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("What one open stream costs the gateway (flat = linear in streams)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost_curve.json").write_text(json.dumps(result, indent=1))
    (out / "cost_curve.md").write_text(
        "\n".join([*markdown(result), "![cost_curve.png](cost_curve.png)", ""])
    )
    plot(result, out / "cost_curve.png")


def _progress_line(row: dict[str, Any]) -> str:
    extra = ""
    if row.get("cpu_us_per_token") is not None:
        per_stream = row.get("rss_kib_per_stream") or 0.0
        extra = (
            f"  {row['cpu_us_per_token']:.1f} us CPU/token  {per_stream:.1f} KiB/stream  "
            f"{row['gateway_cores']:.2f} cores, {row['gateway_waited']:.2f} waiting"
        )
    error = f" ({row['first_error']})" if row["errors"] else ""
    return (
        f"  N={row['streams']:<5} {row['target']:<10} {row['tokens_per_s']:8.0f} tokens/s  "
        f"TTFT p50 {row['ttft_p50_ms'] or 0:.0f} ITL p50 {row['itl_p50_ms'] or 0:.1f} "
        f"p99 {row['itl_p99_ms'] or 0:.1f} ms  {row['errors']} errors{error}"
        f"  client {row['client_cores']:.2f} cores{extra}"
    )


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else seconds * 1000


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _variants(
    sources: list[str], settings: list[str]
) -> tuple[tuple[str, Path | None, tuple[tuple[str, str], ...]], ...]:
    """`LABEL=DIR` copies of the gateway, and `LABEL=TANTRA_X=V` settings (one label may take several)."""
    variants: list[tuple[str, Path | None, tuple[tuple[str, str], ...]]] = [
        (label, Path(src).resolve(), ()) for label, src in (v.split("=", 1) for v in sources)
    ]
    by_label: dict[str, list[tuple[str, str]]] = {}
    for spec in settings:
        label, name, value = spec.split("=", 2)
        by_label.setdefault(label, []).append((name, value))
    variants += [(label, None, tuple(pairs)) for label, pairs in by_label.items()]
    return tuple(variants)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost_curve", description=__doc__)
    parser.add_argument("--streams", default=",".join(map(str, STREAMS)), help="N values, comma-separated")
    parser.add_argument("--duration", type=float, default=CurvePlan.duration_s, help="seconds per cell")
    parser.add_argument("--itl-ms", type=float, default=100.0, help="the upstream's gap between tokens")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy each gateway cell into DIR")
    parser.add_argument(
        "--cprofile", type=Path, default=None, help="cProfile (CPU time) each gateway into DIR"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also measure the gateway package under DIR as LABEL (repeatable)",
    )
    parser.add_argument(
        "--variant-setting",
        action="append",
        default=[],
        metavar="LABEL=TANTRA_X=V",
        help="also measure the tree's gateway with this setting as LABEL (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=servers.ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    plan = CurvePlan(
        streams=tuple(int(n) for n in args.streams.split(",")),
        duration_s=args.duration,
        latency=Latency(ttft_s=0.02, itl_s=args.itl_ms / 1000, default_tokens=CurvePlan.tokens),
        variants=_variants(args.variant, args.variant_setting),
        profile_dir=args.profile,
        cprofile_dir=args.cprofile,
    )
    logs = servers.ROOT / ".cache" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result = measure(logs, plan)
    write(result, args.out)
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
