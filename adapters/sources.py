"""Where a part's bytes come from: a `data:` URL (decoded here) or an http(s) URL (fetched by fetch.py)."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from adapters.errors import MediaError
from adapters.limits import Tally

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*?),", re.IGNORECASE)


@dataclass(frozen=True)
class Blob:
    """A part's decoded bytes and the media type its sender claimed (checked against the bytes later)."""

    data: bytes
    mime: str | None
    name: str | None = None


def is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


def decode_data_url(url: str, param: str, tally: Tally) -> Blob:
    """The bytes of a `data:[<mime>][;base64],<payload>` URL, sized before they are decoded."""
    match = _DATA_URL.match(url)
    if match is None:
        raise MediaError(param, "This data URL is malformed; expected `data:<media type>;base64,<data>`.")
    payload = url[match.end() :]
    is_base64 = ";base64" in (match.group("params") or "").lower()
    tally.add_bytes(param, math.floor(len(payload) * 3 / 4) if is_base64 else len(payload))
    data = decode_base64(payload, param) if is_base64 else unquote_to_bytes(payload)
    mime = match.group("mime")
    return Blob(data, mime.lower() if mime else None)


def decode_base64(payload: str, param: str) -> bytes:
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MediaError(param, "This part's base64 data cannot be decoded.") from None
