"""A real DNS server for the discovery tests: dnslib's DNSServer on 127.0.0.1, on a free UDP port,
answering A and AAAA queries from records the test changes while it runs (a headless Service
whose pods come and go)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from types import TracebackType
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import DNSLogger, DNSServer


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Records:
    """dnslib's resolver interface over a name -> addresses table; a name not in it is NXDOMAIN."""

    def __init__(self) -> None:
        self.table: dict[str, tuple[str, ...]] = {}
        self.queries = 0
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self._lock:
            self.queries += 1
            addresses = self.table.get(name)
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for address in addresses:
            version = ipaddress.ip_address(address).version
            if request.q.qtype == QTYPE.A and version == 4:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=1))
            elif request.q.qtype == QTYPE.AAAA and version == 6:
                reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(address), ttl=1))
        return reply

    def set(self, name: str, addresses: tuple[str, ...] | None) -> None:
        with self._lock:
            if addresses is None:
                self.table.pop(name.lower(), None)
            else:
                self.table[name.lower()] = addresses


class RecordServer:
    """`with RecordServer() as dns: dns.set("engines.test", ("127.0.0.2",))`; `dns.nameserver` is
    what TANTRA_DISCOVERY_NAMESERVER takes."""

    def __init__(self) -> None:
        self.port = free_udp_port()
        self.nameserver = f"127.0.0.1:{self.port}"
        self._records = _Records()
        quiet = DNSLogger(log="-request,-reply,-truncated")
        self._server = DNSServer(self._records, port=self.port, address="127.0.0.1", logger=quiet)

    @property
    def queries(self) -> int:
        return self._records.queries

    def set(self, name: str, addresses: tuple[str, ...] | None) -> None:
        """Serve `addresses` for `name` from now on; None: the name does not exist (NXDOMAIN)."""
        self._records.set(name, addresses)

    def __enter__(self) -> RecordServer:
        self._server.start_thread()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.stop()
