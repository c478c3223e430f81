"""policy/listener — what [smtp.policy] and [submission.policy] change for one kind of listener.

Description:
    Each kind of listener can override a few keys of [policy] for the
    connections it accepts (issue 5: "Each listener can override limits
    and policy"):

        kind         listeners                               overrides
        smtp         [smtp] listen (port 25)                 [smtp.policy]
        qmtp         [smtp] qmtp_listen                      [smtp.policy]
        submission   [submission] listen, tls_listen         [submission.policy]
                     (587, 465)

    ListenerRules is the result for one kind, built by listener_rules():

        max_connections_per_ip, max_connection_rate, max_messages_per_hour
            None: [policy]'s value (the ConnectionLimits default);
            a number replaces it. A tcprules MAXCONNIP / MAXCONNRATE /
            MAXMSGHOUR of the client's rule still wins over both.
        dnsbl      False: no DNS blocklist lookups for these clients
        access     False: the access database is not consulted (no
                   Connect:, From:, To: entries, and none opens relaying)
        require_auth
                   AUTH before MAIL (RFC 4954 §6, 530 5.7.0); default
                   true for submission (RFC 6409 §4.3), false otherwise.
                   QMTP has no AUTH: a qmtp listener that requires it
                   refuses every package.

    The policy engine counts connections and messages per kind of
    listener (policy/limits.py groups), as Postfix's anvil(8) counts per
    service: a client's connections on port 25 do not use up its
    allowance on the submission port.

    Everything else ([policy] tcprules, delay_checks, relay options, the
    zones themselves) is the same for every listener.

Config:
    [smtp.policy], [submission.policy] (config/schema.py
    ListenerPolicyConfig); [smtp] qmtp_listen.

See also:
    policy/engine.py (applies the rules), smtp/session.py (require_auth),
    smtp/qmtp_session.py; Postfix master.cf `-o` overrides, anvil(8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from postoffice.config.schema import Config, ListenerPolicyConfig

SMTP: Final = "smtp"
SUBMISSION: Final = "submission"
QMTP: Final = "qmtp"
KINDS: Final = (SMTP, SUBMISSION, QMTP)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerRules:
    """The policy differences of one kind of listener (see the module doc)."""

    kind: str = SMTP
    max_connections_per_ip: int | None = None
    max_connection_rate: int | None = None
    max_messages_per_hour: int | None = None
    dnsbl: bool = True
    access: bool = True
    require_auth: bool = False

    @classmethod
    def from_overrides(cls, kind: str, overrides: ListenerPolicyConfig) -> ListenerRules:
        o = overrides

        def given(value: bool | None, default: bool) -> bool:
            return default if value is None else value

        return cls(
            kind=kind,
            max_connections_per_ip=o.max_connections_per_ip,
            max_connection_rate=o.max_connection_rate,
            max_messages_per_hour=o.max_messages_per_hour,
            dnsbl=given(o.dnsbl, True),
            access=given(o.access, True),
            require_auth=given(o.require_auth, kind == SUBMISSION),
        )


def listener_rules(config: Config) -> dict[str, ListenerRules]:
    """The rules of every kind of listener the configuration describes."""
    return {
        SMTP: ListenerRules.from_overrides(SMTP, config.smtp.policy),
        QMTP: ListenerRules.from_overrides(QMTP, config.smtp.policy),
        SUBMISSION: ListenerRules.from_overrides(SUBMISSION, config.submission.policy),
    }


def rules_for(rules: Mapping[str, ListenerRules], kind: str) -> ListenerRules:
    """The rules of `kind`; a kind without an entry gets the defaults for it."""
    found = rules.get(kind)
    if found is not None:
        return found
    return ListenerRules(kind=kind, require_auth=kind == SUBMISSION)


__all__ = ["KINDS", "QMTP", "SMTP", "SUBMISSION", "ListenerRules", "listener_rules", "rules_for"]
