"""imap.cache — per-folder cache of message summaries (ENVELOPE, BODYSTRUCTURE) in a file.

Description:
    FETCH ENVELOPE, BODY and BODYSTRUCTURE need the message parsed; parsing
    10,000 messages for every `FETCH 1:* ENVELOPE` would read every file.
    A `SummaryCache` keeps, per message key (store.interfaces.MessageInfo
    .key, stable for a message's life), the blob of
    imap.structure.cached_summary(), computed the first time any session
    needs it and then shared:

        get(key) -> bytes | None        the blob, from memory
        put(items)                      remember new blobs (and append
                                        them to the file)

    In memory it is a dict per folder, shared by every session of the
    process (`SummaryCaches.for_folder(folder)`, keyed by the Folder object,
    which store/opener.py shares). For a Maildir folder (an object with a
    `path`, store/folder.py MaildirFolder) the blobs also go to
    `<maildir>/postoffice-cache`, so a restart does not parse everything
    again and other processes can read what one wrote.

    File format (version 1):
        postoffice-cache version: 1 LF
        then records: key SP length LF blob LF
    Records are appended with one write() on an O_APPEND descriptor, so
    writers never interleave within a record. The reader takes every
    record it can parse and stops at the first one it cannot (a torn
    write at the end): the rest is recomputed. Records for keys no longer
    in the folder are dropped when the file is rewritten, which happens
    when over half its records are stale (temp file, fsync not needed:
    losing the cache loses nothing, rename).

    The cache is a cache: deleting the file loses nothing; a blob that
    imap.structure.from_summary() refuses is recomputed by the caller.

Security:
    The file is created 0600 in the user's Maildir. Keys containing
    whitespace are kept in memory only (they could not be parsed back).

See also:
    imap/structure.py (the blob format), imap/fetch.py (the reader),
    store/folder.py, store/index.py.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable

from postoffice.store.folder import MaildirFolder

__all__ = ["CACHE_NAME", "SummaryCache", "SummaryCaches"]

CACHE_NAME = "postoffice-cache"
_HEADER = b"postoffice-cache version: 1\n"
_RECORD = re.compile(rb"(\S+) ([0-9]{1,9})\n")
_MAX_FILE = 512 * 1024 * 1024  # never load a cache file larger than this


class SummaryCache:
    """The summaries of one folder (see the module manual)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._blobs: dict[str, bytes] = {}
        self._records = 0  # records in the file, stale ones included
        self._loaded = path is None
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._blobs)

    def get(self, key: str) -> bytes | None:
        if not self._loaded:
            self._load()
        return self._blobs.get(key)

    def put(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Remember blobs; append those with file-safe keys to the file."""
        out = bytearray()
        with self._lock:
            for key, blob in items:
                if key in self._blobs:
                    continue
                self._blobs[key] = blob
                if self.path is not None and _RECORD.fullmatch(b"%s %d\n" % (key.encode(), 0)):
                    out += b"%s %d\n%s\n" % (key.encode(), len(blob), blob)
                    self._records += 1
        if out and self.path is not None:
            self._append(bytes(out))

    def forget_except(self, keys: Iterable[str]) -> None:
        """Drop the blobs of keys no longer in the folder; rewrite the file when
        most of its records are stale."""
        live = set(keys)
        with self._lock:
            for key in [k for k in self._blobs if k not in live]:
                del self._blobs[key]
            stale = self._records - len(self._blobs)
            if self.path is None or stale < 1000 or stale < len(self._blobs):
                return
            blobs = dict(self._blobs)
        self._rewrite(blobs)

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
                self._blobs.setdefault(
                    m.group(1).decode("utf-8", "surrogateescape"), data[start:end]
                )
                count += 1
                pos = end + 1
            self._records = count
            if pos < len(data):  # a torn or foreign tail: later appends would be lost
                self._rewrite(dict(self._blobs))

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

    def _rewrite(self, blobs: dict[str, bytes]) -> None:
        assert self.path is not None
        tmp = f"{self.path}.tmp.{os.getpid()}.{threading.get_ident()}"
        parts = [_HEADER]
        for key, blob in blobs.items():
            if _RECORD.fullmatch(b"%s %d\n" % (key.encode(), 0)):
                parts.append(b"%s %d\n%s\n" % (key.encode(), len(blob), blob))
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
