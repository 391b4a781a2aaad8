"""Calibration of chat's confidence extension (issue 23, point 2; docs/orchestration.md, "Confidence").

A labelled set is generated: sums of two digits ("What is 3 + 4?"), each answered by one number
(vLLM's structured outputs constrain the answer to the numbers 0..18, so every answer is gradable).
Each item is asked through the gateway with `tantra: {"confidence": true}`, once greedy (`n` = 1:
the score is exp(mean logprob)) and once with samples (`n` = 5 at temperature 1: the score is the
agreement of the first sample with the others). Calibration: the expected calibration error
(ECE: the answers in 10 equal-width bins of their score, |accuracy - mean score| weighted by the
bin's share), the Brier score and accuracy, with a reliability table per mode.

Two upstreams:
- `--fake` (the default, seconds): a fixed-upstream stand-in whose answer distribution is known
  (item i answers right with probability s_i, and reports that probability as the token's). Sampled
  (temperature 1) it is calibrated by construction, so the agreement's ECE is sampling noise and the
  binning's; greedy it answers its most probable answer, right every time s_i > 0.5 while it
  reports s_i: the table shows that underconfidence, as a real model's greedy scores show theirs;
- `--engine` (minutes): vLLM on the tiny random-weight checkpoint behind the gateway (a model that
  knows no arithmetic: its accuracy is chance's, and the table shows how its confidence compares).

    .venv/bin/python -m bench.confidence                 # fake upstream, 200 items
    .venv/bin/python -m bench.confidence --engine        # the tiny engine, 60 items
    .venv/bin/python -m bench.confidence --engine-url http://127.0.0.1:8000   # an engine already up

Writes bench/results/confidence_<upstream>.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bench import servers
from bench.procs import serving_in_thread, usable_cpus

MODEL = "tantra-tiny"
NUMBERS = [str(number) for number in range(19)]
BINS = 10


def labelled_set(size: int, seed: int = 23) -> list[dict[str, str]]:
    rng = random.Random(seed)
    items = []
    for _ in range(size):
        a, b = rng.randrange(10), rng.randrange(10)
        items.append({"question": f"What is {a} + {b}? Answer with the number only.", "label": str(a + b)})
    return items


# -- the fixed-upstream stand-in: known answer probabilities --------------------------------------


def _skill(question: str) -> float:
    """The stand-in's probability of answering `question` right, fixed per question."""
    digest = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return 0.05 + 0.9 * (digest % 1000) / 999


async def _fake_chat(request: Request) -> Response:
    body = await request.json()
    question = body["messages"][-1]["content"]
    words = question.split()
    label = str(int(words[2]) + int(words[4].rstrip("?")))
    skill = _skill(question)
    rng = random.Random(f"{question}-{body.get('seed')}-{time.monotonic_ns()}")
    wrong = [number for number in NUMBERS if number != label]
    probs = {label: skill, **{number: (1 - skill) / len(wrong) for number in wrong}}
    ranked = sorted(probs.items(), key=lambda item: -item[1])[: int(body.get("top_logprobs") or 0)]
    choices = []
    for index in range(int(body.get("n") or 1)):
        greedy = float(body.get("temperature") if body.get("temperature") is not None else 1) == 0
        answer = label if (skill >= 0.5 if greedy else rng.random() < skill) else rng.choice(wrong)
        top = [{"token": token, "logprob": math.log(p), "bytes": []} for token, p in ranked]
        entry = {"token": answer, "logprob": math.log(probs[answer]), "bytes": [], "top_logprobs": top}
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": answer},
                "logprobs": {"content": [entry]} if body.get("logprobs") else None,
                "finish_reason": "stop",
            }
        )
    usage = {"prompt_tokens": 12, "completion_tokens": len(choices), "total_tokens": 12 + len(choices)}
    return JSONResponse(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": choices,
            "usage": usage,
        }
    )


def fake_app() -> Starlette:
    card = {"id": MODEL, "object": "model", "created": 0, "owned_by": "bench", "max_model_len": 2048}
    return Starlette(
        routes=[
            Route("/health", lambda _: PlainTextResponse("")),
            Route("/v1/models", lambda _: JSONResponse({"object": "list", "data": [card]})),
            Route("/v1/chat/completions", _fake_chat, methods=["POST"]),
        ]
    )


@contextlib.contextmanager
def serving_fake() -> Iterator[str]:
    with serving_in_thread(fake_app()) as url:
        yield url


# -- asking and grading ---------------------------------------------------------------------------


