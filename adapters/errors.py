"""The one error adapters raise: which part failed, why, and the status a client should get.

Adapters know nothing of HTTP routes; the gateway turns a MediaError into OpenAI's envelope.
"""

from __future__ import annotations


class MediaError(Exception):
    """A content part that cannot be used. `param` names it the way OpenAI does
    (`messages[0].content[1].image_url`); `status` is 400, or 413 for sizes in bytes."""

    def __init__(
        self, param: str | None, message: str, *, code: str = "invalid_content_part", status: int = 400
    ):
        super().__init__(message)
        self.param = param
        self.message = message
        self.code = code
        self.status = status

    def __reduce__(self) -> tuple[object, ...]:
        # Raised in a worker process, it must arrive whole in the gateway's (the default pickling
        # would call __init__ with the message alone).
        return (_rebuild, (self.param, self.message, self.code, self.status))


def _rebuild(param: str | None, message: str, code: str, status: int) -> MediaError:
    return MediaError(param, message, code=code, status=status)
