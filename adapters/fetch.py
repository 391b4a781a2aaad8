"""Fetching http(s) media from an allow-list only, with a size cap and a deadline.

A URL is fetched only when an operator allowed its host or prefix: the gateway must not become a
way to reach internal addresses. Redirects are followed by hand so each hop is checked again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from urllib.parse import urljoin, urlsplit

import httpx

from adapters.errors import MediaError
from adapters.sources import Blob

_MAX_REDIRECTS = 3


class UrlPolicy:
    """Which URLs may be fetched. Entries are host names (`images.example.com`), wildcard hosts
    (`*.example.com`) or URL prefixes (`https://cdn.example.com/public/`). Empty: none."""

    def __init__(self, entries: Sequence[str]) -> None:
        self._prefixes = tuple(entry for entry in entries if "://" in entry)
        hosts = [entry.lower() for entry in entries if "://" not in entry]
        self._hosts = frozenset(host for host in hosts if not host.startswith("*."))
        self._suffixes = tuple(host[1:] for host in hosts if host.startswith("*."))

    def allows(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (a bad port raises here, not at fetch time)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if any(url.startswith(prefix) for prefix in self._prefixes):
            return True
        host = parts.hostname.lower()
        return host in self._hosts or host.endswith(self._suffixes)


class UrlFetcher:
    """Fetches allowed URLs with a shared client; a body past `max_bytes` is cut off at once (413)."""

    def __init__(
        self, policy: UrlPolicy, client: httpx.AsyncClient, *, timeout_s: float, max_bytes: int
    ) -> None:
        self.policy = policy
        self._client = client
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes

    async def fetch(self, url: str, param: str) -> Blob:
        if not self.policy.allows(url):
            raise MediaError(
                param,
                "This URL is not on the gateway's allow-list for media; send the content as a "
                "base64 `data:` URL instead.",
                code="url_not_allowed",
            )
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._follow(url, param)
        except TimeoutError:
            raise MediaError(
                param, f"Fetching this URL took longer than {self._timeout_s:g} s.", code="url_fetch_failed"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise MediaError(
                param, f"This URL could not be fetched ({type(exc).__name__}).", code="url_fetch_failed"
            ) from None

    async def _follow(self, url: str, param: str) -> Blob:
        for _ in range(_MAX_REDIRECTS + 1):
            async with self._client.stream("GET", url, follow_redirects=False) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    if not self.policy.allows(url):
                        raise MediaError(
                            param, "This URL redirects outside the allow-list.", code="url_not_allowed"
                        )
                    continue
                if response.status_code != 200:
                    raise MediaError(
                        param,
                        f"Fetching this URL answered status {response.status_code}.",
                        code="url_fetch_failed",
                    )
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
                    raise self._too_large(param)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise self._too_large(param)
                    chunks.append(chunk)
                mime = response.headers.get("content-type", "").split(";")[0].strip().lower() or None
                name = urlsplit(url).path.rsplit("/", 1)[-1] or None
                return Blob(b"".join(chunks), mime, name)
        raise MediaError(param, "This URL redirects too many times.", code="url_fetch_failed")

    def _too_large(self, param: str) -> MediaError:
        return MediaError(
            param,
            f"The media at this URL is larger than {self._max_bytes} bytes.",
            code="media_too_large",
            status=413,
        )
