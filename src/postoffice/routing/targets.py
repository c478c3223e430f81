"""What a recipient resolves to: delivery targets and the trace of how.

Description:
    routing/ turns one recipient address into a `Resolution`: a tuple of
    targets (where copies go) and a trace (every map and file consulted,
    with file and line). Targets are values (layer 0) so that the queue can
    store them in the envelope (`EnvelopeRecipient.target`, see `to_spec`
    / `from_spec`) and the delivery agents can act on them:

        Mailbox(address, spec)        a local mailbox: spec "maildir:PATH" | "mbox:PATH"
        Program(address, command, user)  "|command" run as `user` (delivery/pipe.py)
        File(address, path, user)     "/path" appended to as `user` (delivery/file.py)
        Remote(address, nexthop)      another MTA; nexthop "" = MX of the domain,
                                      "[host]" / "host" / "host:port" from mailertable
                                      or smart_host (the remote-delivery issue sends)
        Refusal(address, reply)       error: from virtusertable/mailertable/aliases

    `address` is the address the target delivers for (Delivered-To:, the
    log's to=); the original recipient is kept by the caller (orig_to).

See also:
    routing/resolve.py, queue/envelope.py (target specs), delivery/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from postoffice.queue.envelope import EnvelopeRecipient
from postoffice.smtp.replies import Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Mailbox:
    address: str
    spec: str  # "maildir:/path" or "mbox:/path", placeholders already filled
    user: str = ""  # the system user owning it ("" = the server's own uid)


@dataclass(frozen=True, slots=True, kw_only=True)
class Program:
    address: str
    command: str
    user: str  # never root
    home: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class File:
    address: str
    path: str
    user: str  # never root


@dataclass(frozen=True, slots=True, kw_only=True)
class Remote:
    address: str
    nexthop: str = ""  # "" = MX lookup; "[host]", "host", "host:port"; "local:" handled by routing


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    address: str
    reply: Reply


Target = Mailbox | Program | File | Remote | Refusal


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceStep:
    """One step of a resolution, for `postoffice explain` and the log."""

    rule: str  # "normalise", "virtusertable", "aliases", "include", "forward", "dotqmail",
    #            "user", "mailbox", "mailertable", "smart_host", "mx", "loop", "error"
    detail: str  # e.g. "alice@example.com -> alice, bob"
    file: str = ""
    line: int = 0

    def __str__(self) -> str:
        where = f" ({self.file}:{self.line})" if self.file else ""
        return f"{self.rule}: {self.detail}{where}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    recipient: str  # the address as given, normalised
    targets: tuple[Target, ...]
    trace: tuple[TraceStep, ...] = ()
    envelope_sender: str | None = None  # owner-LIST for list expansion (sendmail)

    @property
    def refusal(self) -> Refusal | None:
        """The refusal when every target is one (the RCPT is then refused)."""
        refusals = [t for t in self.targets if isinstance(t, Refusal)]
        return refusals[0] if refusals and len(refusals) == len(self.targets) else None


# --- target specs: how a target is written into the envelope --------------------------


def to_spec(target: Target) -> str:
    """A one-line, JSON-safe text for the envelope (see from_spec)."""
    if isinstance(target, Mailbox):
        return json.dumps(["mailbox", target.spec, target.user])
    if isinstance(target, Program):
        return json.dumps(["program", target.command, target.user, target.home])
    if isinstance(target, File):
        return json.dumps(["file", target.path, target.user])
    if isinstance(target, Remote):
        return json.dumps(["remote", target.nexthop])
    return json.dumps(["refusal", target.reply.code, target.reply.enhanced, target.reply.text])


def from_spec(address: str, spec: str) -> Target:
    """The target `to_spec` wrote; ValueError for anything else."""
    try:
        v = json.loads(spec)
    except json.JSONDecodeError as e:
        raise ValueError(f"bad target spec {spec!r}") from e
    if not isinstance(v, list) or not v or not all(isinstance(x, str | int) for x in v):
        raise ValueError(f"bad target spec {spec!r}")
    kind = v[0]
    if kind == "mailbox" and len(v) == 3:
        return Mailbox(address=address, spec=str(v[1]), user=str(v[2]))
    if kind == "program" and len(v) == 4:
        return Program(address=address, command=str(v[1]), user=str(v[2]), home=str(v[3]))
    if kind == "file" and len(v) == 3:
        return File(address=address, path=str(v[1]), user=str(v[2]))
    if kind == "remote" and len(v) == 2:
        return Remote(address=address, nexthop=str(v[1]))
    if kind == "refusal" and len(v) == 4:
        return Refusal(
            address=address, reply=Reply(code=int(v[1]), enhanced=str(v[2]), text=str(v[3]))
        )
    raise ValueError(f"bad target spec {spec!r}")


def transport(target: Target) -> str:
    """The delivery agent for a target (queue/manager.py's transport names)."""
    if isinstance(target, Mailbox):
        return "local"
    if isinstance(target, Program):
        return "pipe"
    if isinstance(target, File):
        return "file"
    if isinstance(target, Remote):
        mailer, sep, _ = target.nexthop.partition(":")
        if sep and mailer in ("lmtp", "qmtp"):
            return mailer
        return "smtp"
    return "error"


def envelope_recipients(
    resolution: Resolution,
    recipient: str,
    *,
    notify: frozenset[str] | None = None,
    orcpt: str | None = None,
) -> list[EnvelopeRecipient]:
    """One envelope recipient per target of `resolution` (the SMTP session and the
    sendmail command queue what routing resolved, with the original address).
    A list owner (Resolution.envelope_sender) becomes each copy's sender."""
    return [
        EnvelopeRecipient(
            address=target.address,
            notify=notify,
            orcpt=orcpt,
            orig=recipient if target.address != recipient else "",
            target=to_spec(target),
            sender=resolution.envelope_sender or "",
        )
        for target in resolution.targets
    ]
