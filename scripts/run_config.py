"""The gateway's routing for `make run` (scripts/run.sh), printed as shell `export` lines.

One upstream per engine run.sh started: the chat model's (`engine`), the embedding model's
(`embedding`) when it serves one, and the vision model's (`vision`) with `TANTRA_VISION_MODEL`.
The vision model's route takes text, images and video as they are (docs/vision.md, "Through the
gateway"), the chat model's text only, and `auto` chooses between them by the request's media
(docs/orchestration.md, "Automatic model choice"). A setting already in the environment is kept, as
run.sh's `${VAR:-default}` keeps it. With the chat engine alone nothing is printed: the gateway
reaches it as `TANTRA_ENGINE_URL`.

    eval "$(python scripts/run_config.py --model tantra-tiny --port 8001 --vision-model v --vision-port 8003)"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

VISION_ACCEPTS = ["text", "image", "video"]
VIRTUAL_MODEL = "auto"


def _local(port: int) -> dict[str, str]:
    return {"url": f"http://127.0.0.1:{port}"}


def routing(args: argparse.Namespace) -> dict[str, Any]:
    """The settings (by environment variable) for the engines run.sh started."""
    if args.embedding_port is None and args.vision_model is None:
        return {}
    upstreams = {"engine": _local(args.port)}
    if args.embedding_port is not None:
        upstreams["embedding"] = _local(args.embedding_port)
    settings: dict[str, Any] = {
        "TANTRA_UPSTREAMS": upstreams,
        "TANTRA_ROUTING": {"default_model": args.model},
    }
    if args.vision_model is not None:
        upstreams["vision"] = _local(args.vision_port)
        # With routes declared, the default model must be one of them; the embedding model needs
        # none (the gateway finds it in its engine's model list).
        settings["TANTRA_MODELS"] = {
            args.model: {"upstreams": ["engine"]},
            args.vision_model: {"upstreams": ["vision"], "accepts": VISION_ACCEPTS},
        }
        settings["TANTRA_VIRTUAL_MODELS"] = {
            VIRTUAL_MODEL: {
                "candidates": {args.model: {}, args.vision_model: {}},
                "rules": [{"type": "modality"}],
            }
        }
    return settings


def exports(settings: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """`export` lines for the settings the environment does not already set."""
    return [
        f"export {name}={shlex.quote(json.dumps(value))}"
        for name, value in settings.items()
        if not environ.get(name)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", required=True, help="the chat model's served name")
    parser.add_argument("--port", type=int, required=True, help="the chat engine's port")
    parser.add_argument("--embedding-port", type=int, default=None)
    parser.add_argument("--vision-model", default=None, help="the vision model's served name")
    parser.add_argument("--vision-port", type=int, default=8003)
    args = parser.parse_args(argv)
    for line in exports(routing(args), os.environ):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
