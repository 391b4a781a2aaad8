"""vLLM serves `tiny-long-vita` exactly as the plain-torch reference computes it (float32).

One vLLM run for the module (the offline engine in its own process group, about a minute on two
cores): four chat prompts submitted as one batch, then again. The engine's step budget is 1024
tokens, so the long prompts are prefilled in chunks, and prefix caching is on, so the second
submission reuses the first one's blocks, images included.

- one image (448 x 448: one tile, no thumbnail);
- three images of 1, 3 (2 x 1 grid + thumbnail) and 4 (1 x 3 + thumbnail) tiles with text
  between them;
- sixteen one-tile images;
- a video of four 320 x 240 frames.

The reference builds its prompt by walking the tags as the original's `get_external_inputs` does;
vLLM builds it with its prompt updates. Both must give the same ids and the same greedy tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.long_vita.media import frames, picture

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("vllm_driver.py")
NEW_TOKENS = 6
TIMEOUT_S = 900

THREE = [[448, 448, 2], [896, 448, 3], [500, 1400, 4]]
PROMPTS: list[dict[str, Any]] = [
    {"parts": ["image", "What is in this picture?"], "images": [[448, 448, 1]]},
    {"parts": ["First", "image", "then", "image", "and last", "image", "Compare them."], "images": THREE},
    {"parts": [*["image"] * 16, "Which one is red?"], "images": [[448, 448, 10 + i] for i in range(16)]},
    {"parts": ["video", "What happens?"], "video": [4, 320, 240, 7]},
]


def chat_text(tokenizer: Any, parts: list[str]) -> str:
    content = [
        {"type": "image_url", "image_url": {"url": "x"}}
        if part == "image"
        else {"type": "video_url", "video_url": {"url": "x"}}
        if part == "video"
        else {"type": "text", "text": part}
        for part in parts
    ]
    text: str = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    return text


def reference_prompt(tokenizer: Any, spec: dict[str, Any]) -> Any:
    from engine.long_vita.reference import expand_prompt

    return expand_prompt(
        tokenizer(spec["text"]).input_ids,
        [picture(*image) for image in spec.get("images", [])],
        [frames(*spec["video"])] if spec.get("video") else [],
    )


@pytest.fixture(scope="module")
def specs(long_vita_tokenizer: Any) -> list[dict[str, Any]]:
    return [{**spec, "text": chat_text(long_vita_tokenizer, spec["parts"])} for spec in PROMPTS]


@pytest.fixture(scope="module")
def vllm_report(
    long_vita_checkpoint: Path, specs: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    if os.environ.get("TANTRA_SKIP_VLLM"):
        pytest.skip("TANTRA_SKIP_VLLM is set")
    workdir = tmp_path_factory.mktemp("long-vita-vllm")
    (workdir / "prompts.json").write_text(json.dumps(specs))
    log = workdir / "vllm.log"
    cmd = [
        sys.executable,
        str(DRIVER),
        *("--model", str(long_vita_checkpoint), "--prompts", str(workdir / "prompts.json")),
        *("--out", str(workdir / "out.json"), "--max-tokens", str(NEW_TOKENS)),
        *("--max-num-batched-tokens", "1024", "--repeat"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=TIMEOUT_S)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        pytest.fail(f"vLLM exited {code}:\n{tail}")
    report: dict[str, Any] = json.loads((workdir / "out.json").read_text())
    return report


@pytest.mark.parametrize("index", range(len(PROMPTS)), ids=["1-image", "3-images", "16-images", "video"])
def test_vllm_places_the_tokens_and_decodes_as_the_reference(
    index: int,
    specs: list[dict[str, Any]],
    vllm_report: dict[str, Any],
    long_vita_tokenizer: Any,
    long_vita_reference: Any,
) -> None:
    prompt = reference_prompt(long_vita_tokenizer, specs[index])
    first, again = (run[index] for run in vllm_report["runs"])
    assert first["prompt_token_ids"] == prompt.ids
    expected = long_vita_reference.generate_greedy(prompt, NEW_TOKENS)
    assert first["tokens"] == expected
    # The resubmission hits the prefix cache (every whole 128-token block, the CPU backend's
    # block size, but the last token's) and decodes the same.
    assert again["cached_tokens"] == (len(prompt.ids) - 1) // 128 * 128
    assert again["tokens"] == expected


def test_prompt_tokens_grow_by_the_documented_tokens_per_tile(
    specs: list[dict[str, Any]], long_vita_tokenizer: Any
) -> None:
    """Each tile adds 256 context tokens and two markers; a grid adds a newline per row."""
    text_only = len(long_vita_tokenizer(specs[1]["text"]).input_ids)
    expanded = len(reference_prompt(long_vita_tokenizer, specs[1]).ids)
    tiles = 1 + 3 + 4
    rows = 1 + 3
    assert expanded - text_only == tiles * 258 + rows - 3  # the three <image> tags are replaced


def test_the_reference_sees_the_images_and_their_order(
    long_vita_tokenizer: Any, long_vita_reference: Any
) -> None:
    """A test that cannot tell images apart proves nothing: swapping two images changes the logits."""
    text = chat_text(long_vita_tokenizer, ["image", "or", "image", "?"])

    def last_logits(images: list[list[int]]) -> Any:
        prompt = reference_prompt(long_vita_tokenizer, {"text": text, "images": images})
        return long_vita_reference.logits(long_vita_reference.embeddings(prompt))

    kept, moved = last_logits([[448, 448, 2], [448, 448, 5]]), last_logits([[448, 448, 5], [448, 448, 2]])
    assert (kept - moved).abs().max() > 1e-3
