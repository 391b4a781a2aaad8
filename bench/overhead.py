"""Side by side: the same scenarios against every target, rounds interleaved, order rotated per round.

The machine is shared and noisy, so no target gets a quiet minute to itself: each
round runs every scenario on every target back to back, starting from a different
target each round; and each cell records the CPU time of the target's own server,
which noise from other tenants barely moves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from bench.load import Cell, Scenario, Target, run_cell
from bench.procs import Service

Progress = Callable[[str], None]

# The three concurrency levels the issue asks for, JSON and streamed.
FAKE_SCENARIOS = tuple(
    Scenario(f"{'stream' if stream else 'json'}-c{c}", stream=stream, concurrency=c, tokens=16)
    for stream in (False, True)
    for c in (1, 16, 64)
)
ENGINE_SCENARIOS = (
    Scenario("json-c1", stream=False, concurrency=1, tokens=16),
    Scenario("stream-c1", stream=True, concurrency=1, tokens=32),
    Scenario("stream-c16", stream=True, concurrency=16, tokens=32),
    Scenario("stream-c64", stream=True, concurrency=64, tokens=32),
)


async def interleave(
    cells: list[Cell],
    targets: Sequence[Target],
    scenarios: Sequence[Scenario],
    *,
    rounds: int,
    duration_s: float,
    warmup_s: float,
    servers: Mapping[str, Service],
    progress: Progress = print,
) -> None:
    """Run every (round, scenario, target) cell into `cells`, which an interruption leaves holding
    what was measured; `servers` maps a target to the process to bill."""
    for target in targets:
        # First requests pay for imports, pools and caches (LiteLLM's take seconds): not measured.
        for stream in (False, True):
            warm = Scenario("warm-up", stream=stream, concurrency=8, tokens=scenarios[0].tokens)
            await run_cell(target, warm, duration_s=max(warmup_s, 0.2), warmup_s=0.0)
    for round_index in range(rounds):
        shift = round_index % len(targets)
        order = [*targets[shift:], *targets[:shift]]
        for scenario in scenarios:
            for target in order:
                server = servers.get(target.name)
                code = server.revive() if server is not None else None
                if code is not None:
                    progress(f"  {target.name} had exited (code {code}); started again")
                before = server.cpu_seconds() if server else None
                cell = await run_cell(target, scenario, duration_s=duration_s, warmup_s=warmup_s)
                cell.round = round_index
                if server is not None and before is not None:
                    cell.cpu_s = server.cpu_seconds() - before
                cells.append(cell)
                progress(
                    f"  round {round_index + 1}/{rounds} {scenario.name:<11} {target.name:<22} "
                    f"{cell.throughput:8.1f} req/s  {len(cell.ok):6d} ok  {cell.error_rate:6.1%} errors"
                    + (f" (mostly {cell.top_error()})" if cell.error_rate else "")
                )
