"""FakeDnsServer: an authoritative-looking DNS server on loopback for tests.

Description:
    Serves a dict of names over UDP and TCP on 127.0.0.1 (one ephemeral
    port for both) from a background thread, so it works the same from
    synchronous tests, asyncio tests and subprocesses (`postoffice serve`
    pointed at it with `[dns] nameservers = [server.address]`):

        ZONES = {
            "example.org": {"MX": [(10, "mx1.example.org"), (20, "mx2.example.org")]},
            "mx1.example.org": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
            "www.example.org": {"CNAME": "mx1.example.org"},
            "example.net": {"TXT": ["v=spf1 -all"], "TTL": 60},
            "192.0.2.1": {"PTR": "mx1.example.org"},  # an IP key means its reverse name
            "bücher.example": {"A": ["192.0.2.7"]},   # IDNA keys are stored as A-labels
            "nx.example": "NXDOMAIN",
            "broken.example": "SERVFAIL",
            "slow.example": "TIMEOUT",                # the server never answers
            "half.example": {"A": ["192.0.2.8"], "AAAA": "TIMEOUT"},
        }
        with FakeDnsServer(ZONES) as server:
            resolver = server.resolver(timeout=0.5)
            hosts = await resolver.mx("example.org")

    A name's value is either a failure for every type ("NXDOMAIN",
    "SERVFAIL", "REFUSED", "TIMEOUT") or a dict from record type to
    records: "A"/"AAAA" lists of addresses, "MX" (preference, host) pairs
    ("." is the null MX), "CNAME" one target, "PTR" and "NS" host names,
    "TXT" strings (a tuple is one record of several character-strings;
    longer strings are split at 255 octets). A type's value may itself be a
    failure word; "TTL" sets the TTL of that name's records.

    Answers follow CNAME chains through the zones, as a recursive resolver
    would. Unknown names are NXDOMAIN; a known name without the type is
    NOERROR with no answer. Negative answers carry an SOA (RFC 2308 §3)
    whose TTL and minimum are `negative_ttl`. UDP answers larger than the
    client's EDNS payload size (512 without EDNS) are truncated (TC) so the
    client retries over TCP.

    `queries` records every question as (name, type), so tests can see
    what reached the server and what the cache answered; `set()` and
    `remove()` change the zones while the server runs.

Security:
    Binds only to 127.0.0.1. Test-only: production code never imports
    postoffice.testing (import-linter contract in pyproject.toml).

See also:
    dns.py (the resolver under test), RFC 1035 §4.2 (UDP and TCP framing),
    RFC 2308 (negative answers), RFC 6891 (EDNS payload size).
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import dns.name
import dns.reversename
from dnslib import (
    AAAA,
    CNAME,
    MX,
    NS,
    PTR,
    QTYPE,
    RCODE,
    RR,
    SOA,
    TXT,
    A,
    DNSRecord,
)

from postoffice.dns import Resolver

FAILURES = ("NXDOMAIN", "SERVFAIL", "REFUSED", "TIMEOUT")
_RCODES = {"NXDOMAIN": RCODE.NXDOMAIN, "SERVFAIL": RCODE.SERVFAIL, "REFUSED": RCODE.REFUSED}
_MAX_CHAIN = 12
_BIND_ATTEMPTS = 50

ZoneEntry = str | Mapping[str, Any]


def zone_key(name: str) -> str:
    """The key a name is stored under: lower-case A-labels without the final
    dot; an IP address becomes its reverse name (in-addr.arpa / ip6.arpa)."""
    with contextlib.suppress(ValueError):
        return _key(dns.reversename.from_address(str(ipaddress.ip_address(name))).to_text())
    return _key(dns.name.from_text(name).to_text())


def _key(text: str) -> str:
    return text.rstrip(".").lower()


class FakeDnsServer:
    """A DNS server on 127.0.0.1 answering from a dict (see the module doc)."""

    def __init__(
        self,
        zones: Mapping[str, ZoneEntry] | None = None,
        *,
        ttl: int = 300,
        negative_ttl: int = 300,
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.queries: list[tuple[str, str]] = []
        self.errors: list[str] = []  # requests the server could not handle
        self._zones: dict[str, ZoneEntry] = {}
        self._lock = threading.Lock()
        for name, entry in (zones or {}).items():
            self.set(name, entry)
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- zones ---------------------------------------------------------------

    def set(self, name: str, entry: ZoneEntry) -> None:
        """Add or replace the records of one name."""
        if isinstance(entry, str) and entry not in FAILURES:
            raise ValueError(f"unknown failure {entry!r}; expected one of {FAILURES}")
        with self._lock:
            self._zones[zone_key(name)] = entry

    def remove(self, name: str) -> None:
        """Forget a name (it becomes NXDOMAIN)."""
        with self._lock:
            self._zones.pop(zone_key(name), None)

    # -- lifecycle -----------------------------------------------------------

    @property
    def address(self) -> str:
        """ "127.0.0.1:PORT", the form [dns] nameservers takes."""
        return f"127.0.0.1:{self.port}"

    def resolver(self, **kwargs: Any) -> Resolver:
        """A postoffice Resolver that asks only this server."""
        return Resolver(nameservers=[self.address], **kwargs)

    def start(self) -> FakeDnsServer:
        if self._thread is not None:
            return self
        self._udp, self._tcp = _bind_pair()
        self.port = self._udp.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="fake-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None or self._wake_w is None:
            return
        self._wake_w.send(b"x")
        self._thread.join(timeout=10)
        self._thread = None
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._wake_r = self._wake_w = None

    def __enter__(self) -> FakeDnsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the server thread ---------------------------------------------------

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None and self._wake_r is not None
        conns: dict[socket.socket, bytearray] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self._udp, selectors.EVENT_READ, "udp")
            sel.register(self._tcp, selectors.EVENT_READ, "listen")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            running = True
            while running:
                for key, _ in sel.select():
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if key.data == "wake":
                        running = False
                    elif key.data == "udp":
                        self._serve_udp(sock)
                    elif key.data == "listen":
                        conn, _ = sock.accept()
                        conn.settimeout(2.0)
                        conns[conn] = bytearray()
                        sel.register(conn, selectors.EVENT_READ, "tcp")
                    elif not self._serve_tcp(sock, conns[sock]):
                        sel.unregister(sock)
                        del conns[sock]
                        sock.close()
            for conn in conns:
                conn.close()

    def _serve_udp(self, sock: socket.socket) -> None:
        try:
            data, peer = sock.recvfrom(65535)
        except OSError:
            return
        request = self._parse(data)
        if request is None:
            return
        reply = self._answer(request)
        if reply is None:
            return
        packet = reply.pack()
        limit = 512
        for rr in request.ar:
            if rr.rtype == QTYPE.OPT:
                limit = max(512, int(rr.rclass))
        if len(packet) > limit:  # RFC 1035 §4.2.1: truncate, the client retries over TCP
            short = request.reply()
            short.header.tc = 1
            packet = short.pack()
        with contextlib.suppress(OSError):
            sock.sendto(packet, peer)

    def _serve_tcp(self, conn: socket.socket, buf: bytearray) -> bool:
        """Read what is there and answer whole messages; False when closed."""
        try:
            chunk = conn.recv(65535)
        except OSError:
            return False
        if not chunk:
            return False
        buf += chunk
        while len(buf) >= 2:
            (size,) = struct.unpack("!H", buf[:2])
            if len(buf) < 2 + size:
                break
            data = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            request = self._parse(data)
            reply = self._answer(request) if request is not None else None
            if reply is not None:
                packet = reply.pack()
                try:
                    conn.sendall(struct.pack("!H", len(packet)) + packet)
                except OSError:
                    return False
        return True

    def _parse(self, data: bytes) -> DNSRecord | None:
        try:
            return DNSRecord.parse(data)
        except Exception as exc:  # a fake must survive any packet; tests read .errors
            self.errors.append(f"unparsable request: {exc!r}")
            return None

    def _answer(self, request: DNSRecord) -> DNSRecord | None:
        """The reply to one request, or None to stay silent (TIMEOUT)."""
        try:
            return self._resolve(request)
        except Exception as exc:  # keep serving; tests read .errors
            self.errors.append(f"{request.q.qname}: {exc!r}")
            reply = request.reply()
            reply.header.rcode = RCODE.SERVFAIL
            return reply

    def _resolve(self, request: DNSRecord) -> DNSRecord | None:
        qname = str(request.q.qname)
        qtype = QTYPE.get(request.q.qtype)
        self.queries.append((_key(qname), str(qtype)))
        reply = request.reply()
        with self._lock:
            zones = dict(self._zones)
        name = qname
        for _ in range(_MAX_CHAIN):
            entry = zones.get(_key(name))
            if entry is None:
                entry = "NXDOMAIN"
            if isinstance(entry, str):
                return self._fail(reply, entry, name, zones)
            ttl = int(entry.get("TTL", self.ttl))
            records = entry.get(str(qtype))
            if isinstance(records, str) and records in FAILURES:
                return self._fail(reply, records, name, zones)
            if records is not None:
                for rdata in _rdatas(str(qtype), records):
                    reply.add_answer(RR(name, request.q.qtype, ttl=ttl, rdata=rdata))
                return reply
            target = entry.get("CNAME")
            if target is None or qtype == "CNAME":
                reply.add_auth(self._soa(name, zones))  # RFC 2308 §2.2 NODATA
                return reply
            if not isinstance(target, str):
                (target,) = target
            reply.add_answer(RR(name, QTYPE.CNAME, ttl=ttl, rdata=CNAME(target)))
            name = target
        reply.header.rcode = RCODE.SERVFAIL  # a CNAME loop
        return reply

    def _fail(
        self, reply: DNSRecord, failure: str, name: str, zones: Mapping[str, ZoneEntry]
    ) -> DNSRecord | None:
        if failure == "TIMEOUT":
            return None
        reply.header.rcode = _RCODES[failure]
        if failure == "NXDOMAIN":
            reply.add_auth(self._soa(name, zones))  # RFC 2308 §2.1
        return reply

    def _soa(self, name: str, zones: Mapping[str, ZoneEntry]) -> RR:
        """An SOA for a negative answer, owned by the nearest enclosing name
        of the zones (else the top-level domain): RFC 2308 §3."""
        labels = _key(name).split(".")
        owner = labels[-1]
        for i in range(1, len(labels)):
            if ".".join(labels[i:]) in zones:
                owner = ".".join(labels[i:])
                break
        times = (1, 3600, 600, 86400, self.negative_ttl)
        rdata = SOA(f"ns.{owner}", f"hostmaster.{owner}", times)
        return RR(owner + ".", QTYPE.SOA, ttl=self.negative_ttl, rdata=rdata)


def _rdatas(qtype: str, records: Any) -> Iterator[Any]:
    if isinstance(records, str) or (qtype == "MX" and _is_mx_pair(records)):
        records = [records]
    for record in records:
        if qtype == "A":
            yield A(record)
        elif qtype == "AAAA":
            yield AAAA(record)
        elif qtype == "MX":
            preference, host = record
            yield MX(host, int(preference))
        elif qtype == "CNAME":
            yield CNAME(record)
        elif qtype == "PTR":
            yield PTR(record)
        elif qtype == "NS":
            yield NS(record)
        elif qtype == "TXT":
            yield TXT(_txt_strings(record))
        else:
            raise ValueError(f"record type {qtype} is not supported by FakeDnsServer")


def _is_mx_pair(records: Any) -> bool:
    return isinstance(records, tuple) and len(records) == 2 and isinstance(records[0], int)


def _txt_strings(record: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """One TXT record as character-strings of at most 255 octets (RFC 1035 §3.3.14)."""
    parts = [record] if isinstance(record, str | bytes) else list(record)
    out: list[bytes] = []
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.extend(data[i : i + 255] for i in range(0, len(data), 255))
    return out or [b""]


def _bind_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same ephemeral loopback port."""
    for _ in range(_BIND_ATTEMPTS):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp
    raise OSError("no loopback port free for both UDP and TCP")
