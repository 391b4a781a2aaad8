"""Which IP addresses a media fetch may connect to: public ones, and the networks an operator lists.

An allowed host name is no proof of where it points: DNS can send `cdn.example.com` to 127.0.0.1,
10.0.0.5 or the cloud's metadata service. The fetcher resolves each host once, checks every
address here and connects to the one it checked (fetch.py), so no later lookup can differ.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata and host services reachable from a VM or pod. Most are link-local (refused with
# every non-public address); Azure's wire server is a public address and needs naming.
METADATA: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
        "192.0.0.192",  # Oracle Cloud
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# host, port -> the addresses it resolves to (the default asks the system resolver, off the loop).
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


class AddressPolicy:
    """Public unicast addresses only, unless in `allowed` (CIDRs the operator opened explicitly,
    e.g. an internal image store): loopback, private, link-local, shared (CGNAT), multicast,
    reserved and metadata addresses are refused, also when written as IPv4-mapped or NAT64 IPv6."""

    def __init__(self, allowed: Sequence[str] = ()) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allowed)

    def permits(self, address: IPAddress) -> bool:
        if any(address in network for network in self.allowed):
            return True
        embedded = _embedded_v4(address)
        if embedded is not None:
            return self.permits(embedded)
        return address.is_global and not address.is_multicast and address not in METADATA


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (::ffff:a.b.c.d, 64:ff9b::a.b.c.d), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None
