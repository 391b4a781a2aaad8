"""The async speech-to-text service: whisper.cpp in worker processes, segments streamed back.

Used by /v1/audio/transcriptions and /translations, by `input_audio` parts in chat, and by the
realtime endpoint. Each worker process loads the model once, lowers its CPU priority (`nice`) so
that the gateway's event loop and vLLM keep their latency while it works, and runs one
transcription at a time with a capped number of whisper.cpp threads; at most `workers`
transcriptions run at once and the rest wait (up to `queue_timeout_s`) for a free worker.

A caller that stops listening (a client that left, a cancelled realtime response) aborts its
transcription through whisper.cpp's abort callback; the worker is free again within moments.
A worker that dies (a crash, the OOM killer) fails only its own request and is replaced.

Client files are decoded (FFmpeg, through PyAV) in a separate pool of decoder processes, never in
the caller's process: a decoder crash on a hostile file costs one request (400) and one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from adapters.errors import MediaError
from adapters.stt.audio import SAMPLE_RATE, DecodedAudio, decode_audio, has_audio
from adapters.stt.noise import suppress_noise
from adapters.stt.whisper import Segment, TranscribeOptions, Transcript, WhisperModel, check_language

_log = structlog.stdlib.get_logger("tantra.speech")


class TranscriberBusy(Exception):
    """Every worker stayed busy for the whole queue timeout."""


@dataclass(frozen=True)
class WhisperWorkerSpec:
    model_path: Path
    threads: int = 2
    nice: int = 10
    # Spectral gating's strength before whisper.cpp hears the audio (noise.py); None: off.
    noise_suppression: float | None = None


class Transcriber:
    """`await transcribe(audio)` for the whole transcript, or `async for item in stream(audio)` for
    each Segment as whisper.cpp finishes it and the Transcript last. `audio` is encoded bytes (any
    format PyAV reads), a DecodedAudio, or 16 kHz mono float32 samples."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        workers: int = 1,
        threads: int = 2,
        nice: int = 10,
        queue_timeout_s: float = 30.0,
        max_seconds: float | None = None,
        abort_grace_s: float = 2.0,
        noise_suppression: float | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.abort_grace_s = abort_grace_s
        self.max_seconds = max_seconds
        self._spec = WhisperWorkerSpec(self.model_path, threads, nice, noise_suppression)
        self._size = workers
        self._queue_timeout_s = queue_timeout_s
        self._idle: asyncio.Queue[_Worker] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._all: set[_Worker] = set()
        self._drains: set[asyncio.Task[None]] = set()
        # Blocking pipe reads and writes (a long recording is megabytes of samples) happen here.
        self._pipes = ThreadPoolExecutor(max_workers=2 * workers + 2, thread_name_prefix="tantra-speech")
        # FFmpeg decodes client files in these processes, never in the gateway's: a decoder that
        # crashes on a hostile file takes one of them with it (replaced), not the gateway.
        self._decoders: ProcessPoolExecutor | None = None

    @property
    def available(self) -> bool:
        return self.model_path.is_file()

    async def start(self) -> None:
        """Start the workers and load the model in each (else done on first use)."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def decode(
        self, data: bytes, *, param: str | None = None, max_seconds: float | None = None
    ) -> DecodedAudio:
        """Encoded audio to 16 kHz mono float32, in a decoder process."""
        limit = self.max_seconds if max_seconds is None else max_seconds
        decoded: DecodedAudio = await self._in_decoder(
            functools.partial(decode_audio, data, param=param, max_seconds=limit), param
        )
        return decoded

    async def has_audio(self, data: bytes) -> bool:
        """Whether `data` has an audio track (a video's soundtrack), probed in a decoder process."""
        found: bool = await self._in_decoder(functools.partial(has_audio, data), None)
        return found

    async def _in_decoder(self, call: Callable[[], Any], param: str | None) -> Any:
        """`call` in a decoder process; a process that dies on the file is replaced, the request
        gets a 400 (the file is the client's)."""
        pool = self._decoders
        if pool is None:
            pool = self._decoders = _decoder_pool(self._size, self._spec.nice)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, call)
        except BrokenProcessPool:
            _log.error("audio_decoder_died")
            if self._decoders is pool:
                self._decoders = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise MediaError(
                param, "This audio crashed its decoder and could not be read.", code="invalid_audio"
            ) from None

    async def transcribe(
        self,
        audio: bytes | DecodedAudio | np.ndarray,
        options: TranscribeOptions | None = None,
        **fields: Any,
    ) -> Transcript:
        last: Segment | Transcript | None = None
        async for last in self.stream(audio, options, **fields):  # noqa: B007
            pass
        assert isinstance(last, Transcript)
        return last

    async def stream(
        self,
        audio: bytes | DecodedAudio | np.ndarray,
        options: TranscribeOptions | None = None,
        **fields: Any,
    ) -> AsyncGenerator[Segment | Transcript, None]:
        """Each Segment as it is produced, then the Transcript. `fields` are TranscribeOptions'."""
        options = _checked(options or TranscribeOptions(**fields))
        samples = await self._samples(audio)
        worker: _Worker | None = await self._acquire()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        finished = False
        try:
            assert worker is not None
            await loop.run_in_executor(self._pipes, worker.conn.send, (samples, options))
            while True:
                kind, payload = await self._next(worker)
                if kind == "segment":
                    yield payload
                    continue
                finished = True
                if kind == "error":
                    raise payload
                _log.info(
                    "transcribed",
                    audio_seconds=payload.duration_s,
                    seconds=round(time.perf_counter() - started, 3),
                    segments=len(payload.segments),
                )
                yield payload
                return
        except _WorkerGone:
            finished = True
            assert worker is not None
            self._replace(worker)
            worker = None
            raise MediaError(
                None,
                "The speech worker stopped while transcribing this audio.",
                code="transcription_failed",
                status=500,
            ) from None
        finally:
            if worker is not None:
                self._hand_back(worker, finished)

    async def close(self) -> None:
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        for task in list(self._drains):
            task.cancel()
        workers = list(self._all)
        self._all.clear()
        await asyncio.to_thread(_stop_all, workers)
        self._pipes.shutdown(wait=False, cancel_futures=True)
        if self._decoders is not None:
            self._decoders.shutdown(wait=False, cancel_futures=True)

    async def _samples(self, audio: bytes | DecodedAudio | np.ndarray) -> np.ndarray:
        """16 kHz mono float32 samples (encoded bytes decoded first), refused when over `max_seconds`."""
        if isinstance(audio, bytes | bytearray | memoryview):
            audio = await self.decode(bytes(audio))
        samples = audio.samples if isinstance(audio, DecodedAudio) else np.asarray(audio, dtype=np.float32)
        seconds = len(samples) / SAMPLE_RATE
        if self.max_seconds is not None and seconds > self.max_seconds + 0.1:
            raise MediaError(
                None,
                f"This audio lasts {seconds:.1f} s; at most {self.max_seconds:g} s are accepted.",
                code="audio_too_long",
            )
        return samples

    def _hand_back(self, worker: _Worker, finished: bool) -> None:
        """A worker whose transcription ended goes back to the idle ones; one whose caller left
        mid-way is told to stop whisper.cpp and is taken back once it answers (`_drain`)."""
        if finished:
            self._release(worker)
            return
        worker.abort.set()
        drain = asyncio.ensure_future(self._drain(worker))
        self._drains.add(drain)
        drain.add_done_callback(self._drains.discard)

    async def _start(self) -> None:
        self._idle = asyncio.Queue()
        started = await asyncio.gather(
            *(asyncio.to_thread(_Worker.spawn, self._spec) for _ in range(self._size)), return_exceptions=True
        )
        failures = [result for result in started if isinstance(result, BaseException)]
        for result in started:
            if isinstance(result, _Worker):
                self._all.add(result)
                self._idle.put_nowait(result)
        if failures:
            await asyncio.to_thread(_stop_all, list(self._all))
            self._all.clear()
            self._starting = None
            raise failures[0]

    async def _acquire(self) -> _Worker:
        await self.start()
        assert self._idle is not None
        try:
            async with asyncio.timeout(self._queue_timeout_s):
                return await self._idle.get()
        except TimeoutError:
            raise TranscriberBusy(
                f"All {self._size} speech workers stayed busy for {self._queue_timeout_s:g} s."
            ) from None

    def _release(self, worker: _Worker) -> None:
        if worker in self._all and self._idle is not None:
            worker.abort.clear()
            self._idle.put_nowait(worker)

    async def _next(self, worker: _Worker) -> tuple[str, Any]:
        """The worker's next message. A read cut short by cancellation stays pending on the worker
        and the next caller (the drain) takes its result: two threads never read one pipe."""
        if worker.pending is None:
            worker.pending = asyncio.get_running_loop().run_in_executor(self._pipes, worker.receive)
        message = await asyncio.shield(worker.pending)
        worker.pending = None
        return message

    async def _drain(self, worker: _Worker) -> None:
        """After an abort: whisper.cpp looks at its abort flag only between windows and decoder
        runs, so a worker that has not stopped within `abort_grace_s` is killed and replaced."""
        try:
            async with asyncio.timeout(self.abort_grace_s):
                while True:
                    kind, _ = await self._next(worker)
                    if kind != "segment":
                        break
        except (_WorkerGone, TimeoutError):
            self._replace(worker)
            return
        self._release(worker)

    def _replace(self, worker: _Worker) -> None:
        """Stop a dead (or suspect) worker and start another in its place, in the background."""
        self._all.discard(worker)
        if worker.process.is_alive():
            worker.process.kill()
            _log.warning("speech_worker_killed", reason="did not stop after an abort")
        else:
            _log.error("speech_worker_died", exitcode=worker.process.exitcode)

        async def respawn() -> None:
            await asyncio.to_thread(worker.stop)
            try:
                fresh = await asyncio.to_thread(_Worker.spawn, self._spec)
            except Exception as exc:  # the next request tries the whole pool again
                _log.error("speech_worker_respawn_failed", error=repr(exc))
                return
            self._all.add(fresh)
            self._release(fresh)

        task = asyncio.ensure_future(respawn())
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)


