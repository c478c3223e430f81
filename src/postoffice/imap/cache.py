"""imap.cache — per-folder cache of message summaries (ENVELOPE, BODYSTRUCTURE) in a file.

Description:
    FETCH ENVELOPE, BODY and BODYSTRUCTURE need the message parsed; parsing
    10,000 messages for every `FETCH 1:* ENVELOPE` would read every file.
    A `SummaryCache` keeps, per message key (store.interfaces.MessageInfo
    .key, stable for a message's life), its imap.structure.Summary,
    computed the first time any session needs it and then shared:

        get(key) -> Summary | None      from memory
        put(items)                      remember new summaries (and append
                                        them to the file)
        forget_except(keys)             drop those of expunged messages

    In memory it is a dict per folder, shared by every session of the
    process (`SummaryCaches.for_folder(folder)`). For a Maildir folder
    (store/folder.py MaildirFolder) the summaries also go to
    `<maildir>/postoffice-cache`, so a restart does not parse everything
    again and other processes can read what one wrote.

    File format (version 1):
        postoffice-cache version: 1 LF
        then records: key SP length LF blob LF
    where blob is imap.structure.dump_summary()'s. Records are appended
    with one write() on an O_APPEND descriptor, so writers never interleave
    within a record. The reader parses every record once, at the first
    get(), and stops at the first one it cannot frame (a torn write at the
    end: the file is then rewritten without it); a blob that
    imap.structure.from_summary() refuses is skipped and recomputed when
    needed. Records of keys no longer in the folder are dropped when the
    file is rewritten, which happens when over half its records are stale
    (temp file and rename; no fsync: losing the cache loses nothing).

Security:
    The file is created 0600 in the user's Maildir. Keys containing
    whitespace are kept in memory only (they could not be parsed back).
    The file is untrusted input like any other: a record that does not
    parse is ignored (a hypothesis test feeds it garbage).

See also:
    imap/structure.py (Summary and its serialisation), imap/fetch.py (the
    reader), store/folder.py, store/index.py.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable

from postoffice.imap.structure import Summary, dump_summary, from_summary
from postoffice.store.folder import MaildirFolder

__all__ = ["CACHE_NAME", "SummaryCache", "SummaryCaches"]

CACHE_NAME = "postoffice-cache"
_HEADER = b"postoffice-cache version: 1\n"
_RECORD = re.compile(rb"(\S+) ([0-9]{1,9})\n")
_KEY = re.compile(rb"[!-~\x80-\xff]+")
_MAX_FILE = 512 * 1024 * 1024  # never load a cache file larger than this


class SummaryCache:
    """The summaries of one folder (see the module manual)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._summaries: dict[str, Summary] = {}
        self._decoded: dict[str, dict[bytes, list[str]]] = {}
        self._records = 0  # records in the file, stale ones included
        self._loaded = path is None
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._summaries)

    def decoded(self, key: str) -> dict[bytes, list[str]]:
        """The SEARCH memo of message `key`: decoded, case-folded header field
        texts by field name (imap.search fills it), in memory only."""
        memo = self._decoded.get(key)
        if memo is None:
            memo = self._decoded[key] = {}
        return memo

    def get(self, key: str) -> Summary | None:
        if not self._loaded:
            self._load()
        return self._summaries.get(key)

    def put(self, items: Iterable[tuple[str, Summary]]) -> None:
        """Remember summaries; append those with file-safe keys to the file."""
        out = bytearray()
        with self._lock:
            for key, summary in items:
                if key in self._summaries:
                    continue
                self._summaries[key] = summary
                if self.path is not None:
                    record = _record(key, summary)
                    if record:
                        out += record
                        self._records += 1
        if out and self.path is not None:
            self._append(bytes(out))

    def forget_except(self, keys: Iterable[str]) -> None:
        """Drop the summaries of keys no longer in the folder; rewrite the file
        when most of its records are stale."""
        live = set(keys)
        with self._lock:
            for key in [k for k in self._summaries if k not in live]:
                del self._summaries[key]
            for key in [k for k in self._decoded if k not in live]:
                del self._decoded[key]
            stale = self._records - len(self._summaries)
            if self.path is None or stale < 1000 or stale < len(self._summaries):
                return
            summaries = dict(self._summaries)
        self._rewrite(summaries)

    # -- the file -------------------------------------------------------------

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            assert self.path is not None
            try:
                with open(self.path, "rb") as f:
                    if os.fstat(f.fileno()).st_size > _MAX_FILE:
                        return
                    data = f.read()
            except OSError:
                return
            if not data.startswith(_HEADER):
                return
            pos = len(_HEADER)
            count = 0
            while pos < len(data):
                m = _RECORD.match(data, pos)
                if m is None:
                    break
                start = m.end()
                end = start + int(m.group(2))
                if data[end : end + 1] != b"\n":
                    break
                try:
                    summary = from_summary(data[start:end])
                except ValueError:  # not ours, or another version: recomputed when needed
                    summary = None
                if summary is not None:
                    key = m.group(1).decode("utf-8", "surrogateescape")
                    self._summaries.setdefault(key, summary)
                count += 1
                pos = end + 1
            self._records = count
            if pos < len(data):  # a torn or foreign tail: later appends would be lost
                self._rewrite(dict(self._summaries))

    def _append(self, data: bytes) -> None:
        assert self.path is not None
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return  # a read-only or full disk: the cache stays in memory
        try:
            if os.fstat(fd).st_size == 0:
                data = _HEADER + data
            os.write(fd, data)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _rewrite(self, summaries: dict[str, Summary]) -> None:
        assert self.path is not None
        tmp = f"{self.path}.tmp.{os.getpid()}.{threading.get_ident()}"
        parts = [_HEADER]
        for key, summary in summaries.items():
            record = _record(key, summary)
            if record:
                parts.append(record)
        try:
            with open(tmp, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(b"".join(parts))
            os.rename(tmp, self.path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return
        with self._lock:
            self._records = len(parts) - 1


def _record(key: str, summary: Summary) -> bytes:
    """`key SP length LF blob LF`, or b"" for a key the file cannot hold."""
    name = key.encode("utf-8", "surrogateescape")
    if _KEY.fullmatch(name) is None:
        return b""
    blob = dump_summary(summary)
    return b"%s %d\n%s\n" % (name, len(blob), blob)


class SummaryCaches:
    """One SummaryCache per folder, shared by the sessions of a process: a
    Maildir folder's by its path (the most recently used `max_folders` are
    kept in memory), any other by its Folder object, for as long as it lives."""

    def __init__(self, *, max_folders: int = 32) -> None:
        self._by_path: OrderedDict[str, SummaryCache] = OrderedDict()
        self._by_object: weakref.WeakKeyDictionary[object, SummaryCache] = (
            weakref.WeakKeyDictionary()
        )
        self._max = max_folders
        self._lock = threading.Lock()

    def for_folder(self, folder: object) -> SummaryCache:
        with self._lock:
            if isinstance(folder, MaildirFolder):
                cache = self._by_path.get(folder.path)
                if cache is None:
                    cache = SummaryCache(os.path.join(folder.path, CACHE_NAME))
                    self._by_path[folder.path] = cache
                    while len(self._by_path) > self._max:
                        self._by_path.popitem(last=False)
                self._by_path.move_to_end(folder.path)
                return cache
            try:
                cache = self._by_object.get(folder)
                if cache is None:
                    cache = self._by_object[folder] = SummaryCache(None)
            except TypeError:  # not weakly referenceable: a private cache
                return SummaryCache(None)
            return cache
