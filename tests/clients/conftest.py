"""The clients and bots are packages of their own (clients/python, integrations/*), not installed in
the test venv: their source directories go on sys.path here."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
for _source in (
    _ROOT / "clients" / "python" / "src",
    _ROOT / "integrations" / "common",
    _ROOT / "integrations" / "slack",
    _ROOT / "integrations" / "discord",
):
    if str(_source) not in sys.path:
        sys.path.insert(0, str(_source))
