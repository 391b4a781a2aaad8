#!/usr/bin/env python3
"""Put a model checkpoint at DEST, once: the engine's init step in Kubernetes and Compose.

    tantra-fetch-model SOURCE DEST

SOURCE is one of
  preset:NAME            a random-weight checkpoint from `python -m engine build-checkpoint`
                         (`preset:tiny` serves a demo with no download at all)
  hf://ORG/NAME[@REV]    a Hugging Face Hub repository (needs network, and HF_TOKEN if gated)
  http(s)://....tar[.gz] a tarball holding the checkpoint (at its top level or in one folder)
  file:///PATH, /PATH    a checkpoint directory or such a tarball already on a mounted volume

A DEST that already holds config.json fetched from the same SOURCE is left alone, so a persistent
volume is filled once and every later start is instant; a DEST fetched from another SOURCE (its
`.tantra-source` marker differs) is fetched again, so changing the source in the chart's values
really changes the model. A DEST with config.json and no marker was filled by hand (or by an older
fetcher): it is kept and adopted. The checkpoint is assembled beside DEST and renamed into place,
so an interrupted fetch never leaves a half checkpoint that looks complete; and the whole step
holds an exclusive lock (flock on `.DEST.lock` beside it), so engine pods sharing one volume
(ReadWriteMany) fetch one at a time: the first downloads, the others wait and find it there.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

# Beside config.json: the SOURCE this checkpoint was fetched from.
MARKER = ".tantra-source"


def fetch(source: str, dest: Path) -> str:
    """Fill `dest` from `source` under the volume's lock; returns what was done, for the log."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    # flock, not a lock file's existence: the kernel (or the NFS server's lock manager) frees it when
    # a holder dies, so a pod killed mid-download never leaves the others waiting forever.
    with (dest.parent / f".{dest.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _fetch_locked(source, dest)


def _fetch_locked(source: str, dest: Path) -> str:
    if (dest / "config.json").is_file():
        marker = dest / MARKER
        if not marker.is_file():
            marker.write_text(source)
            return f"{dest} already holds a checkpoint (no source recorded; adopted as {source})"
        if marker.read_text() == source:
            return f"{dest} already holds a checkpoint of {source}; nothing to fetch"
        print(f"{dest} holds {marker.read_text()}, not {source}: fetching again", flush=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        _fill(source, staging)
        root = _checkpoint_root(staging)
        (root / MARKER).write_text(source)
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
