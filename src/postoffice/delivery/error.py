"""The error agent: recipients that routing refused after the RCPT was accepted.

Description:
    An alias list may hold a member that cannot be delivered (an unknown
    user, an `error:` in virtusertable, a loop). The RCPT of the list was
    accepted, so such members travel in the envelope with a Refusal target
    (routing/targets.py) and end here: Bounced with the refusal's reply, so
    the queue returns them to the sender like any other permanent failure —
    or Deferred when the reply is a 4xx (an unsafe .qmail its owner may fix).

See also:
    routing/targets.py, queue/manager.py (transport "error").
"""

from __future__ import annotations

from collections.abc import Sequence

from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Bounced, Deferred, Outcome
from postoffice.routing.targets import Refusal, from_spec
from postoffice.smtp import replies


class ErrorAgent:
    """Bounces every recipient with the reply its Refusal target carries."""

    async def deliver(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for rcpt in recipients:
            try:
                target = from_spec(rcpt.address, rcpt.target)
            except ValueError:
                target = None
            reply = target.reply if isinstance(target, Refusal) else replies.TRANSACTION_FAILED
            if reply.is_transient:  # e.g. an unsafe .qmail: the owner may fix it
                outcomes.append(
                    Deferred(recipient=rcpt, reply=reply, relay="none", detail=reply.text)
                )
            else:
                outcomes.append(
                    Bounced(recipient=rcpt, reply=reply, relay="none", detail=reply.text)
                )
        return outcomes
