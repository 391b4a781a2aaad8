"""A multipart/form-data body the gateway sends itself: to an upstream's speech-to-text endpoint,
and the realtime session's own transcriptions through the loopback."""

from __future__ import annotations

from collections.abc import Sequence


def multipart_body(
    boundary: str,
    fields: Sequence[tuple[str, str]],
    data: bytes,
    *,
    filename: str = "audio",
    content_type: str = "application/octet-stream",
) -> bytes:
    """The fields (a name may repeat, as `include[]` does), then the `file` part holding `data`."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    ]
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    )
    return b"".join(parts) + head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
