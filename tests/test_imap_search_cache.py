"""SEARCH over the summary cache: header-only programs open no message file once cached."""

from __future__ import annotations

import datetime as dt

from postoffice.imap.cache import SummaryCache
from postoffice.imap.commands import SearchAnd, SearchHeader, SearchText
from postoffice.imap.messages import _search
from postoffice.imap.search import Matcher, SearchContext
from postoffice.testing.memory_store import MemoryFolder


def _folder() -> MemoryFolder:
    folder = MemoryFolder()
    for n in range(5):
        folder.deliver(
            f"Received: from x\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?= {n}\r\n"
            f"From: Joe <joe{n}@example.test>\r\n\r\nbody word{n}\r\n".encode()
        )
    return folder


def _run(folder: MemoryFolder, cache: SummaryCache, *keys: object) -> list[int]:
    state = folder.sync()
    ctx = SearchContext(max_seq=5, max_uid=5, recent=frozenset(), saved=frozenset(), tz=dt.UTC)
    matcher = Matcher(SearchAnd(keys=tuple(keys)), ctx)  # type: ignore[arg-type]
    pairs = list(enumerate(state.messages, start=1))
    return _search(folder, matcher, pairs, set(), cache)


def test_header_search_reads_files_once_then_answers_from_the_cache() -> None:
    folder, cache = _folder(), SummaryCache(None)
    key = SearchHeader(field="subject", value="GRÜSSE 3")
    assert _run(folder, cache, key) == [4]
    opened = folder.calls["open_message"]
    assert opened == 5
    assert _run(folder, cache, key) == [4]
    assert _run(folder, cache, SearchHeader(field="from", value="joe2@")) == [3]
    assert folder.calls["open_message"] == opened  # no file opened again
    key0 = folder.sync().messages[0].key
    assert cache.decoded(key0)[b"subject"] == ["grüsse 0"]  # decoded once, kept


def test_body_and_uncached_fields_still_read_the_message() -> None:
    folder, cache = _folder(), SummaryCache(None)
    _run(folder, cache, SearchHeader(field="subject", value=""))
    opened = folder.calls["open_message"]
    assert _run(folder, cache, SearchText(value="word1", body_only=True)) == [2]
    assert _run(folder, cache, SearchHeader(field="received", value="from x")) == [1, 2, 3, 4, 5]
    assert folder.calls["open_message"] == opened + 10
