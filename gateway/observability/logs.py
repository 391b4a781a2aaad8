"""Structured logs: JSON lines in production, readable console lines in development.

Every stdlib logger (uvicorn's, the gateway's own) goes through one structlog pipeline, so one
request's lines all carry the same context (request id, tenant, key prefix, model, upstream),
bound once per request with contextvars. Prompts, completions and secrets are dropped here, in
one place, whatever a caller passes.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import IO, Any, Literal

import orjson
import structlog
from structlog.typing import EventDict, Processor

LogFormat = Literal["json", "console"]

# Field names whose values are the user's text: kept out unless prompts are explicitly enabled.
CONTENT_FIELDS = frozenset({"prompt", "prompts", "messages", "completion", "content", "input", "body"})
# Field names whose values are secrets: never logged, whatever the settings say.
SECRET_FIELDS = frozenset(
    {"authorization", "api_key", "admin_key", "password", "secret", "key", "token", "cookie", "dsn"}
)
# Secrets that slip into free text (an exception message, a URL): API keys and passwords in URLs.
_SECRET_TEXT = re.compile(r"(sk-(?:tantra-)?[A-Za-z0-9]{4})[A-Za-z0-9_-]{8,}|(://[^:/@\s]+:)[^@\s]+(@)")
# Extras that other handlers or uvicorn put on records: copies of the message, unredacted.
_DUPLICATES = ("message", "color_message")
_HANDLER_NAME = "tantra-structlog"


def _scrub_text(text: str) -> str:
    return _SECRET_TEXT.sub(
        lambda m: m.group(1) + "***" if m.group(1) else m.group(2) + "***" + m.group(3), text
    )


class Redactor:
    """A structlog processor: drops content fields (unless allowed) and masks secrets."""

    def __init__(self, *, log_prompts: bool) -> None:
        self.log_prompts = log_prompts

    def __call__(self, _: Any, __: str, event: EventDict) -> EventDict:
        for duplicate in _DUPLICATES:
            event.pop(duplicate, None)
        for name in list(event):
            lowered = name.lower()
            if lowered in SECRET_FIELDS or lowered.endswith(("_secret", "_password", "_api_key")):
                event[name] = "[redacted]"
            elif lowered in CONTENT_FIELDS and not self.log_prompts:
                del event[name]
            elif isinstance(event[name], str) and ("sk-" in event[name] or "://" in event[name]):
                event[name] = _scrub_text(event[name])
        return event


def scrub_formatted(_: Any, __: str, event: EventDict) -> EventDict:
    """Masks secrets in what is formatted after the redactor ran: an exception's traceback (its
    message may quote a key or a database URL) and a stack."""
    for name in ("exception", "stack"):
        value = event.get(name)
        if isinstance(value, str) and ("sk-" in value or "://" in value):
            event[name] = _scrub_text(value)
    return event


def _orjson_dumps(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


class _WorkerFields:
    """Which of several gateway processes (gateway/workers.py) wrote a line: its index and pid."""

    def __init__(self, worker: int) -> None:
        self.fields = {"worker": worker, "pid": os.getpid()}

    def __call__(self, _: Any, __: str, event: EventDict) -> EventDict:
        event.update(self.fields)
        return event


class _Handler(logging.StreamHandler):
    """The gateway's handler; it remembers the worker index so a live reload keeps it."""

    worker: int | None = None


def _processors(redactor: Redactor, worker: int | None) -> list[Processor]:
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redactor,
    ]
    if worker is not None:
        processors.append(_WorkerFields(worker))
    return processors


def configure_logging(
    *,
    log_format: LogFormat = "json",
    level: str = "info",
    log_prompts: bool = False,
    stream: IO[str] | None = None,
    worker: int | None = None,
) -> Redactor:
    """Route every logger through structlog. Called by the app factory and the CLI, never on import;
    calling it again replaces the previous handler, so a reload can change the format or level.
    `worker`: this process's index among several gateway processes, added to every line (with the
    pid). Returns the redactor, whose `log_prompts` a live reload may flip."""
    redactor = Redactor(log_prompts=log_prompts)
    shared = _processors(redactor, worker)
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            scrub_formatted,
            renderer,
        ],
    )
    handler = _Handler(stream or sys.stderr)
    handler.worker = worker
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    # uvicorn's loggers would print twice (their handlers and ours); its access log is replaced
    # by the gateway's own access line, which knows the tokens and the tenant.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request at INFO: the engine traffic and health probes would drown the rest.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return redactor


def reset_logging() -> None:
    """Take the gateway's handler off again (tests that configured logging for a while)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    structlog.reset_defaults()


def set_level(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    logging.getLogger().setLevel(numeric if isinstance(numeric, int) else logging.INFO)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def bind_request(**fields: Any) -> None:
    """Context for every later line of this request (contextvars: per task, copied to its children)."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v is not None})


def clear_request() -> None:
    structlog.contextvars.clear_contextvars()


def apply_log_settings(log_format: str, level: str, log_prompts: bool) -> None:
    """A live reload: rebuild the pipeline on the same stream when the gateway configured it,
    else (an embedding app owns logging) change only the level."""
    root = logging.getLogger()
    ours = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if not isinstance(ours, logging.StreamHandler):
        set_level(level)
        return
    configure_logging(
        log_format=resolve_format(log_format, ours.stream),
        level=level,
        log_prompts=log_prompts,
        stream=ours.stream,
        worker=getattr(ours, "worker", None),
    )


def resolve_format(log_format: str, stream: IO[str] | None = None) -> LogFormat:
    """`auto`: console lines on a terminal, JSON otherwise (containers, files, collectors)."""
    if log_format in ("json", "console"):
        return log_format  # type: ignore[return-value]
    target = stream or sys.stderr
    return "console" if getattr(target, "isatty", lambda: False)() else "json"
