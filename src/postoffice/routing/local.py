"""Routing for the foundation: a recipient is delivered locally or waits for a remote agent.

Description:
    Pure: given the local domains, one recipient resolves to a transport
    name that the queue manager maps to a delivery agent ("local",
    "smtp"). Aliases, virtusertable, .forward and the rest arrive with the
    routing issue and plug in here.

See also:
    queue/manager.py (transport_for), delivery/local.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from postoffice.queue.envelope import Envelope, EnvelopeRecipient


class LocalRouter:
    def __init__(self, *, local_domains: Iterable[str], hostname: str) -> None:
        self.local_domains = frozenset(d.lower().rstrip(".") for d in local_domains)
        self.hostname = hostname.lower()

    def qualify(self, address: str) -> str:
        """A bare local part (e.g. RCPT TO:<postmaster>) gets this host's name."""
        return address if "@" in address else f"{address}@{self.hostname}"

    def transport_for(self, envelope: Envelope, recipient: EnvelopeRecipient) -> str:
        _, _, domain = recipient.address.rpartition("@")
        if not domain or domain.lower().rstrip(".") in self.local_domains:
            return "local"
        return "smtp"
