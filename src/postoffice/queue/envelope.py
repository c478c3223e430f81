"""The queue envelope: who sent a queued message, to whom, and how far delivery got.

Description:
    An Envelope is immutable; every state change makes a new one (with
    `dataclasses.replace`) that the spool writes as a fresh file and renames
    into place. On disk it is a versioned text file, one `key: value` line
    each, values JSON-encoded so that any address (quoted local parts,
    UTF-8) round-trips; `rcpt:` repeats once per recipient:

        version: 1
        id: "01JD7Q4W2N000000000000ABCD"
        sender: "alice@example.org"
        arrival: 1795000000.123
        rcpt: {"address": "bob@example.net", "state": "pending", ...}

    Optional keys are written only when set (`warned:` the time the delay
    DSN went out, `notification:` the kind of a DSN made here, a
    recipient's `relay` and `sender`), so files without them stay valid and
    older readers keep them as unknown keys.

    A recipient's `sender` is the envelope sender of its own copy when it
    differs from the message's: sendmail's owner-LIST (routing gives it as
    Resolution.envelope_sender), so that the list members' bounces go to the
    list owner. `Envelope.sender_for(rcpt)` is the one to use everywhere a
    copy is delivered or a DSN about it is addressed.

    `postoffice queue cat ID` prints it as it is. Unknown keys are kept out
    of the model but never make a file unreadable (forward compatibility);
    an unknown version or a missing required key is an EnvelopeError.

See also:
    queue/spool.py (the only writer), RFC 3461 (DSN parameters kept here),
    queue/bounce.py (the DSNs made from these fields).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

FORMAT_VERSION = 1


class EnvelopeError(ValueError):
    """An envelope file that cannot be read."""


class RcptState(StrEnum):
    PENDING = "pending"  # not yet delivered (never tried, or deferred)
    DELIVERED = "delivered"
    BOUNCED = "bounced"  # permanently failed (a DSN is due or was sent)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeRecipient:
    address: str
    notify: frozenset[str] | None = None  # RFC 3461 §4.1
    orcpt: str | None = None  # RFC 3461 §4.2
    state: RcptState = RcptState.PENDING
    reason: str = ""  # the last reply or reason, for mailq and DSNs
    orig: str = ""  # the recipient as the client gave it, before aliases etc. ("" = address)
    target: str = ""  # routing.targets.to_spec() of where it goes ("" = route at delivery)
    relay: str = ""  # who took or refused it last: "local", "mx.example[192.0.2.1]:25" (DSNs)
    sender: str = ""  # this copy's envelope sender, e.g. owner-LIST ("" = the envelope's)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"address": self.address, "state": self.state.value}
        if self.notify is not None:
            d["notify"] = sorted(self.notify)
        if self.orcpt is not None:
            d["orcpt"] = self.orcpt
        if self.reason:
            d["reason"] = self.reason
        if self.orig:
            d["orig"] = self.orig
        if self.target:
            d["target"] = self.target
        if self.relay:
            d["relay"] = self.relay
        if self.sender:
            d["sender"] = self.sender
        return d

    @classmethod
    def from_json(cls, d: Any) -> EnvelopeRecipient:
        if not isinstance(d, dict) or not isinstance(d.get("address"), str):
            raise EnvelopeError("recipient without an address")
        notify = d.get("notify")
        try:
            state = RcptState(d.get("state", "pending"))
        except ValueError as e:
            raise EnvelopeError(f"unknown recipient state {d.get('state')!r}") from e
        return cls(
            address=d["address"],
            notify=frozenset(str(n) for n in notify) if isinstance(notify, list) else None,
            orcpt=d["orcpt"] if isinstance(d.get("orcpt"), str) else None,
            state=state,
            reason=str(d.get("reason", "")),
            orig=str(d.get("orig", "")),
            target=str(d.get("target", "")),
            relay=str(d.get("relay", "")),
            sender=str(d.get("sender", "")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    queue_id: str
    sender: str  # "" is the null reverse-path <>
    recipients: tuple[EnvelopeRecipient, ...]
    arrival_time: float
    size: int = 0
    body_type: str = "7BIT"  # RFC 6152 BODY=
    smtputf8: bool = False  # RFC 6531
    ret: str | None = None  # RFC 3461 §4.3
    envid: str | None = None  # RFC 3461 §4.4
    client_address: str = ""
    client_name: str = ""
    helo: str = ""
    protocol: str = "ESMTP"
    local_submission: bool = False
    attempts: int = 0
    next_attempt: float = 0.0
    last_reason: str = ""  # why the last attempt deferred, for mailq
    # When the delay DSN was sent (queue.warn_after; 0: not yet). Written only when set.
    warned: float = 0.0
    # "" for ordinary mail; for a DSN made here (queue/bounce.py) its kind: "failure",
    # "delay", "success", "relayed", or "double-bounce" (a postmaster copy: if it fails
    # too, it is dropped). Written only when set.
    notification: str = ""
    extra: tuple[tuple[str, str], ...] = field(default=())  # unknown keys, kept verbatim

    @property
    def pending(self) -> tuple[EnvelopeRecipient, ...]:
        return tuple(r for r in self.recipients if r.state is RcptState.PENDING)

    @property
    def done(self) -> bool:
        return not self.pending

    def sender_for(self, rcpt: EnvelopeRecipient) -> str:
        """The envelope sender of `rcpt`'s copy: its own (owner-LIST) or the message's."""
        return rcpt.sender or self.sender

    def to_bytes(self) -> bytes:
        lines = [f"version: {FORMAT_VERSION}"]

        def put(key: str, value: Any) -> None:
            lines.append(f"{key}: {json.dumps(value, ensure_ascii=False)}")

        put("id", self.queue_id)
        put("sender", self.sender)
        put("arrival", self.arrival_time)
        put("size", self.size)
        put("body", self.body_type)
        put("smtputf8", self.smtputf8)
        if self.ret is not None:
            put("ret", self.ret)
        if self.envid is not None:
            put("envid", self.envid)
        put("client_address", self.client_address)
        put("client_name", self.client_name)
        put("helo", self.helo)
        put("protocol", self.protocol)
        put("local", self.local_submission)
        put("attempts", self.attempts)
        put("next_attempt", self.next_attempt)
        if self.last_reason:
            put("last_reason", self.last_reason)
        if self.warned:
            put("warned", self.warned)
        if self.notification:
            put("notification", self.notification)
        for r in self.recipients:
            put("rcpt", r.to_json())
        lines.extend(f"{k}: {v}" for k, v in self.extra)
        return ("\n".join(lines) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise EnvelopeError("not UTF-8") from e
        lines = text.split("\n")
        if not lines or lines[0].strip() != f"version: {FORMAT_VERSION}":
            raise EnvelopeError(f"unknown or missing version line: {lines[0][:40]!r}")
        values: dict[str, Any] = {}
        rcpts: list[EnvelopeRecipient] = []
        extra: list[tuple[str, str]] = []
        known = {
            "id", "sender", "arrival", "size", "body", "smtputf8", "ret", "envid",
            "client_address", "client_name", "helo", "protocol", "local", "attempts",
            "next_attempt", "last_reason", "warned", "notification",
        }  # fmt: skip
        for n, line in enumerate(lines[1:], start=2):
            if not line:
                continue
            key, sep, raw = line.partition(": ")
            if not sep:
                raise EnvelopeError(f"line {n}: no 'key: value'")
            if key == "rcpt" or key in known:
                try:
                    value = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise EnvelopeError(f"line {n}: bad value for {key}") from e
                if key == "rcpt":
                    rcpts.append(EnvelopeRecipient.from_json(value))
                else:
                    values[key] = value
            else:
                extra.append((key, raw))
        for req in ("id", "sender", "arrival"):
            if req not in values:
                raise EnvelopeError(f"missing {req}")
        if not rcpts:
            raise EnvelopeError("no recipients")
        try:
            return cls(
                queue_id=str(values["id"]),
                sender=str(values["sender"]),
                recipients=tuple(rcpts),
                arrival_time=float(values["arrival"]),
                size=int(values.get("size", 0)),
                body_type=str(values.get("body", "7BIT")),
                smtputf8=bool(values.get("smtputf8", False)),
                ret=values.get("ret"),
                envid=values.get("envid"),
                client_address=str(values.get("client_address", "")),
                client_name=str(values.get("client_name", "")),
                helo=str(values.get("helo", "")),
                protocol=str(values.get("protocol", "ESMTP")),
                local_submission=bool(values.get("local", False)),
                attempts=int(values.get("attempts", 0)),
                next_attempt=float(values.get("next_attempt", 0.0)),
                last_reason=str(values.get("last_reason", "")),
                warned=float(values.get("warned", 0.0)),
                notification=str(values.get("notification", "")),
                extra=tuple(extra),
            )
        except (TypeError, ValueError) as e:
            raise EnvelopeError(f"bad value: {e}") from e
