"""Fetching http(s) media from an allow-list only, with a size cap and a deadline.

A URL is fetched only when an operator allowed it, and only from a public address: the gateway
must not become a way to reach internal services. URLs are parsed (never compared as strings):
scheme, host and port must match an entry exactly, a path prefix only on a segment boundary, and
userinfo is refused. The host is resolved once, every address checked (adapters/addresses.py),
and the connection made to the address that was checked, the URL's host kept for `Host` and TLS
(no second lookup an attacker's DNS could answer differently). Redirects are followed by hand,
each hop checked the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from adapters.addresses import AddressPolicy, IPAddress, Resolver, system_resolver
from adapters.errors import MediaError
from adapters.sources import Blob

_MAX_REDIRECTS = 3
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """A URL as the fetcher will use it: parsed once, compared and connected to by these parts."""

    url: httpx.URL
    scheme: str
    host: str  # ASCII (IDNA), lower case, without a trailing dot
    port: int
    path: str  # decoded, as the server will see it

    @property
    def is_ip(self) -> bool:
        return ":" in self.host or self.host.replace(".", "").isdigit()


def parse_target(url: str) -> Target | None:
    """None for anything but a plain http(s) URL: userinfo, backslashes (parsers disagree on
    them) and `.`/`..` segments (servers resolve them, also percent-encoded) are refused."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.raw_host or parsed.userinfo or "\\" in url:
        return None
    if any(segment in (".", "..") for segment in parsed.path.split("/")):
        return None
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    return Target(parsed, parsed.scheme, host, port, parsed.path)


class UrlPolicy:
    """Which URLs may be fetched. Entries are host names (`images.example.com`, on the scheme's
    default port; `images.example.com:8443` for another), wildcard hosts (`*.example.com`, its
    subdomains, not itself) or URL prefixes (`https://cdn.example.com/public/`: that scheme, host
    and port, paths under `/public`). Empty: none. `allowed_networks`: CIDRs that may be connected
    to although not public (by default only public addresses are)."""

    def __init__(self, entries: Sequence[str], allowed_networks: Sequence[str] = ()) -> None:
        self.addresses = AddressPolicy(allowed_networks)
        self._prefixes: list[Target] = []
        self._hosts: set[tuple[str, int | None]] = set()
        self._suffixes: list[tuple[str, int | None]] = []
        for entry in entries:
            self._add(entry.strip())

    def _add(self, entry: str) -> None:
        if "://" in entry:
            target = parse_target(entry)
            if target is None:
                raise ValueError(f"{entry!r} is not a plain http(s) URL prefix")
            self._prefixes.append(target)
            return
        wildcard = entry.startswith("*.")
        target = parse_target("http://" + entry.removeprefix("*."))
        if target is None or target.path not in ("", "/"):
            raise ValueError(f"{entry!r} is not a host name, `host:port` or `*.domain`")
        port = target.port if target.url.port is not None else None
        if wildcard:
            self._suffixes.append(("." + target.host, port))
        else:
            self._hosts.add((target.host, port))

    def target(self, url: str) -> Target | None:
        """The parsed URL when an entry allows it, else None (no DNS here: see `addresses`)."""
        target = parse_target(url)
        if target is None:
            return None
        for prefix in self._prefixes:
            if (prefix.scheme, prefix.host, prefix.port) == (target.scheme, target.host, target.port):
                base = prefix.path.rstrip("/")
                if not base or target.path == base or target.path.startswith(base + "/"):
                    return target
        port = None if target.port == _DEFAULT_PORTS[target.scheme] else target.port
        if (target.host, port) in self._hosts:
            return target
        if any(target.host.endswith(suffix) and port == p for suffix, p in self._suffixes):
            return target
        return None

    def allows(self, url: str) -> bool:
        return self.target(url) is not None


class UrlFetcher:
    """Fetches allowed URLs with a shared client; a body past `max_bytes` is cut off at once (413)."""

    def __init__(
        self,
        policy: UrlPolicy,
        client: httpx.AsyncClient,
        *,
        timeout_s: float,
        max_bytes: int,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.policy = policy
        self._client = client
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._resolve = resolver

    async def fetch(self, url: str, param: str) -> Blob:
        target = self.policy.target(url)
        if target is None:
            raise MediaError(
                param,
                "This URL is not on the gateway's allow-list for media; send the content as a "
                "base64 `data:` URL instead.",
                code="url_not_allowed",
            )
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._follow(target, param)
        except TimeoutError:
            raise MediaError(
                param, f"Fetching this URL took longer than {self._timeout_s:g} s.", code="url_fetch_failed"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise MediaError(
                param, f"This URL could not be fetched ({type(exc).__name__}).", code="url_fetch_failed"
            ) from None

    async def _address(self, target: Target, param: str) -> IPAddress:
        """The one address this hop connects to: every address the host resolves to must be allowed."""
        try:
            addresses = await self._resolve(target.host, target.port)
        except (OSError, ValueError):
            raise MediaError(
                param, "This URL's host could not be resolved.", code="url_fetch_failed"
            ) from None
        if not addresses or not all(self.policy.addresses.permits(address) for address in addresses):
            raise MediaError(
                param,
                "This URL's host is a loopback, private, link-local or metadata address, which the "
                "gateway does not fetch from.",
                code="url_not_allowed",
            )
        return addresses[0]

    async def _follow(self, target: Target, param: str) -> Blob:
        for _ in range(_MAX_REDIRECTS + 1):
            address = await self._address(target, param)
            # Connect to the checked address; the server still sees the URL's host (Host, SNI, cert).
            pinned = target.url.copy_with(host=str(address))
            extensions = {} if target.is_ip or target.scheme != "https" else {"sni_hostname": target.host}
            headers = {"host": target.url.netloc.decode("ascii")}
            async with self._client.stream(
                "GET", pinned, headers=headers, extensions=extensions, follow_redirects=False
            ) as response:
                if response.is_redirect and "location" in response.headers:
                    hop = self.policy.target(str(target.url.join(response.headers["location"])))
                    if hop is None:
                        raise MediaError(
                            param, "This URL redirects outside the allow-list.", code="url_not_allowed"
                        )
                    target = hop
                    continue
                return await self._body(response, target, param)
        raise MediaError(param, "This URL redirects too many times.", code="url_fetch_failed")

    async def _body(self, response: httpx.Response, target: Target, param: str) -> Blob:
        if response.status_code != 200:
            raise MediaError(
                param, f"Fetching this URL answered status {response.status_code}.", code="url_fetch_failed"
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
        name = target.path.rsplit("/", 1)[-1] or None
        return Blob(b"".join(chunks), mime, name)

    def _too_large(self, param: str) -> MediaError:
        return MediaError(
            param,
            f"The media at this URL is larger than {self._max_bytes} bytes.",
            code="media_too_large",
            status=413,
        )
