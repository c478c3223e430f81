"""store/folder.py and store/index.py: UIDs, flags in names, expunge, append, locks, rebuild."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.store import index as idx
from postoffice.store.folder import MaildirFolder, crlf_size, split_name, to_crlf, vsize_from_key
from postoffice.store.interfaces import DELETED, SEEN, MessageGone, pop3_uidl
from postoffice.store.maildir import MaildirWriter


def deliver(path: Path, body: bytes) -> str:
    return MaildirWriter(str(path), hostname="h").deliver(
        io.BytesIO(body), prefix=b"", sender="a@b", arrival=0.0
    )


def msg(n: int) -> bytes:
    return f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode()


def test_uids_ascend_in_arrival_order_and_survive_a_new_instance(tmp_path: Path) -> None:
    for n in range(3):
        deliver(tmp_path, msg(n))
    state = MaildirFolder(str(tmp_path)).sync()
    assert [m.uid for m in state.messages] == [1, 2, 3]
    assert state.uidnext == 4
    bodies = [MaildirFolder(str(tmp_path)).open_message(m.uid).read() for m in state.messages]
    assert [b.split(b"\r\n")[0] for b in bodies] == [b"Subject: m0", b"Subject: m1", b"Subject: m2"]
    deliver(tmp_path, msg(3))
    again = MaildirFolder(str(tmp_path)).sync()
    assert again.uidvalidity == state.uidvalidity
    assert [m.uid for m in again.messages] == [1, 2, 3, 4]
    assert [m.key for m in again.messages[:3]] == [m.key for m in state.messages]


def test_size_is_the_crlf_size_and_open_message_returns_exactly_it(tmp_path: Path) -> None:
    deliver(tmp_path, b"A: b\r\n\r\nline one\r\nline two\r\n")
    folder = MaildirFolder(str(tmp_path))
    (m,) = folder.sync().messages
    data = folder.open_message(m.uid).read()
    assert data == b"A: b\r\n\r\nline one\r\nline two\r\n"
    assert m.size == len(data)


def test_a_foreign_file_without_sizes_in_its_name_is_measured(tmp_path: Path) -> None:
    MaildirFolder(str(tmp_path)).sync()  # creates the Maildir
    (tmp_path / "cur" / "1.foreign:2,S").write_bytes(b"X: y\n\nhello\n")
    (m,) = MaildirFolder(str(tmp_path)).sync().messages
    assert m.size == len(b"X: y\r\n\r\nhello\r\n")
    assert m.flags == {SEEN}
    assert m.key == "1.foreign"


def test_flags_go_into_the_name_and_bump_modseq(tmp_path: Path) -> None:
    deliver(tmp_path, msg(1))
    folder = MaildirFolder(str(tmp_path))
    (m,) = folder.sync().messages
    (changed,) = folder.store_flags([m.uid], frozenset({SEEN, "Junk", "$Forwarded"}), "add")
    assert changed.flags == {SEEN, "Junk", "$Forwarded"}
    assert changed.modseq > m.modseq
    (name,) = os.listdir(tmp_path / "cur")
    assert split_name(name)[1] == "PSa"
    assert (tmp_path / "dovecot-keywords").read_text() == "0 Junk\n"
    assert os.listdir(tmp_path / "new") == []
    fresh = MaildirFolder(str(tmp_path)).sync().messages[0]
    assert fresh.flags == {SEEN, "Junk", "$Forwarded"}
    folder.store_flags([m.uid], frozenset({"Junk"}), "remove")
    folder.store_flags([m.uid], frozenset({DELETED}), "replace")
    assert MaildirFolder(str(tmp_path)).sync().messages[0].flags == {DELETED}


def test_a_rename_by_another_program_is_noticed_with_a_new_modseq(tmp_path: Path) -> None:
    deliver(tmp_path, msg(1))
    folder = MaildirFolder(str(tmp_path))
    (m,) = folder.sync().messages
    (name,) = os.listdir(tmp_path / "new")
    os.rename(tmp_path / "new" / name, tmp_path / "cur" / f"{name}:2,FS")
    (after,) = MaildirFolder(str(tmp_path)).sync().messages
    assert after.uid == m.uid
    assert after.flags == {"\\Flagged", SEEN}
    assert after.modseq > m.modseq
    # The old instance still finds the renamed file.
    assert folder.open_message(m.uid).read().startswith(b"Subject: m1")


def test_expunge_removes_files_and_uids_are_never_reused(tmp_path: Path) -> None:
    for n in range(3):
        deliver(tmp_path, msg(n))
    folder = MaildirFolder(str(tmp_path))
    state = folder.sync()
    assert folder.expunge([2, 99]) == [2]
    with pytest.raises(MessageGone):
        folder.open_message(2)
    assert [m.uid for m in folder.sync().messages] == [1, 3]
    deliver(tmp_path, msg(4))
    assert [m.uid for m in MaildirFolder(str(tmp_path)).sync().messages] == [1, 3, 4]
    assert folder.sync().highestmodseq > state.highestmodseq


def test_expunge_by_another_instance_makes_open_message_raise_gone(tmp_path: Path) -> None:
    deliver(tmp_path, msg(1))
    one, two = MaildirFolder(str(tmp_path)), MaildirFolder(str(tmp_path))
    uid = one.sync().messages[0].uid
    two.sync()
    two.expunge([uid])
    with pytest.raises(MessageGone):
        one.open_message(uid)


def test_append_keeps_flags_and_internal_date_and_returns_the_uid(tmp_path: Path) -> None:
    deliver(tmp_path, msg(1))
    folder = MaildirFolder(str(tmp_path))
    folder.sync()
    uid = folder.append(io.BytesIO(msg(2)), flags=frozenset({SEEN}), internaldate=1_000_000_000.0)
    assert uid == 2
    state = MaildirFolder(str(tmp_path)).sync()
    appended = state.messages[-1]
    assert (appended.uid, appended.flags, appended.internaldate) == (2, {SEEN}, 1_000_000_000.0)
    assert folder.open_message(2).read() == msg(2)


def test_a_lost_index_starts_over_with_a_larger_uidvalidity(tmp_path: Path) -> None:
    deliver(tmp_path, msg(1))
    first = MaildirFolder(str(tmp_path)).sync()
    (tmp_path / idx.INDEX_NAME).write_bytes(
        b"garbage\n" + f"uidvalidity: {first.uidvalidity}\n".encode()
    )
    second = MaildirFolder(str(tmp_path)).sync()
    assert second.uidvalidity > first.uidvalidity
    assert [m.uid for m in second.messages] == [1]
    os.unlink(tmp_path / idx.INDEX_NAME)
    assert MaildirFolder(str(tmp_path)).sync().messages[0].key == first.messages[0].key


def test_an_empty_folder_keeps_its_uidvalidity(tmp_path: Path) -> None:
    first = MaildirFolder(str(tmp_path)).sync()
    assert (tmp_path / idx.INDEX_NAME).is_file()
    corrupt = f"version: 9\nuidvalidity: {first.uidvalidity}\n".encode()
    (tmp_path / idx.INDEX_NAME).write_bytes(corrupt)  # rebuilt and saved
    second = MaildirFolder(str(tmp_path)).sync()
    assert second.uidvalidity > first.uidvalidity
    assert MaildirFolder(str(tmp_path)).sync().uidvalidity == second.uidvalidity


def test_the_pop3_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    one, two = MaildirFolder(str(tmp_path)), MaildirFolder(str(tmp_path))
    lock = one.try_lock("pop3")
    assert lock is not None
    assert two.try_lock("pop3") is None
    assert two.try_lock("other") is not None
    lock.release()
    lock.release()
    assert two.try_lock("pop3") is not None


def test_pop3_uidl_is_printable_and_stable() -> None:
    uidl = pop3_uidl(1763754000, 42)
    assert uidl == "0000002A6920C010"
    assert all(0x21 <= ord(c) <= 0x7E for c in uidl)


def test_index_render_parse_round_trip() -> None:
    ul = idx.UidList.fresh(now=100)
    ul.add("a,S=1,W=2", vsize=2, internaldate=5, info="")
    ul.add("b", vsize=9, internaldate=6, info="RS")
    again = idx.parse(ul.render())
    assert again.render() == ul.render()
    with pytest.raises(idx.CorruptIndex):
        idx.parse(b"version: 1\nuidvalidity: 1\nuidnext: 2\nhighestmodseq: 1\n5 1 1 1 - k\n")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_index_parse_never_raises_anything_but_corrupt(data: bytes) -> None:
    try:
        idx.parse(data)
    except idx.CorruptIndex:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"x y"]), max_size=40))
def test_to_crlf_has_only_crlf_line_ends_and_crlf_size_predicts_it(parts: list[bytes]) -> None:
    data = b"".join(parts).replace(b"\r", b"")  # the store keeps LF only
    out = to_crlf(data)
    assert out.count(b"\n") == out.count(b"\r\n")
    assert len(out) == crlf_size(data)


def test_vsize_from_key() -> None:
    assert vsize_from_key("1.M2P3.host,S=10,W=12") == 12
    assert vsize_from_key("1.M2P3.host,S=10") is None


def test_read_cached_gives_what_open_message_gives_or_nothing(tmp_path: Path) -> None:
    deliver(tmp_path, b"A: b\r\n\r\nline\r\n")
    folder = MaildirFolder(str(tmp_path))
    (m,) = folder.sync().messages
    assert folder.read_cached(m.uid) in (None, folder.open_message(m.uid).read())
    assert folder.read_cached(m.uid) == b"A: b\r\n\r\nline\r\n"  # just read: in the page cache
    assert folder.read_cached(999) is None
    # A name whose S= is not the file's size (other MDAs write the CRLF size
    # there) is read by the file's own size.
    other = tmp_path / "cur" / "1700000000.M1P1.other,S=999,W=999:2,S"
    other.write_bytes(b"X: y\n\nz\n")
    (_, m2) = MaildirFolder(str(tmp_path)).sync().messages
    assert folder.sync().messages[-1].uid == m2.uid
    assert folder.read_cached(m2.uid) == b"X: y\r\n\r\nz\r\n"


def test_same_second_arrivals_get_uids_in_arrival_order(tmp_path: Path) -> None:
    MaildirFolder(str(tmp_path)).sync()
    names = ["1700000000.M100000P1Q2R00.h", "1700000000.M99999P1Q1R00.h", "1700000000.M5P1Q0R00.h"]
    for name in names:
        path = tmp_path / "new" / name
        path.write_bytes(b"S: x\n\nbody\n")
        os.utime(path, (1700000000, 1700000000))
    keys = [m.key for m in MaildirFolder(str(tmp_path)).sync().messages]
    assert keys == [names[2], names[1], names[0]]
