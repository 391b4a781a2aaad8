"""A client that leaves must not keep the engine busy: the engine's own metrics prove the abort."""

from __future__ import annotations

import re
import time

import httpx
import pytest

pytestmark = pytest.mark.engine

# The tiny model's engine core makes ~2,000 tokens a second on a quiet machine, faster than vLLM's
# API process sends them: one 1,800-token answer can be fully generated before a client has read
# its first lines. Sixteen choices keep the engine busy for far longer than any client here waits.
LONG = {"max_tokens": 1800, "ignore_eos": True, "n": 16, "seed": 0}
FULL = LONG["max_tokens"] * LONG["n"]


def engine_metric(engine_url: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples in the engine's Prometheus text, filtered by labels."""
    text = httpx.get(engine_url + "/metrics", timeout=60).text  # slow while vLLM streams a lot
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def wait_until_running(engine_url: str, timeout: float = 15.0) -> None:
    """Wait until the engine reports the request running; its gauges trail the tokens it sends."""
    deadline = time.monotonic() + timeout
    while engine_metric(engine_url, "vllm:num_requests_running") < 1:
        assert time.monotonic() < deadline, "the engine never reported the request as running"
        time.sleep(0.05)


def wait_until_idle(engine_url: str, timeout: float = 10.0) -> float:
    """Seconds until the engine runs no request, or fail."""
    start = time.monotonic()
    while engine_metric(engine_url, "vllm:num_requests_running") > 0:
        assert time.monotonic() - start < timeout, "the engine still runs the abandoned request"
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.mark.parametrize("stream", [True, False])
def test_disconnect_cancels_engine_request(
    gateway_url: str, auth: dict[str, str], engine_url: str, model: str, stream: bool
) -> None:
    wait_until_idle(engine_url)
    finished_before = engine_metric(engine_url, "vllm:request_success_total")
    generated_before = engine_metric(engine_url, "vllm:generation_tokens_total")
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Talk for a long time."}],
        "stream": stream,
        **LONG,
    }

    with httpx.Client(
        base_url=gateway_url, headers=auth, timeout=httpx.Timeout(60, read=1.5 if not stream else 60)
    ) as client:
        if stream:
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200, response.read()
                events = response.iter_lines()
                seen = [next(events) for _ in range(6)]
                assert any(line.startswith("data: {") for line in seen)
                wait_until_running(engine_url)
            # leaving the `with` closes the connection mid-stream
        else:
            # The client gives up while the engine is still generating.
            with pytest.raises(httpx.ReadTimeout):
                client.post("/v1/chat/completions", json=body)

    idle_after = wait_until_idle(engine_url)
    generated = engine_metric(engine_url, "vllm:generation_tokens_total") - generated_before
    # With ignore_eos a request that ran to its end would have made exactly n x max_tokens tokens;
    # an aborted one is not counted among the finished ones.
    assert generated < FULL, "the engine generated the whole answer for nobody"
    assert engine_metric(engine_url, "vllm:request_success_total") == finished_before
    print(f"engine idle {idle_after:.2f}s after the client left; {generated:.0f} tokens generated")
