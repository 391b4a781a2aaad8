#!/usr/bin/env python3
"""Container health check: exit 0 when URL answers 2xx within the timeout, else 1.

    tantra-healthcheck 'http://127.0.0.1:${TANTRA_PORT}/healthz' [--timeout 3]

The images have no curl (the gateway image has no package manager run in its final stage), so the
check is the image's own Python. `${VAR}` in URL is expanded from the environment: HEALTHCHECK's
exec form has no shell to do it, and the port is a setting.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tantra-healthcheck")
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    url = os.path.expandvars(args.url)
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            healthy = 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if not healthy:
        print(f"unhealthy: {url} answered {response.status}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
