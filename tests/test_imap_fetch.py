"""imap.fetch and imap.cache: FETCH responses over a real Maildir folder."""

from __future__ import annotations

import io
import os
from pathlib import Path

from postoffice.imap.cache import CACHE_NAME, SummaryCache, SummaryCaches
from postoffice.imap.commands import (
    FetchAttr,
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    Partial,
    Section,
    SectionText,
)
from postoffice.imap.fetch import FetchRenderer, flag_list, internal_date
from postoffice.store.folder import MaildirFolder
from postoffice.store.index import INDEX_NAME
from postoffice.store.interfaces import SEEN

SIMPLE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nHi Bob.\r\n"
)
MULTI = (
    b"From: alice@example.test\r\n"
    b"Subject: parts\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n'
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"first\r\n"
    b"--b\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAw==\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: x-unknown\r\n"
    b"\r\n"
    b"odd\r\n"
    b"--b--\r\n"
)


def folder_with(tmp_path: Path, *messages: bytes) -> MaildirFolder:
    folder = MaildirFolder(str(tmp_path / "Maildir"))
    for m in messages:
        folder.append(io.BytesIO(m), flags=frozenset(), internaldate=1_000_000_000.0)
    return folder


def render(folder: MaildirFolder, cache: SummaryCache, items, **kw):  # type: ignore[no-untyped-def]
    state = folder.sync()
    r = FetchRenderer(folder, cache, items, uid=kw.pop("uid", False),
                      read_only=kw.pop("read_only", False), **kw)  # fmt: skip
    return r.render(list(enumerate(state.messages, start=1)))


def test_flags_and_dates() -> None:
    assert flag_list({"$Forwarded", SEEN, "\\Deleted"}) == b"(\\Seen \\Deleted $Forwarded)"
    assert flag_list((), recent=True) == b"(\\Recent)"
    text = internal_date(1_000_000_000.0)
    assert text.startswith(b'"') and text.endswith(b'"') and len(text) == 28


def test_envelope_from_cache_file(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, SIMPLE, MULTI)
    caches = SummaryCaches()
    cache = caches.for_folder(folder)
    out = render(folder, cache, (FetchAttr.FLAGS, FetchAttr.ENVELOPE), uid=True)
    lines = out.data.split(b"\r\n")
    assert lines[0].startswith(b"* 1 FETCH (UID 1 FLAGS () ENVELOPE (")
    assert b'"hello"' in lines[0] and b'"Alice" NIL "alice" "example.test"' in lines[0]
    assert lines[1].startswith(b"* 2 FETCH (UID 2 FLAGS () ENVELOPE (")
    # Both summaries went to the file; a new process reads them back.
    path = Path(folder.path) / CACHE_NAME
    assert path.read_bytes().startswith(b"postoffice-cache version: 1\n")
    fresh = SummaryCache(str(path))
    state = folder.sync()
    summary = fresh.get(state.messages[0].key)
    assert summary is not None and b'"hello"' in summary.envelope
    # A torn tail is dropped and the file rewritten.
    with open(path, "ab") as f:
        f.write(b"key 99\nshort")
    torn = SummaryCache(str(path))
    assert torn.get(state.messages[1].key) is not None
    assert not path.read_bytes().endswith(b"short")


def test_body_sections_set_seen(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, SIMPLE)
    cache = SummaryCache(None)
    peek = render(folder, cache, (FetchBody(section=Section(), peek=True),))
    assert peek.data == b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\n" % (len(SIMPLE), SIMPLE)
    assert not peek.changed
    out = render(folder, cache, (FetchBody(section=Section(text=SectionText.TEXT)),))
    assert out.data == b"* 1 FETCH (BODY[TEXT] {9}\r\nHi Bob.\r\n FLAGS (\\Seen))\r\n"
    assert [i.flags for i in out.changed] == [frozenset({SEEN})]
    assert folder.sync().messages[0].flags == frozenset({SEEN})


def test_read_only_does_not_set_seen(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, SIMPLE)
    out = render(folder, SummaryCache(None), (FetchAttr.RFC822,), read_only=True)
    assert out.data.startswith(b"* 1 FETCH (RFC822 {%d}\r\n" % len(SIMPLE))
    assert folder.sync().messages[0].flags == frozenset()


def test_partial_header_fields_and_binary(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, MULTI)
    items = (
        FetchBody(section=Section(part=(1,)), partial=Partial(offset=1, length=3), peek=True),
        FetchBody(section=Section(text=SectionText.HEADER_FIELDS, fields=("SUBJECT",)), peek=True),
        FetchBinary(part=(2,), peek=True),
        FetchBinarySize(part=(2,)),
        FetchBody(section=Section(part=(9,)), peek=True),
    )
    out = render(folder, SummaryCache(None), items)
    text = out.data
    assert b"BODY[1]<1> {3}\r\nirs" in text
    assert b"BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: parts\r\n\r\n" in text
    assert b"BINARY[2] ~{4}\r\n\x00\x01\x02\x03" in text
    assert b"BINARY.SIZE[2] 4" in text
    assert b"BODY[9] NIL" in text
    assert not out.unknown_cte
    bad = render(folder, SummaryCache(None), (FetchBinary(part=(3,), peek=True),))
    assert bad.unknown_cte


def test_expunged_meanwhile_is_left_out(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, SIMPLE, SIMPLE)
    state = folder.sync()
    r = FetchRenderer(
        folder, SummaryCache(None), (FetchAttr.RFC822_HEADER,), uid=False, read_only=False
    )
    for sub in ("cur", "new"):
        for name in os.listdir(os.path.join(folder.path, sub)):
            if name.startswith(state.messages[0].key):
                os.unlink(os.path.join(folder.path, sub, name))
    folder.sync()
    out = r.render(list(enumerate(state.messages, start=1)))
    assert out.missing == 1
    assert out.data.startswith(b"* 2 FETCH (RFC822.HEADER {")


def test_empty_folder_keeps_its_uidvalidity(tmp_path: Path) -> None:
    """offlineimap and mbsync remember an empty folder's UIDVALIDITY too."""
    folder = MaildirFolder(str(tmp_path / "Maildir" / ".Drafts"))
    first = folder.sync().uidvalidity
    assert (Path(folder.path) / INDEX_NAME).exists()  # kept, not made up again at each sync
    assert MaildirFolder(folder.path).sync().uidvalidity == first
    assert folder.sync().uidvalidity == first
