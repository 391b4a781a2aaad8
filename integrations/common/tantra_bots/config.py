"""Configuration from the environment: `NAME`, or `NAME_FILE` naming a file that holds the value
(mounted Kubernetes/Docker secrets); the file wins when both are set."""

from __future__ import annotations

import os


def env(name: str, default: str | None = None) -> str | None:
    path = os.environ.get(name + "_FILE")
    if path:
        with open(path) as secret:
            return secret.read().strip()
    return os.environ.get(name, default)
