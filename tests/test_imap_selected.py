"""imap.selected: sequence numbers, UIDs, and the updates between two snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap.commands import SeqRange, SequenceSet
from postoffice.imap.selected import BadSequence, RecentClaims, SelectedMailbox
from postoffice.store.interfaces import SEEN, FolderState, MessageInfo


def info(uid: int, flags: frozenset[str] = frozenset(), modseq: int = 1) -> MessageInfo:
    return MessageInfo(
        uid=uid, key=f"k{uid}", size=100, flags=flags, internaldate=0.0, modseq=modseq
    )


def state(*messages: MessageInfo, uidnext: int | None = None) -> FolderState:
    top = max((m.uid for m in messages), default=0)
    return FolderState(
        uidvalidity=7, uidnext=uidnext or top + 1, highestmodseq=1, messages=tuple(messages)
    )


def star(first: int | None, last: int | None) -> SequenceSet:
    return SequenceSet(ranges=(SeqRange(first=first, last=last),))


def test_numbers_and_uids() -> None:
    view = SelectedMailbox(state(info(3), info(5), info(9)))
    assert view.exists == 3
    assert view.seq_of(5) == 2 and view.seq_of(4) is None
    assert view.uid_at(3) == 9
    assert view.resolve(star(2, None), uid=False) == [2, 3]
    assert view.resolve(star(4, 9), uid=True) == [2, 3]
    # UIDs not in use are skipped; `n:*` with n above the largest UID is the largest.
    assert view.resolve(star(100, None), uid=True) == [3]
    assert view.resolve(SequenceSet.of(1, 2, 100), uid=True) == []
    with pytest.raises(BadSequence):
        view.resolve(SequenceSet.of(4), uid=False)


def test_empty_mailbox() -> None:
    view = SelectedMailbox(state())
    assert view.resolve(star(1, None), uid=True) == []
    with pytest.raises(BadSequence):
        view.resolve(star(1, None), uid=False)


def test_saved_result() -> None:
    view = SelectedMailbox(state(info(3), info(5), info(9)))
    view.saved = (9, 3, 4)
    assert view.resolve(SequenceSet.SAVED, uid=False) == [1, 3]


def test_new_messages_exist() -> None:
    view = SelectedMailbox(state(info(1)))
    updates = view.update(state(info(1), info(2), info(3)), allow_expunge=True)
    assert updates.exists == 3 and not updates.expunged and not updates.fetches
    assert list(view.uids) == [1, 2, 3]
    assert view.update(view.state, allow_expunge=True).empty


def test_expunge_descending_and_flag_renumbering() -> None:
    view = SelectedMailbox(state(*(info(u) for u in range(1, 7))))
    new = state(info(1), info(3), info(5, frozenset({SEEN})), info(6))
    updates = view.update(new, allow_expunge=True)
    assert updates.expunged == (4, 2)  # each number right when it is sent
    assert updates.exists is None
    # uid 5 was message 5; after two expunges it is message 3.
    assert [(seq, i.uid) for seq, i in updates.fetches] == [(3, 5)]
    assert list(view.uids) == [1, 3, 5, 6]


def test_expunge_deferred_during_fetch() -> None:
    view = SelectedMailbox(state(info(1), info(2), info(3)))
    updates = view.update(state(info(1), info(3), info(4)), allow_expunge=False)
    assert updates.expunged == ()
    assert updates.exists == 4  # the new message numbered after the kept one
    assert list(view.uids) == [1, 2, 3, 4] and view.is_gone(2)
    later = view.update(view.state, allow_expunge=True)
    assert later.expunged == (2,)
    assert list(view.uids) == [1, 3, 4]


def test_new_keywords_announced() -> None:
    view = SelectedMailbox(state(info(1)))
    updates = view.update(state(info(1, frozenset({"$Junk", SEEN}))), allow_expunge=True)
    assert updates.keywords == frozenset({"$Junk"})


def test_recent_claimed_once() -> None:
    claims = RecentClaims()
    folder = ("alice", "INBOX")
    first = claims.claim(folder, [info(1), info(2, frozenset({SEEN}))], read_only=False)
    assert first == {1}  # the first claim: what is unseen
    assert claims.claim(folder, [info(1), info(2), info(3)], read_only=True) == {3}
    assert claims.claim(folder, [info(1), info(2), info(3)], read_only=False) == {3}
    assert claims.claim(folder, [info(1), info(2), info(3)], read_only=False) == set()
    view = SelectedMailbox(
        state(info(1), info(2), info(3)),
        claim=lambda added: claims.claim(folder, added, read_only=False),
    )
    updates = view.update(state(info(1), info(2), info(3), info(4)), allow_expunge=True)
    assert updates.recent == 1 and view.recent == {4}


@settings(max_examples=200, deadline=None)
@given(
    st.sets(st.integers(1, 60), max_size=30),
    st.sets(st.integers(1, 60), max_size=30),
    st.booleans(),
)
def test_client_view_follows_updates(old: set[int], new: set[int], allow: bool) -> None:
    """A client that applies the updates as RFC 9051 says ends with the server's view."""
    top = max(old, default=0)
    new = {u for u in new if u in old or u > top}  # UIDs only grow
    view = SelectedMailbox(state(*(info(u) for u in sorted(old))))
    client = sorted(old)
    updates = view.update(state(*(info(u) for u in sorted(new))), allow_expunge=allow)
    for seq in updates.expunged:
        del client[seq - 1]
    if updates.exists is not None:
        client += sorted(u for u in new if u > top)
        assert len(client) == updates.exists
    assert client == list(view.uids)
    if allow:
        assert list(view.uids) == sorted(new)


def test_views_share_a_snapshot_until_they_diverge() -> None:
    snapshot = state(info(1), info(2))
    a, b = SelectedMailbox(snapshot), SelectedMailbox(snapshot)
    assert a.infos is b.infos and a.uids is b.uids  # one copy for many sessions
    a.set_flags([info(2, frozenset({SEEN}))])
    assert a.info(2).flags == frozenset({SEEN}) and b.info(2).flags == frozenset()
    assert snapshot.messages[1].flags == frozenset()
    newer = state(info(1), info(2, frozenset({SEEN})), info(3))
    a.update(newer, allow_expunge=True)
    b.update(newer, allow_expunge=True)
    assert a.infos is newer.messages and b.infos is newer.messages
