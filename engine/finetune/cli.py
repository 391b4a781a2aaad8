"""`python -m engine finetune`: the trainer's command line (the gateway's job runner runs it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "finetune",
        help="train a LoRA adapter (PEFT) on a checkpoint from an OpenAI fine-tuning file; progress "
        "as JSON lines on stdout",
    )
    parser.add_argument("--base", type=Path, required=True, help="the base checkpoint directory")
    parser.add_argument("--train", type=Path, required=True, help="the training file (JSONL)")
    parser.add_argument("--validation", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True, help="where the adapter is written")
    parser.add_argument("--method", choices=("supervised", "dpo"), default="supervised")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch's CPU threads")


def run(args: argparse.Namespace) -> int:
    # Imported here: torch and PEFT load only for this command.
    from engine.finetune.train import TrainConfig, train

    train(
        TrainConfig(
            base=args.base,
            train_file=args.train,
            out=args.out,
            method=args.method,
            validation_file=args.validation,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            rank=args.rank,
            alpha=2 * args.rank,
            beta=args.beta,
            seed=args.seed,
            threads=args.threads,
        )
    )
    return 0
