"""The architecture's import contracts ([tool.importlinter] in pyproject.toml) hold, and each is live:
a deliberate violation of it, in a copy of the code, is reported as breaking that contract.

`make lint` runs `lint-imports` too; these tests make `make test` check the same contracts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "engine", "adapters")

# One violating import per contract (by contract id): (the new module, its source).
PROBES = {
    "engine-standalone": ("engine/_contract_probe.py", "import gateway\n"),
    "adapters-standalone": ("adapters/_contract_probe.py", "import gateway.errors\n"),
    "protocol-leaf": ("gateway/protocol/_contract_probe.py", "import gateway.errors\n"),
    "routes-no-storage": ("gateway/routes/_contract_probe.py", "import sqlalchemy\n"),
    "request-path-no-loader": ("gateway/http/_contract_probe.py", "import gateway.settings.load\n"),
    "blobs-standalone": ("gateway/blobs/_contract_probe.py", "import gateway.errors\n"),
}


# What `import gateway.protocol` must not load.
HEAVY = ("fastapi", "starlette", "sqlalchemy", "redis", "opentelemetry")


def contracts() -> dict[str, str]:
    """Contract id -> name, as configured."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract["name"] for contract in config["contracts"]}


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages under `tree`, with the pyproject.toml found there."""
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script)] if script.exists() else [shutil.which("lint-imports") or "lint-imports"]
    return subprocess.run(
        [*command, "--no-cache", "--no-logo"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def broken_sections(report: str, names: list[str]) -> dict[str, str]:
    """Each broken contract's part of the report, by contract name."""
    _, _, broken = report.partition("Broken contracts")
    starts = sorted((broken.index(f"\n{name}\n"), name) for name in names if f"\n{name}\n" in broken)
    ends = [start for start, _ in starts[1:]] + [len(broken)]
    return {name: broken[start:end] for (start, name), end in zip(starts, ends, strict=True)}


def test_every_contract_has_a_probe() -> None:
    assert set(contracts()) == set(PROBES)


def test_the_code_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in contracts().values():
        assert f"{name} KEPT" in result.stdout, result.stdout


def test_each_contract_reports_its_own_violation(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for path, source in PROBES.values():
        (tmp_path / path).write_text(source)

    result = lint_imports(tmp_path)

    assert result.returncode != 0, result.stdout
    names = contracts()
    sections = broken_sections(result.stdout, list(names.values()))
    for contract_id, (path, _) in PROBES.items():
        name = names[contract_id]
        assert f"{name} BROKEN" in result.stdout, result.stdout
        probe = path.removesuffix(".py").replace("/", ".")
        assert probe in sections.get(name, ""), f"{name} did not name {probe}:\n{result.stdout}"


def test_the_protocol_loads_no_framework() -> None:
    """A client of the wire schema pays for pydantic only: no web framework, database or tracing."""
    code = (
        "import sys, gateway.protocol\n"
        f"heavy = {HEAVY!r}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.partition('.')[0] in heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "", f"import gateway.protocol loaded {result.stdout.strip()}"