class _WorkerGone(Exception):
    pass


class _Worker:
    def __init__(self, process: Any, conn: Connection, abort: Event) -> None:
        self.process = process
        self.conn = conn
        self.abort = abort
        self.pending: asyncio.Future[tuple[str, Any]] | None = None

    @classmethod
    def spawn(cls, spec: WhisperWorkerSpec) -> _Worker:
        """Start a worker and wait until its model is loaded (blocking: called in a thread)."""
        # forkserver: the threaded gateway is never forked; each worker starts from a clean process.
        context = multiprocessing.get_context("forkserver")
        parent, child = context.Pipe()
        abort = context.Event()
        process = context.Process(
            target=_serve, args=(child, abort, spec), name="tantra-speech-worker", daemon=True
        )
        process.start()
        child.close()
        worker = cls(process, parent, abort)
        try:
            kind, payload = worker.receive()
        except _WorkerGone:
            worker.stop()
            raise RuntimeError(f"the speech worker exited while loading {spec.model_path}") from None
        if kind != "ready":
            worker.stop()
            raise payload
        return worker

    def receive(self) -> tuple[str, Any]:
        try:
            message: tuple[str, Any] = self.conn.recv()
        except (EOFError, OSError):
            raise _WorkerGone from None
        return message

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self.conn.close()


