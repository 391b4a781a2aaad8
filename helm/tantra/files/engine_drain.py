"""The engine pod's preStop: let the gateways stop sending, then wait for vLLM's running requests.

    python engine_drain.py --url http://127.0.0.1:8001 --sleep 5 --timeout 45

A terminating pod leaves its Service's endpoints (and the headless Service's DNS answer) at once,
but the gateways and kube-proxy see that a moment later: the first `--sleep` seconds cover that.
Then it reads vLLM's own /metrics every second until `vllm:num_requests_running` and
`vllm:num_requests_waiting` are both zero (twice in a row), or `--timeout` passes; only then does
Kubernetes send SIGTERM, which stops vLLM. vLLM has no drain of its own; this is it. The chart's
engine.shutdown values set both numbers, and terminationGracePeriodSeconds must cover their sum
(a template check). The standard library only. Written for the Helm chart (helm/tantra/files/).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request

GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")


def in_flight(metrics: str) -> float:
    """Running plus waiting requests, summed over every label set of the two gauges."""
    total = 0.0
    for line in metrics.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in GAUGES:
            total += float(line.rsplit(" ", 1)[1])
    return total


def drain(url: str, sleep_s: float, timeout_s: float, poll_s: float = 1.0) -> str:
    time.sleep(sleep_s)
    deadline = time.monotonic() + timeout_s
    idle = 0
    count = -1.0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
                count = in_flight(response.read().decode())
        except OSError:
            return "the engine no longer answers; nothing to wait for"
        idle = idle + 1 if count == 0 else 0
        if idle >= 2:
            return "no request running or waiting; stopping"
        time.sleep(poll_s)
    return f"{count:g} requests still in flight after {timeout_s:g} s; stopping anyway"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8001")
    parser.add_argument("--sleep", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=45.0)
    parser.add_argument("--poll", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(drain(args.url, args.sleep, args.timeout, args.poll), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
