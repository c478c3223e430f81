"""Errors shared by every layer: protocol, configuration, temporary and permanent failures.

Description:
    TempFail and PermFail carry the Reply a client should see plus a reason
    for the log; the reply text never contains paths, keys or exception text
    (CONVENTIONS.md §5). ConfigError names file, line and key.
"""

from __future__ import annotations

from postoffice.smtp.replies import Reply


class PostofficeError(Exception):
    """Base class of every error postoffice raises on purpose."""


class ProtocolError(PostofficeError):
    """A peer broke the protocol; carries the reply to send."""

    def __init__(self, reply: Reply, reason: str = "") -> None:
        super().__init__(reason or str(reply))
        self.reply = reply
        self.reason = reason or str(reply)


class ConfigError(PostofficeError):
    """A configuration or map file is wrong: names file, line and key."""

    def __init__(self, message: str, *, file: str = "", line: int = 0, key: str = "") -> None:
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        where = file
        if file and line:
            where = f"{file}:{line}"
        if key:
            where = f"{where}: {key}" if where else key
        super().__init__(f"{where}: {message}" if where else message)


class DeliveryFailure(PostofficeError):
    """A failure with a reply for the client and a reason for the log."""

    def __init__(self, reply: Reply, reason: str = "") -> None:
        super().__init__(reason or str(reply))
        self.reply = reply
        self.reason = reason or str(reply)


class TempFail(DeliveryFailure):
    """Try again later (4xx): disk full, I/O error, a map that cannot be read."""


class PermFail(DeliveryFailure):
    """Will never work (5xx): unknown user, policy rejection."""
