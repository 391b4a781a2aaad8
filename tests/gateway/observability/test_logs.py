"""Structured logs on their own: JSON lines with the request's context, secrets and prompts kept out."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from gateway.observability import bind_request, configure_logging, get_logger
from gateway.observability.logs import clear_request, reset_logging


@pytest.fixture
def sink() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(log_format="json", level="debug", stream=stream)
    yield stream
    clear_request()
    reset_logging()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    """Only this test's loggers: a library's debug line from a connection an earlier test left open
    (aiosqlite's worker thread) lands in the same root handler."""
    parsed = [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in parsed if str(line.get("logger", "")).startswith("tantra.")]


def test_json_lines_carry_the_request_context(sink: io.StringIO) -> None:
    bind_request(request_id="req-1", tenant="t1", key_prefix="sk-tantra-AbCd", model="m", upstream="e")
    get_logger("tantra.test").info("hello", status=200)
    logging.getLogger("tantra.stdlib").warning("from %s", "stdlib")
    first, second = lines(sink)
    for line in (first, second):
        assert line["request_id"] == "req-1"
        assert (line["tenant"], line["key_prefix"], line["model"], line["upstream"]) == (
            "t1",
            "sk-tantra-AbCd",
            "m",
            "e",
        )
        assert "timestamp" in line and "level" in line
    assert (first["event"], first["status"], first["logger"]) == ("hello", 200, "tantra.test")
    assert (second["event"], second["level"]) == ("from stdlib", "warning")


def test_secrets_and_prompts_never_appear(sink: io.StringIO) -> None:
    secret = "sk-tantra-" + "x" * 40
    get_logger("tantra.test").info(
        "call",
        authorization=f"Bearer {secret}",
        api_key=secret,
        messages=[{"role": "user", "content": "my secret plan"}],
        prompt="my secret plan",
        note=f"key {secret} leaked in text, db postgresql://u:hunter2@db/x",
    )
    logging.getLogger("tantra.stdlib").error("failed for %s", secret)
    text = sink.getvalue()
    assert secret not in text and "hunter2" not in text and "my secret plan" not in text
    call = lines(sink)[0]
    assert call["authorization"] == call["api_key"] == "[redacted]"
    assert "messages" not in call and "prompt" not in call
    assert "sk-tantra-xxxx***" in str(call["note"])


def test_prompts_are_logged_only_when_enabled() -> None:
    stream = io.StringIO()
    configure_logging(log_format="json", level="info", log_prompts=True, stream=stream)
    try:
        get_logger("tantra.test").info("call", prompt="visible on purpose", api_key="sk-secret-value-123456")
    finally:
        reset_logging()
    line = lines(stream)[0]
    assert line["prompt"] == "visible on purpose"
    assert line["api_key"] == "[redacted]"


def test_console_format_is_readable() -> None:
    stream = io.StringIO()
    configure_logging(log_format="console", level="info", stream=stream)
    try:
        get_logger("tantra.test").info("started", port=8000)
    finally:
        reset_logging()
    text = stream.getvalue()
    assert "started" in text and "port=8000" in text
    assert not text.lstrip().startswith("{")
