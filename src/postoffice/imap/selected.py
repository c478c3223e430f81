"""imap.selected — the selected mailbox as one session sees it: numbers, UIDs, pending updates.

Description:
    `SelectedMailbox(state, read_only=..., recent=...)` holds the snapshot a
    session has reported to its client, in message sequence number order
    (RFC 9051 §2.3.1.2): `infos[seq - 1]` is the MessageInfo of message
    `seq`. Nothing here does I/O; the session syncs the Folder in a worker
    thread and hands the new FolderState to `update()`.

    update(new_state, allow_expunge) -> Updates
        What changed since the client last heard, as untagged responses to
        send before the tagged one (RFC 9051 §7.5.1, §5.2):
          * `expunged`: sequence numbers for `* n EXPUNGE`, in the order to
            send them: descending, so each number is right at the moment
            it is sent (every EXPUNGE renumbers the messages after it);
          * `exists` / `recent`: the new counts when they changed;
          * `fetches`: (seq, info) of messages whose flags changed under
            another session, for `* n FETCH (FLAGS ... UID n)`;
          * `keywords`: the keywords in use when a new one appeared, for
            new FLAGS / PERMANENTFLAGS responses (RFC 9051 §7.3.5).
        With `allow_expunge=False` (during FETCH, STORE and SEARCH, which
        may not be followed by EXPUNGE: RFC 9051 §7.5.1) expunged messages
        stay in the view, keep their numbers and their last known data,
        and are reported at the next command that allows it; new messages
        are numbered after them.

    The sequence/UID mapping: `uid_at(seq)`, `seq_of(uid)` (bisect,
    O(log n)), `resolve(set, uid=...)`; sets are resolved with `*` as the
    largest number in use (RFC 9051 §9 seq-number). A message number that
    is not in use raises BadSequence (the session answers BAD); UIDs that
    are not in use are skipped (RFC 9051 §6.4.9). `$` is the saved search
    result (RFC 5182), `saved`, a tuple of UIDs.

    RecentClaims (IMAP4rev1 \\Recent, RFC 3501 §2.3.2): a message is
    recent in exactly one session, the first to see it. One RecentClaims
    is shared by every session of the process (keyed by user and folder
    name); it remembers the highest UID already claimed per folder. The
    first claim after the process starts counts the messages without
    \\Seen as recent (what a Maildir reader calls new), later ones the
    UIDs above the highest claimed. Read-only sessions (EXAMINE) see
    recent messages without claiming them. Claims live in memory only:
    RFC 9051 dropped \\Recent, and nothing else depends on it.

See also:
    RFC 9051 §2.3.1 (UIDs, numbers), §5.2 (mailbox size and status
    updates), §5.5 (commands during which EXPUNGE may not be sent),
    §7.5.1 (EXPUNGE), RFC 3501 §2.3.2 (\\Recent), RFC 5182 (SEARCHRES);
    imap/session.py, store/interfaces.py.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from postoffice.imap.commands import SequenceSet
from postoffice.store.interfaces import SEEN, SYSTEM_FLAGS, FolderState, MessageInfo

__all__ = ["BadSequence", "RecentClaims", "SelectedMailbox", "Updates"]


class BadSequence(Exception):
    """A message sequence number that is not in use (the session answers BAD)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Updates:
    """Untagged updates for the client (see the module manual)."""

    expunged: tuple[int, ...] = ()  # sequence numbers, descending
    exists: int | None = None
    recent: int | None = None
    fetches: tuple[tuple[int, MessageInfo], ...] = ()
    keywords: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        return (
            not self.expunged
            and self.exists is None
            and self.recent is None
            and not self.fetches
            and self.keywords is None
        )


