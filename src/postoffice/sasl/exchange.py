"""sasl.exchange — the bookkeeping every mechanism shares: steps, cancellation, authorization.

Description:
    `BaseExchange` keeps the current Step and enforces the order of calls:
    respond() only after a Challenge, verified() only after a
    VerifyPassword, nothing after Success or Failure (SaslError: a caller's
    bug). A `None` response is the client's "*" and fails the exchange
    with kind "cancelled" (RFC 4954 §4, RFC 4422 §3.5). Each mechanism
    supplies `_on_response(data) -> Step`.

    Authorization (RFC 4422 §3.4.1): a client may ask to act as an identity
    other than the one it authenticated as. `default_authorize` allows only
    the same name (compared without regard to case, as the user database
    compares names); an empty authzid means "the same as authcid". Callers
    with a richer rule pass `authorize` to sasl.start().

    Text in SASL messages is UTF-8 (RFC 4422 §3.4); `utf8()` decodes
    strictly and returns None for anything else.

See also:
    sasl/interfaces.py, sasl/mechanisms.py, RFC 4422.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from postoffice.sasl.interfaces import (
    Challenge,
    Failure,
    FailureKind,
    SaslError,
    Step,
    Success,
    VerifyPassword,
)

__all__ = ["Authorize", "BaseExchange", "default_authorize", "utf8"]

Authorize = Callable[[str, str], bool]
"""authorize(authcid, authzid) -> may authcid act as authzid?"""


def default_authorize(authcid: str, authzid: str) -> bool:
    """Only oneself: an empty authzid, or the authcid in any case."""
    return authzid == "" or authzid.lower() == authcid.lower()


def utf8(data: bytes) -> str | None:
    """Strict UTF-8 decoding; None when `data` is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class BaseExchange(abc.ABC):
    """Shared state handling for the mechanisms (see the module docstring)."""

    mechanism_name = ""

    def __init__(self, authorize: Authorize | None) -> None:
        self._authorize = authorize or default_authorize
        self._step: Step = Challenge(data=b"")
        self._authcid = ""

    @property
    def mechanism(self) -> str:
        return self.mechanism_name

    @property
    def step(self) -> Step:
        return self._step

    @property
    def done(self) -> bool:
        return isinstance(self._step, Success | Failure)

    def respond(self, data: bytes | None) -> Step:
        if not isinstance(self._step, Challenge):
            raise SaslError(f"{self.mechanism_name}: respond() when no challenge is open")
        if data is None:  # RFC 4954 §4: "*"
            return self._set(self._fail("cancelled", "cancelled by the client"))
        return self._set(self._on_response(bytes(data)))

    def verified(self, ok: bool | None) -> Step:
        step = self._step
        if not isinstance(step, VerifyPassword):
            raise SaslError(f"{self.mechanism_name}: verified() when no password was asked for")
        if ok is None:
            return self._set(self._fail("temporary", "user database unavailable"))
        if not ok:
            return self._set(self._fail("credentials", "wrong password or unknown user"))
        return self._set(Success(authcid=step.authcid, authzid=step.authzid))

    # -- for the mechanisms --------------------------------------------------

    @abc.abstractmethod
    def _on_response(self, data: bytes) -> Step:
        """The mechanism's answer to one client response."""

    def _set(self, step: Step) -> Step:
        self._step = step
        return step

    def _fail(self, kind: FailureKind, reason: str) -> Failure:
        return Failure(kind=kind, reason=f"{self.mechanism_name}: {reason}", authcid=self._authcid)

    def _authzid(self, authcid: str, authzid: str) -> str | Failure:
        """The effective authzid, or a Failure when authcid may not act as it."""
        if not self._authorize(authcid, authzid):
            return self._fail("authorization", f"{authcid!r} may not act as {authzid!r}")
        return authzid or authcid

    def _password(self, authcid: str, authzid: str, password: str) -> Step:
        """The end of a password mechanism: authorize, then ask for verification."""
        self._authcid = authcid
        effective = self._authzid(authcid, authzid)
        if isinstance(effective, Failure):
            return effective
        return VerifyPassword(authcid=authcid, authzid=effective, password=password)
