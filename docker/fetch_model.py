#!/usr/bin/env python3
"""Put a model checkpoint at DEST, once: the engine's init step in Kubernetes and Compose.

    tantra-fetch-model SOURCE DEST

SOURCE is one of
  preset:NAME            a random-weight checkpoint from `python -m engine build-checkpoint`
                         (`preset:tiny` serves a demo with no download at all)
  hf://ORG/NAME[@REV]    a Hugging Face Hub repository (needs network, and HF_TOKEN if gated)
  http(s)://....tar[.gz] a tarball holding the checkpoint (at its top level or in one folder)
  file:///PATH, /PATH    a checkpoint directory or such a tarball already on a mounted volume

A DEST that already holds config.json is left alone, so a persistent volume is filled once and
every later start is instant. The checkpoint is assembled beside DEST and renamed into place, so
an interrupted fetch never leaves a half checkpoint that looks complete.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path


def fetch(source: str, dest: Path) -> str:
    """Fill `dest` from `source`; returns what was done, for the log."""
    if (dest / "config.json").is_file():
        return f"{dest} already holds a checkpoint; nothing to fetch"
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        _fill(source, staging)
        root = _checkpoint_root(staging)
        if dest.exists():
            shutil.rmtree(dest)
        root.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return f"fetched {source} into {dest}"


def _fill(source: str, staging: Path) -> None:
    if source.startswith("preset:"):
        preset = source[len("preset:") :]
        out = staging / "checkpoint"
        subprocess.run(
            [sys.executable, "-m", "engine", "build-checkpoint", "--preset", preset, "--out", str(out)],
            check=True,
        )
    elif source.startswith("hf://"):
        # The engine image runs offline (HF_HUB_OFFLINE=1); this is the one step that may download.
        # huggingface_hub reads the variable when it is imported, so set it first.
        os.environ["HF_HUB_OFFLINE"] = "0"
        from huggingface_hub import snapshot_download  # ships with vLLM

        repo, _, revision = source[len("hf://") :].partition("@")
        snapshot_download(repo, revision=revision or None, local_dir=staging / "checkpoint")
    elif source.startswith(("http://", "https://")):
        archive = staging / "download.tar"
        with urllib.request.urlopen(source, timeout=60) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        _extract(archive, staging / "checkpoint")
        archive.unlink()
    else:
        path = Path(source.removeprefix("file://"))
        if path.is_dir():
            shutil.copytree(path, staging / "checkpoint")
        elif path.is_file():
            _extract(path, staging / "checkpoint")
        else:
            raise SystemExit(f"fetch-model: {source} is neither a known scheme nor an existing path")


def _extract(archive: Path, into: Path) -> None:
    into.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")  # refuses absolute paths, links out, device files


def _checkpoint_root(staging: Path) -> Path:
    """The folder holding config.json: the checkpoint itself, or its single top-level folder."""
    checkpoint = staging / "checkpoint"
    if (checkpoint / "config.json").is_file():
        return checkpoint
    inner = [child for child in checkpoint.iterdir() if child.is_dir()] if checkpoint.is_dir() else []
    if len(inner) == 1 and (inner[0] / "config.json").is_file():
        return inner[0]
    raise SystemExit("fetch-model: the source holds no config.json; is it a model checkpoint?")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    print(fetch(args[0], Path(args[1])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