async def ask(session: aiohttp.ClientSession, url: str, question: str, n: int) -> list[tuple[str, float]]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 4,
        "n": n,
        "temperature": 0 if n == 1 else 1.0,
        "structured_outputs": {"choice": NUMBERS},
        "tantra": {"confidence": True},
    }
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        answer = await response.json()
    if response.status != 200:
        raise RuntimeError(f"the gateway answered {response.status}: {answer}")
    return [
        (choice["message"]["content"].strip(), float(choice["tantra_confidence"]["score"] or 0.0))
        for choice in answer["choices"]
    ]


async def grade(
    url: str, items: list[dict[str, str]], n: int, concurrency: int = 4
) -> list[tuple[float, bool]]:
    """(score, right) per item: the first choice's."""
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def one(item: dict[str, str]) -> tuple[float, bool]:
            async with limit:
                answer, score = (await ask(session, url, item["question"], n))[0]
            return score, answer == item["label"]

        return list(await asyncio.gather(*(one(item) for item in items)))


def calibration(graded: list[tuple[float, bool]]) -> dict[str, Any]:
    """ECE over equal-width bins, Brier score, accuracy, and the reliability table's rows."""
    rows = []
    ece = 0.0
    for index in range(BINS):
        low, high = index / BINS, (index + 1) / BINS
        inside = [(s, r) for s, r in graded if low <= s < high or (index == BINS - 1 and s == 1.0)]
        if not inside:
            continue
        confidence = sum(s for s, _ in inside) / len(inside)
        accuracy = sum(r for _, r in inside) / len(inside)
        ece += len(inside) / len(graded) * abs(accuracy - confidence)
        row = {"bin": f"{low:.1f}-{high:.1f}", "count": len(inside), "confidence": confidence}
        rows.append({**row, "accuracy": accuracy})
    return {
        "items": len(graded),
        "accuracy": sum(r for _, r in graded) / len(graded),
        "mean_score": sum(s for s, _ in graded) / len(graded),
        "ece": ece,
        "brier": sum((s - r) ** 2 for s, r in graded) / len(graded),
        "bins": rows,
    }


def table(upstream: str, results: dict[str, dict[str, Any]]) -> str:
    lines = [f"# Confidence calibration ({upstream})", ""]
    lines += ["| mode | items | accuracy | mean score | ECE | Brier |", "|---|---|---|---|---|---|"]
    for mode, found in results.items():
        lines.append(
            f"| {mode} | {found['items']} | {found['accuracy']:.3f} | {found['mean_score']:.3f} "
            f"| {found['ece']:.3f} | {found['brier']:.3f} |"
        )
    for mode, found in results.items():
        lines += ["", f"Reliability, {mode}:", "", "| score bin | answers | mean score | accuracy |"]
        lines.append("|---|---|---|---|")
        for row in found["bins"]:
            lines.append(
                f"| {row['bin']} | {row['count']} | {row['confidence']:.3f} | {row['accuracy']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def run(engine_url: str, items: list[dict[str, str]], logs: Path) -> dict[str, dict[str, Any]]:
    """A gateway (auth off, SQLite) in front of `engine_url`; both modes graded through it."""
    settings = {
        "TANTRA_AUTH_ENABLED": "false",
        "TANTRA_DATABASE_URL": f"sqlite+aiosqlite:///{logs / 'confidence.db'}",
        "TANTRA_CONFIDENCE_TOP_LOGPROBS": "5",
    }
    gateway, url = servers.tantra(logs, "tantra-confidence", engine_url, settings, usable_cpus())
    with gateway:
        return {
            "greedy (n=1)": calibration(asyncio.run(grade(url, items, 1))),
            "agreement (n=5)": calibration(asyncio.run(grade(url, items, 5))),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.confidence", description=__doc__)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--engine", action="store_true", help="vLLM on the tiny checkpoint (started here)")
    which.add_argument("--engine-url", help="an engine already serving tantra-tiny")
    parser.add_argument("--items", type=int, help="labelled items (default: 200 fake, 60 engine)")
    parser.add_argument("--checkpoint", type=Path, default=servers.ROOT / ".cache" / "checkpoints" / "tiny")
    parser.add_argument("--out", type=Path, default=servers.ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    upstream = "engine" if args.engine or args.engine_url else "fake"
    items = labelled_set(args.items or (60 if upstream == "engine" else 200))
    with tempfile.TemporaryDirectory(prefix="bench-confidence-") as tmp, contextlib.ExitStack() as stack:
        logs = Path(tmp)
        if args.engine_url:
            engine_url = args.engine_url
        elif args.engine:
            engine, engine_url = servers.engine(logs, args.checkpoint, MODEL, usable_cpus())
            stack.enter_context(engine)
        else:
            engine_url = stack.enter_context(serving_fake())
        results = run(engine_url, items, logs)
    report = table(f"{upstream} upstream, {len(items)} sums of two digits", results)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"confidence_{upstream}.md").write_text(report)
    (args.out / f"confidence_{upstream}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
