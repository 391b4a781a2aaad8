"""Large bodies are screened in worker processes before the event loop parses them.

Parsing is the one step whose cost the body's size alone does not bound: 15 MiB of nested empty
arrays in a field nobody reads costs seconds of CPU, and orjson holds the GIL throughout, so a
thread would stall every stream of the replica as surely as the loop itself. A body above the
threshold is parsed in a worker process first, which sends back only a verdict (its nodes, or
orjson's error); the loop parses only bodies whose nodes are within the limit, so its own parse is
bounded by the limit, not by the body. Bodies under the threshold never wait on the pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import structlog

from gateway.errors import APIError, InvalidRequest
from gateway.json_nodes import Verdict, count_nodes, screen, start_worker

_log = structlog.get_logger(__name__)

_BUSY = "The gateway is busy screening large request bodies; try again shortly."
# Bodies that may wait for a worker, per worker; past that a large body gets 503 at once.
QUEUE_PER_WORKER = 8


class ScreenBusy(APIError):
    """The screening workers are all taken (or too slow): a large body is shed, never parsed here."""

    status = 503
    type = "server_error"
    code = "body_screen_busy"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"retry-after": "1"})


class BodyScreen:
    """A small pool of worker processes, started on first use, and the bounded wait for one."""

    def __init__(self, workers: int, *, timeout_s: float, nice: int = 10) -> None:
        self._workers = workers
        self._timeout_s = timeout_s
        self._nice = nice
        self._slots = asyncio.Semaphore(workers)
        self._waiting = 0
        self._pool: ProcessPoolExecutor | None = None
        self._starting = asyncio.Lock()

    async def check(self, body: bytes, max_nodes: int) -> None:
        """400 when `body` is not JSON or holds more than `max_nodes` values; 503 when no worker
        is free within the timeout (or too many large bodies already wait for one)."""
        verdict = await self._screened(body, max_nodes)
        if verdict.invalid is not None:
            raise not_json()
        if verdict.nodes > max_nodes:
            raise InvalidRequest(
                f"The request body holds too many JSON values: expected at most {max_nodes} "
                "(objects, arrays, strings, numbers, booleans and nulls, at any depth).",
                code="too_many_json_values",
            )

    async def _screened(self, body: bytes, max_nodes: int) -> Verdict:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._acquire()
                work = await self._submit(body, max_nodes)
                # The slot frees when the worker is done, not when this request stops waiting:
                # a client that leaves (or times out) cannot queue more work than there are workers.
                work.add_done_callback(lambda _: loop.call_soon_threadsafe(self._slots.release))
                return await asyncio.wrap_future(work)
        except TimeoutError:
            raise ScreenBusy(_BUSY) from None
        except BrokenProcessPool:
            _log.error("body_screen_worker_died")
            self._replace()
            raise ScreenBusy("A worker screening large request bodies stopped; try again.") from None

    async def _acquire(self) -> None:
        if self._slots.locked() and self._waiting >= self._workers * QUEUE_PER_WORKER:
            raise ScreenBusy(_BUSY)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1

    async def _submit(self, body: bytes, max_nodes: int) -> Future[Verdict]:
        try:
            return (self._pool or await self._started()).submit(screen, body, max_nodes)
        except BaseException:
            self._slots.release()
            raise

    async def _started(self) -> ProcessPoolExecutor:
        """The pool, started off the loop: the forkserver's start and the workers' forks take a
        second or so (the first large body waits for them; the replica's other requests do not)."""
        async with self._starting:
            if self._pool is not None:
                return self._pool
            return await asyncio.to_thread(self._start)

    def _start(self) -> ProcessPoolExecutor:
        # forkserver: the threaded gateway is never forked; a worker imports orjson alone.
        pool = ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=start_worker,
            initargs=(self._nice,),
        )
        # A worker is forked per task submitted while none is idle: start them all now.
        for _ in range(self._workers):
            pool.submit(count_nodes, None, 0)
        # Set here, not by the waiter: a request that times out meanwhile does not leak the pool.
        self._pool = pool
        return pool

    def _replace(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def not_json() -> InvalidRequest:
    """Today's 400 for a body that is not JSON, whether the loop or a worker found out."""
    return InvalidRequest(
        "We could not parse the JSON body of your request. The API expects a JSON object; "
        "check that the body is valid JSON and that Content-Type is application/json."
    )
