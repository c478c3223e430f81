"""policy/client_name — a client's name: reverse DNS, confirmed by forward DNS.

Description:
    client_name(resolver, ip) -> (name, confirmed) asks the PTR name of
    the client's address, then the A/AAAA records of that name; the name
    is "confirmed" when those addresses include the client's again
    (forward-confirmed reverse DNS). Only a confirmed name may be used
    for decisions (access `Connect:`, tcprules `=host`, relay-domains);
    an unconfirmed one appears in Received: as "name [ip] (may be forged)"
    as sendmail writes it (policy/engine.py ClientState.received_from).

    127.0.0.1 and ::1 are `localhost` without DNS (as /etc/hosts); other
    loopback addresses have no name and are not looked up. A PTR that is
    an address, or no valid host name, is no name. IPv4-mapped IPv6
    addresses are looked up as the IPv4 address.

Security:
    The PTR record is the client's network's word, never trusted alone.

See also:
    policy/engine.py (new_client), dns.py; sendmail's "may be forged"
    (seed 002); RFC 1912 §2.1.
"""

from __future__ import annotations

import ipaddress

from postoffice.address import AddressError, parse_domain
from postoffice.dns import DnsError, Resolver


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


async def client_name(resolver: Resolver | None, ip: str) -> tuple[str | None, bool]:
    """(name, confirmed): the PTR name of `ip` and whether its A/AAAA records
    contain `ip` again (forward-confirmed reverse DNS). (None, False)
    without a usable name."""
    addr = _address(ip)
    if addr is None:
        return None, False
    if addr.is_loopback:
        if addr in (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")):
            return "localhost", True
        return None, False
    if resolver is None:
        return None, False
    name = await resolver.ptr(str(addr))
    if not name:
        return None, False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return None, False  # a PTR that names an address is no name
    try:
        name = parse_domain(name, smtputf8=False, allow_literal=False)
    except AddressError:
        return None, False
    try:
        found = await resolver.addresses(name)
    except DnsError:
        return name, False
    return name, any(_address(a) == addr for a in found)


__all__ = ["client_name"]
