"""A worker-process pool started on first use, for the optional torch models (diarization, audio
analysis): the gateway's process never imports them, and a pool whose worker died is dropped so
the next call starts a fresh one."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from adapters.stt.transcriber import lower_priority

__all__ = ["LazyPool"]

T = TypeVar("T")


class LazyPool:
    def __init__(self, workers: int, nice: int) -> None:
        self._workers = workers
        self._nice = nice
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, job: Callable[[], T]) -> T:
        """`job` in a worker; BrokenProcessPool (the pool already dropped) when a worker died on it."""
        pool = self._pool
        if pool is None:
            pool = self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=lower_priority,
                initargs=(self._nice,),
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, job)
        except BrokenProcessPool:
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
