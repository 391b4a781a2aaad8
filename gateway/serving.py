"""One gateway process serving its listening sockets: uvicorn with the drain on SIGTERM.

`python -m gateway` calls `serve` with the sockets it binds itself (one process), or each worker
process of gateway/workers.py calls it with the sockets its supervisor bound and handed down.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import socket
from types import FrameType

import uvicorn

from gateway.app import create_app
from gateway.http.drain import Drain
from gateway.observability import configure_logging, multiprocess
from gateway.observability.logs import resolve_format
from gateway.observability.metrics import GatewayMetrics
from gateway.settings.schema import Settings


def bind(settings: Settings) -> list[socket.socket]:
    """The API port's listening socket, then the operator port's when there is one: the listener
    gate (gateway/http/listeners.py) tells the two apart by the port a request arrived on."""
    sockets = [_listener(settings.host, settings.port).bind_socket()]
    if settings.operator_port:
        sockets.append(_listener(settings.host, settings.operator_port).bind_socket())
    return sockets


def serve(
    settings: Settings,
    sockets: list[socket.socket] | None = None,
    *,
    worker: int | None = None,
    metrics_dir: str | None = None,
) -> None:
    """Build the app from `settings` and serve `sockets` (bound here when None) until a signal.
    `worker` is this process's index among several (gateway/workers.py); log lines then carry it,
    and its metrics go to `metrics_dir`, shared with the other workers."""
    configure_logging(
        log_format=resolve_format(settings.log_format),
        level=settings.log_level,
        log_prompts=settings.log_prompts,
        worker=worker,
    )
    metrics = None
    if metrics_dir is not None:
        multiprocess.enable(metrics_dir)
        metrics = GatewayMetrics(multiprocess_dir=metrics_dir)
    app = create_app(settings, metrics=metrics)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Logging is structlog's (configured above); the gateway writes its own access line.
        log_config=None,
        access_log=False,
        # The gateway's own x-request-id and error envelope replace uvicorn's extras.
        server_header=False,
        # The drain has already waited for in-flight requests; this bounds what is left after it.
        timeout_graceful_shutdown=5,
    )
    server = DrainingServer(config, app.state.components.drain, settings.drain_grace_s)
    server.run(sockets=sockets if sockets is not None else bind(settings))


def _listener(host: str, port: int) -> uvicorn.Config:
    """uvicorn's socket binding (IPv4 or IPv6, SO_REUSEADDR, inheritable); only the socket is used."""
    return uvicorn.Config("gateway.app:create_app", host=host, port=port, log_config=None)


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM drains before exiting: uvicorn alone would close
    its listening socket at once (new clients get a refused connection, not a 503) and give
    in-flight streams only its own timeout. A second signal, or SIGINT, exits as uvicorn does."""

    def __init__(self, config: uvicorn.Config, drain: Drain, grace_s: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._grace_s = grace_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._drain.draining or not self.started:
            super().handle_exit(sig, frame)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().handle_exit(sig, frame)
            return
        exit_now = functools.partial(super().handle_exit, sig, frame)
        loop.call_soon_threadsafe(self._drain.begin, self._grace_s, exit_now)
