"""Shared helpers for the policy tests: a small site (local domains, users, a
fake router) and an engine built from map texts. Not a test module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from postoffice.config.schema import PolicyConfig
from postoffice.dns import Resolver
from postoffice.maps.registry import open_map
from postoffice.policy.access import AccessMap
from postoffice.policy.engine import ClientState, PolicyEngine, Verdict
from postoffice.policy.limits import ConnectionLimits
from postoffice.policy.tcprules import TcpRules
from postoffice.routing.targets import Mailbox, Refusal, Remote, Resolution
from postoffice.smtp import replies
from postoffice.smtp.replies import Reply

HOSTNAME = "mail.example.test"
LOCAL = ("example.test", "mail.example.test", "linux102.example.com", "localhost")
USERS = frozenset(
    {
        "alice@example.test",
        "bob@example.test",
        "dongliang@linux102.example.com",
        "lee@linux102.example.com",
    }
)
MAILERTABLE_ERROR = Reply.of(550, "5.7.1", "We do not route there")


def user_exists(address: str) -> bool:
    return address.lower() in USERS


def fake_resolve(address: str) -> Resolution:
    """A router: local users get a mailbox, unknown local names 550 5.1.1, other
    domains a remote target (refused.example: a mailertable error)."""
    local, _, domain = address.rpartition("@")
    if not local:
        return Resolution(
            recipient=address, targets=(Mailbox(address="postmaster", spec="maildir:/pm"),)
        )
    if domain in LOCAL:
        if address.lower() in USERS or local.lower() == "postmaster":
            return Resolution(
                recipient=address, targets=(Mailbox(address=address, spec="maildir:/m"),)
            )
        reply = replies.USER_UNKNOWN.with_text(f"{replies.echo(address)}... User unknown")
        return Resolution(recipient=address, targets=(Refusal(address=address, reply=reply),))
    if domain == "refused.example":
        return Resolution(
            recipient=address, targets=(Refusal(address=address, reply=MAILERTABLE_ERROR),)
        )
    return Resolution(recipient=address, targets=(Remote(address=address),))


def write_map(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def make_engine(
    tmp_path: Path,
    *,
    access: str = "",
    relay_domains: str = "",
    tcprules: str = "",
    resolver: Resolver | None = None,
    trusted: tuple[str, ...] = ("127.0.0.1/32",),
    limits: ConnectionLimits | None = None,
    local_domains: tuple[str, ...] = LOCAL,
    **options: Any,
) -> PolicyEngine:
    return PolicyEngine(
        local_domains=local_domains,
        user_exists=user_exists,
        resolve=fake_resolve,
        trusted_networks=trusted,
        hostname=HOSTNAME,
        access=AccessMap(open_map("access", write_map(tmp_path, "access", access))),
        relay_domains=open_map(
            "relay_domains", write_map(tmp_path, "relay-domains", relay_domains), allow_empty=True
        ),
        tcprules=TcpRules.from_text(tcprules, file="tcprules"),
        resolver=resolver,
        limits=limits,
        options=PolicyConfig(**options),
    )


async def connect(
    engine: PolicyEngine, ip: str, hostname: str | None = None, *, confirmed: bool = True
) -> tuple[ClientState, Verdict]:
    if hostname is None:
        state = await engine.new_client(ip)
    else:
        state = await engine.new_client(ip, hostname=hostname, confirmed=confirmed)
    return state, await engine.on_connect(state)


async def rcpt_from(
    engine: PolicyEngine,
    ip: str,
    recipient: str,
    *,
    hostname: str | None = None,
    sender: str = "someone@sender.example",
    authenticated: str = "",
) -> Verdict:
    """One transaction: connect, (AUTH), MAIL, RCPT; the RCPT verdict."""
    state, _ = await connect(engine, ip, hostname)
    state.authenticated = authenticated
    await engine.on_mail(state, sender)
    return await engine.on_rcpt(state, recipient)
