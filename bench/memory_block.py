"""What the placed memory block costs the chat engine itself (docs/memory.md, "The placed block,
counted"): the bench's tiny chat engine, no gateway, streamed chats of the chat row's questions, each
question sent once per side in a rotating order (so no side always comes first):

- `without`: the question alone; `with`: the messages memory in chat sends for it
  (`gateway/services/memory_chat.with_block` around `placed_block` of five of the retrieval set's
  facts, cut to the token budget as the gateway cuts them);
- `before`: the block as the gateway placed it up to a4c948d (its longer intro, `BEFORE_INTRO`);
- with `--system`, a request that has its own system message (`SYSTEM`): `system` alone,
  `system+appended` (the block appended to it: what the gateway sends now) and `system+separate`
  (the block as a second system message before it: what it sent up to a4c948d).

    .venv/bin/python -m bench.memory_block [--chats 40] [--system] [--out DIR]

Prints (and with `--out` writes `block.{json,md,png}`) TTFT p50 ms of each side, what each adds to its
base, and the prompt tokens the engine counted for each side's last chat; `--count` prints where the
block's tokens go by the checkpoint's own tokenizer and chat template, no engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import servers
from bench.batch_latency import chat_body
from bench.memory_chat import _engine
from bench.memory_set import retrieval_set
from bench.stats import percentile

# The block's intro up to a4c948d, and the request's own system message of the `--system` sides.
BEFORE_INTRO = "Facts remembered about the user from earlier conversations (use them when relevant):"
SYSTEM = "You are a concise assistant. Answer in one sentence."
Message = dict[str, Any]


def block(facts: list[str]) -> str:
    """The system message memory in chat places for these facts, best first."""
    from gateway.services.memory_chat import ChatMemoryOptions, placed_block

    return placed_block(facts, ChatMemoryOptions().token_budget)


def before_block(facts: list[str]) -> str:
    """The block as the gateway placed it up to a4c948d: the same lines under the longer intro."""
    placed = block(facts)
    return "\n".join([BEFORE_INTRO, *placed.splitlines()[1:]]) if placed else ""


def sides(system: bool) -> dict[str, Callable[[str, list[str]], list[Message]]]:
    """Each side's messages for a question and the facts placed with it."""
    from gateway.services.memory_chat import with_block

    def user(question: str) -> list[Message]:
        return [{"role": "user", "content": question}]

    def own(question: str) -> list[Message]:
        return [{"role": "system", "content": SYSTEM}, *user(question)]

    made: dict[str, Callable[[str, list[str]], list[Message]]] = {
        "without": lambda q, facts: user(q),
        "with": lambda q, facts: with_block(user(q), block(facts)),
        "before": lambda q, facts: [{"role": "system", "content": before_block(facts)}, *user(q)],
    }
    if system:
        made["system"] = lambda q, facts: own(q)
        made["system+appended"] = lambda q, facts: with_block(own(q), block(facts))
        made["system+separate"] = lambda q, facts: [{"role": "system", "content": block(facts)}, *own(q)]
    return made


# What each side adds to: its base (the same request without the block).
BASE = {"with": "without", "before": "without", "system+appended": "system", "system+separate": "system"}


