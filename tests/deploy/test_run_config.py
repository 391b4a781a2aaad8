"""`make run`'s gateway routing (scripts/run_config.py, evaluated by scripts/run.sh), without starting
anything: the exports it prints are what a shell gets, and the gateway's settings accept them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway import Settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run_config.py"
RUN_SH = ROOT / "scripts" / "run.sh"


def exported(*args: str, **environ: str) -> dict[str, Any]:
    """What `eval "$(run_config.py ...)"` exports, read back by a shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANTRA_")} | environ
    command = f'eval "$({shlex.quote(sys.executable)} {SCRIPT} {shlex.join(args)})"; env -0'
    out = subprocess.run(["bash", "-c", command], env=env, capture_output=True, check=True).stdout
    pairs = (item.split("=", 1) for item in out.decode().split("\0") if item.startswith("TANTRA_"))
    return {name: json.loads(value) for name, value in pairs if name not in environ}


def settings_of(values: dict[str, Any]) -> Settings:
    names = {"TANTRA_UPSTREAMS": "upstreams", "TANTRA_MODELS": "models", "TANTRA_ROUTING": "routing"}
    names["TANTRA_VIRTUAL_MODELS"] = "virtual_models"
    return Settings(**{names[name]: value for name, value in values.items()})


def test_the_chat_engine_alone_needs_no_routing() -> None:
    assert exported("--model", "tantra-tiny", "--port", "8001") == {}


def test_the_embedding_engine_beside_the_chat_engine() -> None:
    values = exported("--model", "tantra-tiny", "--port", "8001", "--embedding-port", "8002")
    assert values == {
        "TANTRA_UPSTREAMS": {
            "engine": {"url": "http://127.0.0.1:8001"},
            "embedding": {"url": "http://127.0.0.1:8002"},
        },
        "TANTRA_ROUTING": {"default_model": "tantra-tiny"},
    }
    settings_of(values)


def test_the_vision_model_takes_media_and_auto_chooses_it() -> None:
    args = ["--model", "tantra-tiny", "--port", "8001", "--embedding-port", "8002"]
    values = exported(*args, "--vision-model", "tiny-long-vita", "--vision-port", "8003")
    settings = settings_of(values)
    assert str(settings.upstreams["vision"].url) == "http://127.0.0.1:8003/"
    assert set(settings.upstreams) == {"engine", "embedding", "vision"}
    policy = settings.policy()
    assert policy.accepts("tiny-long-vita") == ("text", "image", "video")
    assert policy.accepts("tantra-tiny") == ("text",)
    auto = values["TANTRA_VIRTUAL_MODELS"]["auto"]
    assert list(auto["candidates"]) == ["tantra-tiny", "tiny-long-vita"]
    assert auto["rules"] == [{"type": "modality"}]


def test_settings_the_operator_gave_are_kept() -> None:
    mine = json.dumps({"engine": {"url": "http://10.0.0.5:8001"}})
    args = ["--model", "m", "--port", "8001", "--vision-model", "v"]
    values = exported(*args, TANTRA_UPSTREAMS=mine)
    assert "TANTRA_UPSTREAMS" not in values and "TANTRA_MODELS" in values


def test_run_sh_serves_the_vision_model_through_run_config() -> None:
    subprocess.run(["bash", "-n", str(RUN_SH)], check=True)
    script = RUN_SH.read_text()
    assert "TANTRA_VISION_MODEL" in script and "scripts/run_config.py" in script
    assert "--media-io-kwargs" in script  # one frame per second, as Long-VITA samples video