@dataclass(slots=True)
class SelectedMailbox:
    """One session's view of its selected mailbox (see the module manual)."""

    state: FolderState
    read_only: bool = False
    recent: set[int] = field(default_factory=set)
    # Shared with every session that has the same snapshot (tuples) until this
    # view diverges from it (own flag changes, expunges not yet reported): lists.
    infos: Sequence[MessageInfo] = field(init=False)
    uids: Sequence[int] = field(init=False)
    gone: set[int] = field(init=False, default_factory=set)  # expunged, not yet reported
    keywords: frozenset[str] = field(init=False)
    saved: tuple[int, ...] = ()  # RFC 5182 `$`: UIDs of the last SEARCH ... SAVE
    # Which new messages are \Recent for this session (RecentClaims.claim), None: none.
    claim: Callable[[list[MessageInfo]], set[int]] | None = None

    def __post_init__(self) -> None:
        self.infos = self.state.messages
        self.uids = uids_of(self.state)
        self.keywords = _keywords(self.infos)

    # -- numbers and UIDs ---------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.infos)

    @property
    def uidvalidity(self) -> int:
        return self.state.uidvalidity

    @property
    def uidnext(self) -> int:
        return self.state.uidnext

    def seq_of(self, uid: int) -> int | None:
        """The sequence number of `uid`, None when it is not in the view."""
        uids = self.uids
        at = bisect_left(uids, uid)
        if at < len(uids) and uids[at] == uid:
            return at + 1
        return None

    def uid_at(self, seq: int) -> int:
        return self.uids[seq - 1]

    def info(self, seq: int) -> MessageInfo:
        return self.infos[seq - 1]

    def resolve(self, numbers: SequenceSet, *, uid: bool) -> list[int]:
        """The sequence numbers (ascending) a set names. Message numbers out of
        range raise BadSequence; UIDs not in use are skipped (RFC 9051 §6.4.9)."""
        count = len(self.uids)
        if numbers.saved:
            found = [s for s in (self.seq_of(u) for u in self.saved) if s is not None]
            return sorted(found)
        if uid:
            if not count:
                return []
            largest = self.uids[-1]
            out: list[int] = []
            for low, high in numbers.intervals(largest):
                start = bisect_left(self.uids, low)
                stop = bisect_left(self.uids, high + 1)
                out.extend(range(start + 1, stop + 1))
            return out
        if not count:
            raise BadSequence("no messages in the mailbox")
        seqs: list[int] = []
        for low, high in numbers.intervals(count):
            if high > count:
                raise BadSequence("message sequence number out of range")
            seqs.extend(range(low, high + 1))
        return seqs

    def is_gone(self, seq: int) -> bool:
        return self.uids[seq - 1] in self.gone

    # -- changes ----------------------------------------------------------------

    def update(self, new: FolderState, *, allow_expunge: bool) -> Updates:
        """Bring the view up to `new` (see the module manual)."""
        if new is self.state and (not self.gone or not allow_expunge):
            return Updates()
        old_recent = len(self.recent)
        by_uid = {m.uid: m for m in new.messages} if new is not self.state else None
        fetches: list[tuple[int, MessageInfo]] = []
        kept: list[MessageInfo] = []
        if by_uid is not None:
            for info in self.infos:
                fresh = by_uid.pop(info.uid, None)
                if fresh is None:
                    self.gone.add(info.uid)
                    kept.append(info)
                    continue
                if fresh.flags != info.flags:
                    fetches.append((len(kept) + 1, fresh))
                kept.append(fresh)
            # Messages the view has not seen yet (ascending UID, above every old one;
            # a UID below our largest cannot be new: RFC 9051 §2.3.1.1).
            added = sorted(by_uid.values(), key=lambda m: m.uid)
            kept.extend(added)
        else:
            kept = list(self.infos)
            added = []
        expunged: list[int] = []
        if allow_expunge and self.gone:
            survivors = []
            for seq, info in enumerate(kept, start=1):
                if info.uid in self.gone:
                    expunged.append(seq)
                else:
                    survivors.append(info)
            self.recent -= self.gone
            gone = self.gone
            self.gone = set()
            # Renumber the flag updates for the numbers after the expunges
            # (`expunged` is still ascending here).
            fetches = [
                (seq - bisect_left(expunged, seq), info)
                for seq, info in fetches
                if info.uid not in gone
            ]
            expunged.reverse()
            kept = survivors
        if not self.gone and len(kept) == len(new.messages):
            self.infos, self.uids = new.messages, uids_of(new)  # the shared snapshot
        else:
            self.infos, self.uids = kept, [m.uid for m in kept]
        self.state = new
        keywords = _keywords(kept)
        new_keywords = None
        if keywords - self.keywords:
            new_keywords = keywords | self.keywords
            self.keywords = new_keywords
        if added and self.claim is not None:
            self.recent.update(self.claim(added))
        exists = len(kept) if added else None
        recent = len(self.recent) if len(self.recent) != old_recent or added else None
        return Updates(
            expunged=tuple(expunged),
            exists=exists,
            recent=recent,
            fetches=tuple(fetches),
            keywords=new_keywords,
        )

    def set_flags(self, changed: Iterable[MessageInfo]) -> list[tuple[int, MessageInfo]]:
        """This session's own STORE: the view takes the new flags at once;
        returns (seq, info) for the FETCH responses."""
        out = []
        infos = self.infos if isinstance(self.infos, list) else None
        for info in changed:
            seq = self.seq_of(info.uid)
            if seq is None:
                continue
            if infos is None:
                infos = self.infos = list(self.infos)  # no longer the shared snapshot
            infos[seq - 1] = info
            out.append((seq, info))
        return out


_UIDS: OrderedDict[int, tuple[FolderState, tuple[int, ...]]] = OrderedDict()


def uids_of(state: FolderState) -> tuple[int, ...]:
    """The UIDs of a snapshot, computed once for all the sessions that share it
    (Folder.sync returns the same FolderState object while nothing changes)."""
    key = id(state)
    hit = _UIDS.get(key)
    if hit is not None and hit[0] is state:
        _UIDS.move_to_end(key)
        return hit[1]
    uids = tuple(m.uid for m in state.messages)
    _UIDS[key] = (state, uids)
    while len(_UIDS) > 64:
        _UIDS.popitem(last=False)
    return uids


def _keywords(infos: Iterable[MessageInfo]) -> frozenset[str]:
    found: set[str] = set()
    for info in infos:
        if info.flags and not info.flags <= SYSTEM_FLAGS:
            found.update(f for f in info.flags if f not in SYSTEM_FLAGS)
    return frozenset(found)


class RecentClaims:
    """Which session sees a message as \\Recent (see the module manual)."""

    def __init__(self, *, max_folders: int = 100_000) -> None:
        self._claimed: OrderedDict[Hashable, int] = OrderedDict()
        self._max = max_folders
        self._lock = threading.Lock()

    def claim(
        self, folder: Hashable, messages: Iterable[MessageInfo], *, read_only: bool
    ) -> set[int]:
        """The UIDs among `messages` that are recent for this session; `folder`
        names the folder for the life of the process (user and folder name)."""
        with self._lock:
            floor = self._claimed.get(folder)
            messages = list(messages)
            if floor is None:
                recent = {m.uid for m in messages if SEEN not in m.flags}
            else:
                recent = {m.uid for m in messages if m.uid > floor}
            if not read_only:
                top = max((m.uid for m in messages), default=0)
                self._claimed[folder] = max(top, floor or 0)
                self._claimed.move_to_end(folder)
                while len(self._claimed) > self._max:
                    self._claimed.popitem(last=False)
            return recent
