"""The media fetcher's URL parsing, address checks and pinned connections (issue 16, point 5)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import MediaError, UrlFetcher, UrlPolicy
from adapters.addresses import AddressPolicy, IPAddress
from tests.servers import ThreadedServer


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://cdn.example.com/public/a.png", True),
        ("https://cdn.example.com/public", True),
        ("https://cdn.example.com/public-x/a.png", False),
        ("https://cdn.example.com/public/../private/a.png", False),
        ("https://cdn.example.com/public/%2e%2e/private/a.png", False),
        ("https://cdn.example.com@10.0.0.1/public/a.png", False),
        ("https://cdn.example.com.attacker.net/public/a.png", False),
        ("http://cdn.example.com/public/a.png", False),
        ("https://cdn.example.com:8443/public/a.png", False),
        ("https://img.example.com/a.png", True),
        ("https://IMG.example.com./a.png", True),
        ("https://img.example.com:6379/", False),
        ("https://a.b.example.org/x", True),
        ("https://example.org/x", False),
        ("https://img.example.com\\@10.0.0.1/", False),
    ],
)
def test_urls_are_matched_by_their_parsed_parts(url: str, allowed: bool) -> None:
    policy = UrlPolicy(["https://cdn.example.com/public/", "img.example.com", "*.example.org"])
    assert policy.allows(url) is allowed


def test_entries_that_do_not_parse_are_refused_at_startup() -> None:
    for entry in ("ftp://x.org/", "https://user@x.org/", "x.org/path"):
        with pytest.raises(ValueError):
            UrlPolicy([entry])


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1::1", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("168.63.129.16", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::a9fe:a9fe", False),
    ],
)
def test_only_public_addresses_by_default(address: str, public: bool) -> None:
    assert AddressPolicy().permits(ipaddress.ip_address(address)) is public


def test_an_operator_opens_a_network_explicitly() -> None:
    policy = AddressPolicy(["10.1.2.0/24"])
    assert policy.permits(ipaddress.ip_address("10.1.2.9"))
    assert not policy.permits(ipaddress.ip_address("10.1.3.9"))


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[list[str], int]]:
    hosts: list[str] = []

    async def image(request: Request) -> Response:
        hosts.append(request.headers["host"])
        return Response(b"PNGDATA", media_type="image/png")

    async def away(request: Request) -> Response:
        hosts.append(request.headers["host"])
        return Response(status_code=302, headers={"location": "http://metadata.test/latest"})

    with ThreadedServer(Starlette(routes=[Route("/a.png", image), Route("/away", away)])) as server:
        yield hosts, server.port


def _fetcher(policy: UrlPolicy, answers: dict[str, list[str]], calls: list[str]) -> UrlFetcher:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return [ipaddress.ip_address(a) for a in answers[host]]

    return UrlFetcher(policy, httpx.AsyncClient(), timeout_s=5, max_bytes=1000, resolver=resolve)


def test_the_connection_goes_to_the_address_that_was_checked(local: tuple[list[str], int]) -> None:
    """`images.test` exists only in the fake resolver: reaching the server proves the fetch
    connected to the address resolved and checked once, and the server still saw the URL's host."""
    hosts, port = local
    calls: list[str] = []
    policy = UrlPolicy([f"images.test:{port}"], ["127.0.0.1/32"])
    fetcher = _fetcher(policy, {"images.test": ["127.0.0.1"]}, calls)
    blob = asyncio.run(fetcher.fetch(f"http://images.test:{port}/a.png", "p"))
    assert blob.data == b"PNGDATA" and blob.name == "a.png"
    assert calls == ["images.test"] and hosts[-1] == f"images.test:{port}"


def test_a_host_with_any_private_address_is_refused(local: tuple[list[str], int]) -> None:
    hosts, port = local
    before = len(hosts)
    answers = {"images.test": ["93.184.216.34", "127.0.0.1"]}
    fetcher = _fetcher(UrlPolicy([f"images.test:{port}"]), answers, [])
    with pytest.raises(MediaError) as refused:
        asyncio.run(fetcher.fetch(f"http://images.test:{port}/a.png", "p"))
    assert refused.value.code == "url_not_allowed" and len(hosts) == before


def test_a_redirect_hop_is_resolved_and_checked_again(local: tuple[list[str], int]) -> None:
    _, port = local
    calls: list[str] = []
    answers = {"images.test": ["127.0.0.1"], "metadata.test": ["169.254.169.254"]}
    policy = UrlPolicy([f"images.test:{port}", "metadata.test"], ["127.0.0.1/32"])
    with pytest.raises(MediaError) as refused:
        asyncio.run(_fetcher(policy, answers, calls).fetch(f"http://images.test:{port}/away", "p"))
    assert refused.value.code == "url_not_allowed" and calls == ["images.test", "metadata.test"]