async def _first(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[float, int]:
    """Seconds to the first content delta, and the prompt tokens the engine counted."""
    body = {**body, "stream_options": {"include_usage": True}}
    began = time.perf_counter()
    first: float | None = None
    prompt = 0
    headers = {"content-type": "application/json"}
    async with session.post(url, data=orjson.dumps(body), headers=headers) as got:
        got.raise_for_status()
        async for raw in got.content:
            line = raw.strip()
            if not line.startswith(b"data: {"):
                continue
            chunk = orjson.loads(line[6:])
            choices = chunk.get("choices") or [{}]
            if first is None and choices[0].get("delta", {}).get("content"):
                first = time.perf_counter() - began
            if chunk.get("usage"):
                prompt = int(chunk["usage"]["prompt_tokens"])
    assert first is not None
    return first, prompt


async def alternate(engine_url: str, chats: int, warmup: int = 4, system: bool = False) -> dict[str, Any]:
    pairs = retrieval_set(1200)
    url = engine_url.rstrip("/") + "/v1/chat/completions"
    made = sides(system)
    names = list(made)
    ttft: dict[str, list[float]] = {name: [] for name in names}
    tokens: dict[str, int] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        for number in range(warmup + chats):
            question = pairs[number].question
            facts = [p.fact for p in pairs[number : number + 5]]
            shift = number % len(names)
            for side in names[shift:] + names[:shift]:
                body = chat_body(4, stream=True, text=question)
                body["messages"] = made[side](question, facts)
                seconds, prompt = await _first(session, url, body)
                if number >= warmup:
                    ttft[side].append(seconds * 1000)
                    tokens[side] = prompt
    result: dict[str, Any] = {f"{side}_p50_ms": round(percentile(v, 50), 1) for side, v in ttft.items()}
    for side, base in BASE.items():
        if side in ttft:
            result[f"{side}_added_p50_ms"] = round(result[f"{side}_p50_ms"] - result[f"{base}_p50_ms"], 1)
    result["added_p50_ms"] = result["with_added_p50_ms"]
    result["prompt_tokens_last"] = tokens
    result["chats"] = chats
    return result


def counts(questions: int = 40) -> dict[str, Any]:
    """Where the block's tokens go, by the tiny checkpoint's tokenizer and chat template (median over
    the probe's first questions): the prompt of each side, and the parts of the block alone."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(servers.ROOT / ".cache" / "checkpoints" / "tiny"))

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(messages: list[Message]) -> int:
        return count(str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)))

    pairs = retrieval_set(1200)
    made = sides(system=True)
    per: dict[str, list[int]] = {name: [] for name in (*made, "facts", "lines", "intro", "old intro")}
    for number in range(questions):
        question, facts = pairs[number].question, [p.fact for p in pairs[number : number + 5]]
        for name, messages in made.items():
            per[name].append(prompt(messages(question, facts)))
        per["facts"].append(count("\n".join(facts)))
        per["lines"].append(count("\n".join(block(facts).splitlines()[1:])))
        per["intro"].append(count(block(facts).splitlines()[0]))
        per["old intro"].append(count(BEFORE_INTRO))
    medians = {name: statistics.median(values) for name, values in per.items()}
    # The template's own system prompt, which any first system message replaces.
    default = prompt([{"role": "user", "content": "x"}]) - prompt([{"role": "system", "content": ""}, *[
        {"role": "user", "content": "x"}]])  # fmt: skip
    return {"prompt_tokens_p50": medians, "template_default_system_tokens": default, "questions": questions}


def _order(result: dict[str, Any]) -> list[str]:
    """The sides measured, in `sides`' order (each base before what adds to it)."""
    return [name for name in sides(system=True) if name in result["prompt_tokens_last"]]


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [
        f"{result['chats']} chats a side, sides rotated per question; load average "
        f"{result.get('load_average_start')} → {result.get('load_average_end')}",
        "",
        "| side | TTFT p50 ms | added to its base p50 ms | prompt tokens (engine, last chat) |",
        "|---|---|---|---|",
    ]
    for side in _order(result):
        added = result.get(f"{side}_added_p50_ms")
        shown = f"**{added}** (vs {BASE[side]})" if added is not None else "base"
        lines.append(
            f"| {side} | {result[f'{side}_p50_ms']} | {shown} | {result['prompt_tokens_last'][side]} |"
        )
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _order(result)
    figure, axis = plt.subplots(figsize=(8, 4))
    colours = ["#999999" if name in BASE.values() else "#2a7ab0" for name in names]
    axis.bar(range(len(names)), [result[f"{name}_p50_ms"] for name in names], color=colours)
    axis.set_xticks(
        range(len(names)), [f"{n}\n{result['prompt_tokens_last'][n]} tokens" for n in names], fontsize=7
    )
    axis.set_ylabel("TTFT p50 ms (tiny engine, no gateway)")
    axis.set_title("The placed memory block's prefill, per layout")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_block", description=__doc__)
    parser.add_argument("--chats", type=int, default=40)
    parser.add_argument(
        "--system", action="store_true", help="also the sides with the request's own system message"
    )
    parser.add_argument("--count", action="store_true", help="count the block's tokens only (no engine)")
    parser.add_argument("--out", type=Path, help="write block.{json,md,png} here")
    args = parser.parse_args(argv)
    if args.count:
        print(json.dumps(counts()))
        return 0
    from bench.batch_latency import MODEL
    from bench.run import Cores
    from engine.checkpoint import ensure_checkpoint

    cores = Cores()
    logs = servers.ROOT / ".cache" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    checkpoint = ensure_checkpoint(servers.ROOT / ".cache" / "checkpoints" / "tiny", preset="tiny", seed=0)
    with contextlib.ExitStack() as stack:
        engine, url = _engine("memory-block-engine", logs, cores.all, model_dir=checkpoint,
                              served_model_name=MODEL, cpu_cores=str(cores.all[0]))  # fmt: skip
        stack.enter_context(engine)
        load = os.getloadavg()[0]
        result = asyncio.run(alternate(url, args.chats, system=args.system))
    result["load_average_start"] = round(load, 1)
    result["load_average_end"] = round(os.getloadavg()[0], 1)
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "block.json").write_text(json.dumps(result, indent=1))
        (args.out / "block.md").write_text("\n".join(markdown(result)) + "\n")
        plot(result, args.out / "block.png")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
