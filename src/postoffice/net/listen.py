"""Listen addresses: `host:port` and `[ipv6]:port` strings from the configuration.

See also:
    config/schema.py ([smtp] listen), smtp/server.py.
"""

from __future__ import annotations

import ipaddress


def parse_listen(spec: str) -> tuple[str, int]:
    """Split `127.0.0.1:2525`, `[::1]:2525` or `localhost:25` into (host, port).

    Raises ValueError with a one-line message on anything else.
    """
    spec = spec.strip()
    if spec.startswith("["):
        host, sep, port = spec[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad listen address {spec!r}: expected [ipv6]:port")
        ipaddress.IPv6Address(host.split("%", 1)[0])
    else:
        host, sep, port = spec.rpartition(":")
        if not sep or not host:
            raise ValueError(f"bad listen address {spec!r}: expected host:port")
        if ":" in host:
            raise ValueError(f"bad listen address {spec!r}: write IPv6 as [addr]:port")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad listen address {spec!r}: port must be 0-65535")
    return host, int(port)