def _decoder_pool(workers: int, nice: int) -> ProcessPoolExecutor:
    """Processes started from the forkserver (the threaded gateway is never forked), at low priority."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=lower_priority,
        initargs=(nice,),
    )


def lower_priority(nice: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway decides when its workers stop
    with contextlib.suppress(OSError):
        os.nice(nice)


def _checked(options: TranscribeOptions) -> TranscribeOptions:
    """The options with their language checked (and normalised) here, before a worker is taken."""
    return TranscribeOptions(
        language=check_language(options.language),
        prompt=options.prompt,
        temperature=options.temperature,
        translate=options.translate,
        word_timestamps=options.word_timestamps,
    )


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()


def _serve(conn: Connection, abort: Event, spec: WhisperWorkerSpec) -> None:
    """A worker process: load the model, then transcribe one job at a time until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway decides when its workers stop
    with contextlib.suppress(OSError):
        os.nice(spec.nice)
    try:
        model = WhisperModel(spec.model_path, threads=spec.threads)
    except Exception as exc:
        conn.send(("error", RuntimeError(f"the whisper model {spec.model_path} could not be loaded: {exc}")))
        return
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            model.close()
            return
        samples, options = job
        try:
            if spec.noise_suppression:
                samples = suppress_noise(samples, SAMPLE_RATE, spec.noise_suppression)
            transcript = model.transcribe(
                samples,
                options,
                on_segment=lambda segment: conn.send(("segment", segment)),
                should_abort=abort.is_set,
            )
            conn.send(("done", transcript))
        except MediaError as exc:
            conn.send(("error", exc))
        except Exception as exc:
            conn.send(
                (
                    "error",
                    MediaError(
                        None,
                        f"The audio could not be transcribed ({type(exc).__name__}).",
                        code="transcription_failed",
                        status=500,
                    ),
                )
            )
