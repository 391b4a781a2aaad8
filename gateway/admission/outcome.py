"""How a request ended: one type for every endpoint, and the status its ledger row records."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    COMPLETED = "completed"
    # The client left before the answer was whole (nginx's 499).
    CLIENT_CLOSED = "client_closed"
    # Refused before any work: a 4xx, a limit, a missing model.
    REJECTED = "rejected"
    # The gateway or an upstream failed; for a stream, after its 200 was sent.
    FAILED = "failed"

    @property
    def status(self) -> int:
        """The status recorded when the request gives none of its own: a stream that failed
        after its 200 is recorded as the server error it was, on every endpoint alike."""
        return _STATUS[self]


_STATUS = {
    Outcome.COMPLETED: 200,
    Outcome.CLIENT_CLOSED: 499,
    Outcome.REJECTED: 400,
    Outcome.FAILED: 500,
}
