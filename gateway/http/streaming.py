"""One base for the answers the gateway writes to the socket itself (relayed SSE, spoken audio):
the status line, a body sent piece by piece while the client is watched, and one callback told how
it ended."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from starlette.background import BackgroundTask, BackgroundTasks
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.admission.outcome import Outcome
from gateway.http.disconnect import while_connected


class RawStream(Response):
    """A Response subclass only so that FastAPI hands it to the server untouched; subclasses write
    the body in `pump`. A client that leaves cancels `pump`; `on_close` then hears CLIENT_CLOSED.
    `finish` runs last, whatever happened."""

    def __init__(
        self,
        base_headers: Iterable[tuple[bytes, bytes]],
        headers: Mapping[str, str] | None,
        on_close: Callable[[Outcome], None] | None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            *base_headers,
            *((name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()),
        ]
        self._on_close = on_close
        # Work the answer does not wait for, run once its body is sent (`after_body`).
        self.after: list[Callable[[], Awaitable[None]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = Outcome.CLIENT_CLOSED
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            outcome = await while_connected(receive, self.pump(send)) or outcome
        finally:
            await self.finish()
            if self._on_close is not None:
                self._on_close(outcome)
            for work in self.after:
                await work()

    async def pump(self, send: Send) -> Outcome:
        raise NotImplementedError

    async def finish(self) -> None:
        """Release what the body was read from (an upstream connection, a generator)."""


def after_body(response: Response, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` once the response's body is sent, so the client never waits for it (a stream's
    first byte least of all): a `RawStream`'s after its `finish`, another response's as Starlette's
    background task, after any it already has. `work` handles its own errors."""
    if isinstance(response, RawStream):
        response.after.append(work)
        return
    task = BackgroundTask(work)
    held = response.background
    response.background = task if held is None else BackgroundTasks([held, task])


async def send_chunk(send: Send, body: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more})
