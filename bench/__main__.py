"""`python -m bench`: Tantra against direct and LiteLLM's proxy, then the service targets on vLLM.

Writes bench/results/results.md, results.json and PNG plots. `--quick` runs every
part for seconds instead of minutes (iteration, and the smoke test in `make test`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path

from bench import profiles, report
from bench.run import Outcome, Plan, execute
from bench.servers import ROOT


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.replot:
        document = json.loads((args.out / "results.json").read_text())
        per_minute = document["meta"].get("plan", {}).get("sustained_per_minute", 120.0)
        print("bench: drew", ", ".join(report.draw(document, per_minute, args.out)))
        return 0
    plan = _plan(args)

    # SIGTERM unwinds like Ctrl-C, so every server the run started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    outcome = Outcome(plan, {})
    try:
        execute(plan, outcome)
    except (KeyboardInterrupt, SystemExit):
        # Whatever was measured before the stop is still written, marked as such.
        outcome.notes.append("The run was interrupted; the parts after the interruption are missing.")
        report.write(outcome, plan.out)
        raise
    report.write(outcome, plan.out)
    minutes = (time.monotonic() - started) / 60
    print(f"bench: done in {minutes:.1f} min; see {plan.out / 'results.md'}")
    print((plan.out / "results.md").read_text().split("## Targets", 1)[-1].split("\n## ", 1)[0])
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds per part instead of minutes")
    parser.add_argument("--smoke", action="store_true", help="a moment per part: checks the code, not speed")
    parser.add_argument("--replot", action="store_true", help="only redraw the plots of OUT/results.json")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy (no venv needed)")
    parser.add_argument("--no-engine", action="store_true", help="skip the real vLLM engine parts")
    parser.add_argument(
        "--profiles",
        default=",".join(p.name for p in profiles.PROFILES),
        help="comma-separated feature profiles to measure (default: all)",
    )
    parser.add_argument(
        "--gateway-src",
        type=Path,
        default=None,
        help="a directory holding another copy of the `gateway` package (to measure a change)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also measure the gateway package under DIR as target LABEL (repeatable)",
    )
    parser.add_argument(
        "--variant-profile",
        default=profiles.PROFILES[0].name,
        help="the feature profile the variants run with (one that needs Redis must be in --profiles too)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (fixed-latency part)")
    parser.add_argument("--sustained-minutes", type=float, default=None)
    return parser


def _plan(args: argparse.Namespace) -> Plan:
    """The smoke, quick or full plan, with the command line's choices on top."""
    if args.smoke:
        plan = Plan.smoke(args.out)
    elif args.quick:
        plan = Plan.quick(args.out)
    else:
        plan = Plan.full(args.out)
    changes: dict[str, object] = {
        "litellm": not args.no_litellm,
        "engine": not args.no_engine,
        "profiles": tuple(name.strip() for name in args.profiles.split(",") if name.strip()),
        "gateway_src": args.gateway_src.resolve() if args.gateway_src else None,
    }
    if args.variant:
        pairs = [v.split("=", 1) for v in args.variant]
        changes["variants"] = tuple((label, Path(src).resolve()) for label, src in pairs)
        changes["variant_profile"] = profiles.by_name(args.variant_profile).name
    if args.rounds is not None:
        changes["rounds"] = args.rounds
    if args.sustained_minutes is not None:
        changes["sustained_minutes"] = args.sustained_minutes
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
