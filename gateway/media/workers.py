"""The media worker pool: what each worker builds once (its Preprocessor), and the one call a request
makes into it. Processes by default, so a decoder that crashes takes only its worker with it."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from adapters import (
    ImageCheck,
    ImageFilter,
    Job,
    MediaLimits,
    Ocr,
    Preprocessed,
    Preprocessor,
    SizeTypePolicy,
    load_check,
)
from adapters.images import FORMATS
from adapters.limits import Stop
from gateway.observability import configure_logging
from gateway.observability.logs import resolve_format


@dataclass(frozen=True)
class MediaWorkerSpec:
    """Everything a worker needs to build its own Preprocessor: plain values, so that it crosses
    into a worker process (a classifier is named by import path and loaded there)."""

    limits: MediaLimits
    ocr_enabled: bool = True
    ocr_lang: str = "eng"
    ocr_timeout_s: float = 30.0
    image_formats: tuple[str, ...] = FORMATS
    image_filter: str | None = None
    log_format: str = "auto"
    log_level: str = "info"
    log_prompts: bool = False

    def preprocessor(self) -> Preprocessor:
        checks: list[ImageCheck] = [SizeTypePolicy(self.image_formats)]
        if self.image_filter:
            checks.append(load_check(self.image_filter))
        ocr = Ocr(lang=self.ocr_lang, timeout_s=self.ocr_timeout_s)
        if not self.ocr_enabled:
            ocr.binary = None
        return Preprocessor(self.limits, ocr, ImageFilter(checks))


_worker: Preprocessor | None = None


def init_worker(spec: MediaWorkerSpec) -> None:
    """A worker process's start: its logs go the gateway's way, its Preprocessor is built once."""
    global _worker
    configure_logging(
        log_format=resolve_format(spec.log_format), level=spec.log_level, log_prompts=spec.log_prompts
    )
    _worker = spec.preprocessor()


def run_in_worker(jobs: list[Job], log_context: dict[str, Any], stop: Stop | None = None) -> Preprocessed:
    """One request's media in a worker process, logged with the request's id and tenant."""
    assert _worker is not None, "init_worker did not run"
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**log_context)
    return _worker.run(jobs, stop)


def media_executor(spec: MediaWorkerSpec, kind: str, workers: int) -> Executor:
    """Processes by default: pypdf is pure Python, and in a thread of the gateway's own process it
    competes with the event loop for the GIL (on a loaded machine a stream then stalls for a
    second or more); in a process it cannot. `forkserver`: never fork the threaded gateway."""
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tantra-media")
    context = multiprocessing.get_context("forkserver")
    # The server imports the adapters once; each worker forked from it then starts in milliseconds.
    context.set_forkserver_preload(["gateway.media.workers"])
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=init_worker,
        initargs=(spec,),
    )
