"""imap.messages — FETCH, STORE, SEARCH, COPY, MOVE and EXPUNGE on the selected mailbox.

Description:
    The selected-state commands (RFC 9051 §6.4), each an `async def` taking
    the session and the command, writing untagged responses and returning
    the tagged Result. Numbers come from the session's view
    (imap/selected.py); blocking store work runs in a worker thread.

    FETCH (RFC 9051 §6.4.5): the messages are rendered in batches by
    imap/fetch.py (about 1 MiB of message data, or 500 messages, per
    batch), each batch written as one buffer and drained before the next.

    STORE (RFC 9051 §6.4.6): Folder.store_flags, then a FETCH (FLAGS) for
    every message of the set unless .SILENT, with UID for UID STORE; a new
    keyword is announced with FLAGS and PERMANENTFLAGS first.

    SEARCH (RFC 9051 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES):
    imap/search.py's Matcher over the view, in a worker thread, loading a
    message only when a key needs it. IMAP4rev1 without RETURN gets
    `* SEARCH`; IMAP4rev2, or a RETURN option, gets `* ESEARCH`. SAVE
    keeps the result (UIDs) for `$`; with MIN and/or MAX alone it keeps
    only those (RFC 5182 §2.4).

    COPY and MOVE (RFC 9051 §6.4.7, §6.4.8, RFC 6851, RFC 4315 COPYUID):
    each message is read and appended to the target with its flags and
    internal date; a target that does not exist is NO [TRYCREATE]. If a
    source message vanished meanwhile, the copies already made are
    removed again and the command fails NO [EXPUNGEISSUED] (RFC 2180
    §4.4.1: all or nothing). MOVE sends `* OK [COPYUID ...]` before its
    EXPUNGE responses (RFC 6851 §4.3).

    EXPUNGE and UID EXPUNGE (RFC 9051 §6.4.3, RFC 4315 §2.1): the messages
    with \\Deleted (in the UID set) are removed; the session reports the
    EXPUNGE responses. A read-only mailbox refuses STORE, EXPUNGE and MOVE
    with NO [READ-ONLY].

See also:
    imap/session.py, imap/selected.py, imap/fetch.py, imap/search.py,
    RFC 9051 §6.4, RFC 2180 (multi-accessed mailboxes), RFC 5530.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from postoffice.errors import TempFail
from postoffice.imap import commands as c
from postoffice.imap import response as r
from postoffice.imap import structure
from postoffice.imap.cache import SummaryCache
from postoffice.imap.fetch import FetchRenderer, flag_list
from postoffice.imap.search import Matcher, SearchContext
from postoffice.imap.selected import BadSequence, SelectedMailbox
from postoffice.store.interfaces import DELETED, Folder, MessageGone, MessageInfo

if TYPE_CHECKING:
    from postoffice.imap.session import ImapSession

__all__ = ["copy", "expunge", "fetch", "search", "store"]

_BATCH_OCTETS = 1024 * 1024
_BATCH_MESSAGES = 500


def ok(text: str, code: r.Code | None = None) -> r.Result:
    return r.Result(status="OK", text=text, code=code)


def no(text: str, code: str | None = None) -> r.Result:
    return r.Result(status="NO", text=text, code=r.Code(name=code) if code else None)


BAD_SEQUENCE = r.Result(status="BAD", text="Invalid message sequence number")
READ_ONLY = no("The mailbox is read-only", "READ-ONLY")


def _view(s: ImapSession) -> tuple[SelectedMailbox, Folder]:
    assert s.selected is not None and s.folder is not None, "not in the selected state"
    return s.selected, s.folder


# -- FETCH ---------------------------------------------------------------------------


async def fetch(s: ImapSession, cmd: c.Fetch) -> r.Result:
    view, folder = _view(s)
    try:
        seqs = view.resolve(cmd.set, uid=cmd.uid)
    except BadSequence:
        return BAD_SEQUENCE
    renderer = FetchRenderer(
        folder,
        s.deps.caches.for_folder(folder),
        cmd.items,
        uid=cmd.uid,
        read_only=view.read_only,
        recent=frozenset() if s.rev2 else frozenset(view.recent),
    )
    missing = 0
    unknown_cte = False
    for batch in _batches(view, seqs, renderer.needs_data):
        rendered = await s.run(renderer.render, batch)
        if rendered.changed:
            view.set_flags(rendered.changed)
        missing += rendered.missing
        unknown_cte = unknown_cte or rendered.unknown_cte
        s.write(rendered.data)
        await s.out.drain()
    if unknown_cte:  # RFC 3516 §4.2
        return no("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE")
    if missing:  # RFC 5530, RFC 2180 §4.1.2
        return no("Some messages were expunged meanwhile", "EXPUNGEISSUED")
    return ok("FETCH completed")


def _batches(
    view: SelectedMailbox, seqs: Sequence[int], needs_data: bool
) -> list[list[tuple[int, MessageInfo]]]:
    batches: list[list[tuple[int, MessageInfo]]] = []
    batch: list[tuple[int, MessageInfo]] = []
    octets = 0
    for seq in seqs:
        info = view.info(seq)
        batch.append((seq, info))
        octets += info.size if needs_data else 0
        if len(batch) >= _BATCH_MESSAGES or octets >= _BATCH_OCTETS:
            batches.append(batch)
            batch, octets = [], 0
    if batch:
        batches.append(batch)
    return batches


# -- STORE ------------------------------------------------------------------------------


async def store(s: ImapSession, cmd: c.Store) -> r.Result:
    view, folder = _view(s)
    if view.read_only:
        return READ_ONLY
    try:
        seqs = view.resolve(cmd.set, uid=cmd.uid)
    except BadSequence:
        return BAD_SEQUENCE
    uids = [view.uid_at(q) for q in seqs if not view.is_gone(q)]
    changed = await s.run(folder.store_flags, uids, cmd.flags, cmd.mode) if uids else []
    view.set_flags(changed)
    new = frozenset(f for i in changed for f in i.flags if not f.startswith("\\"))
    if new - view.keywords:  # RFC 9051 §7.3.5: the new list of defined flags first
        view.keywords = view.keywords | new
        names = [
            "\\Answered",
            "\\Flagged",
            "\\Deleted",
            "\\Seen",
            "\\Draft",
            *sorted(view.keywords),
        ]
        s.write(r.flags(names))
        s.write(r.untagged(ok("Flags permitted", r.Code.listed("PERMANENTFLAGS", [*names, "\\*"]))))
    if not cmd.silent:
        lines = []
        for seq in seqs:
            info = view.info(seq)
            recent = info.uid in view.recent and not s.rev2
            uid = b"UID %d " % info.uid if cmd.uid else b""
            lines.append(b"* %d FETCH (%sFLAGS %s)\r\n" % (seq, uid, flag_list(info.flags, recent)))
        s.write(b"".join(lines))
    if len(uids) < len(seqs):
        return no("Some messages were expunged meanwhile", "EXPUNGEISSUED")
    return ok("STORE completed")


# -- SEARCH -----------------------------------------------------------------------------


async def search(s: ImapSession, cmd: c.Search) -> r.Result:
    view, folder = _view(s)
    context = SearchContext(
        max_seq=view.exists,
        max_uid=view.uids[-1] if view.uids else 0,
        recent=frozenset() if s.rev2 else frozenset(view.recent),
        saved=frozenset(view.saved),
        tz=dt.UTC,
    )
    matcher = Matcher(cmd.key, context)
    pairs = [(seq, info) for seq, info in enumerate(view.infos, start=1)]
    cache = s.deps.caches.for_folder(folder)
    found = await s.run(_search, folder, matcher, pairs, view.gone, cache)
    uids = [view.uid_at(seq) for seq in found]
    numbers = uids if cmd.uid else found
    options = cmd.result
    if options is None:
        if s.rev2:  # RFC 9051 §6.4.4: IMAP4rev2 answers with ESEARCH
            s.write(r.esearch(cmd.tag, uid=cmd.uid, all_numbers=numbers))
        else:
            s.write(r.search(numbers))
        return ok("SEARCH completed")
    want = set(options)
    if c.SearchReturn.SAVE in want:
        saved = uids
        if want & {c.SearchReturn.MIN, c.SearchReturn.MAX} and not want & {
            c.SearchReturn.ALL,
            c.SearchReturn.COUNT,
        }:  # RFC 5182 §2.4
            saved = [u for u in (_min(uids, want), _max(uids, want)) if u is not None]
        view.saved = tuple(saved)
        if want == {c.SearchReturn.SAVE}:
            return ok("SEARCH completed, result saved")
    s.write(
        r.esearch(
            cmd.tag,
            uid=cmd.uid,
            minimum=_min(numbers, want),
            maximum=_max(numbers, want),
            count=len(numbers) if c.SearchReturn.COUNT in want else None,
            all_numbers=numbers if c.SearchReturn.ALL in want else None,
        )
    )
    return ok("SEARCH completed")


def _min(numbers: list[int], want: set[c.SearchReturn]) -> int | None:
    return numbers[0] if numbers and c.SearchReturn.MIN in want else None


def _max(numbers: list[int], want: set[c.SearchReturn]) -> int | None:
    return numbers[-1] if numbers and c.SearchReturn.MAX in want else None


def _search(
    folder: Folder,
    matcher: Matcher,
    pairs: list[tuple[int, MessageInfo]],
    gone: set[int],
    cache: SummaryCache,
) -> list[int]:
    """In a worker thread: the sequence numbers that match.

    A header-only program whose fields the summary keeps (SEARCH SUBJECT,
    FROM, TO, CC, BCC, SENT*) reads the cached field lines instead of the
    message; a message read anyway gets its summary computed and cached,
    so the next such SEARCH (or FETCH ENVELOPE) needs no file."""
    found = []
    from_cache = not matcher.needs_body and matcher.header_names <= structure.SEARCH_FIELDS
    new: list[tuple[str, structure.Summary]] = []
    for seq, info in pairs:
        if info.uid in gone and matcher.needs_message:
            continue

        def load(info: MessageInfo = info) -> bytes:
            if from_cache:
                summary = cache.get(info.key)
                if summary is not None:
                    return summary.fields
            try:
                with folder.open_message(info.uid) as f:
                    data = f.read()
            except MessageGone:
                return b""
            if from_cache:
                new.append((info.key, structure.summarise(data)))
            return data

        memo = cache.decoded(info.key) if from_cache else None
        if matcher.matches(info, seq, load, memo):
            found.append(seq)
    if new:
        cache.put(new)
    return found


# -- COPY and MOVE -------------------------------------------------------------------------


async def copy(s: ImapSession, cmd: c.Copy | c.Move) -> r.Result:
    view, folder = _view(s)
    move = isinstance(cmd, c.Move)
    if move and view.read_only:
        return READ_ONLY
    try:
        seqs = view.resolve(cmd.set, uid=cmd.uid)
    except BadSequence:
        return BAD_SEQUENCE
    store = s.mailstore()
    try:
        target = await s.run(store.folder, cmd.mailbox)
    except KeyError:
        return no("The target mailbox does not exist", "TRYCREATE")  # RFC 9051 §6.4.7
    except ValueError:
        return no("Invalid mailbox name", "CANNOT")
    infos = [view.info(q) for q in seqs]
    if not infos:
        return ok(f"{cmd.name} completed, nothing to do")
    copied = await s.run(_copy, folder, target, infos)
    if copied is None:
        return no("Some messages were expunged meanwhile", "EXPUNGEISSUED")
    source, dest, uidvalidity = copied
    code = r.Code.copyuid(uidvalidity, source, dest)
    if move:
        s.write(r.untagged(ok("Moved", code)))  # RFC 6851 §4.3: before the EXPUNGEs
        await s.run(folder.expunge, source)
        await _forget_expunged(s, folder)
        return ok("MOVE completed")
    return ok("COPY completed", code)


def _copy(
    source: Folder, target: Folder, infos: list[MessageInfo]
) -> tuple[list[int], list[int], int] | None:
    """In a worker thread: copy every message or none (None: one vanished)."""
    done: list[tuple[int, int]] = []
    try:
        for info in infos:
            with source.open_message(info.uid) as f:
                data = f.read()
            uid = target.append(io.BytesIO(data), flags=info.flags, internaldate=info.internaldate)
            done.append((info.uid, uid))
    except MessageGone:
        if done:
            target.expunge([d for _, d in done])
        return None
    except TempFail:
        if done:
            target.expunge([d for _, d in done])
        raise
    state = target.sync()
    return [a for a, _ in done], [b for _, b in done], state.uidvalidity


# -- EXPUNGE ----------------------------------------------------------------------------------


async def expunge(s: ImapSession, cmd: c.Expunge) -> r.Result:
    view, folder = _view(s)
    if view.read_only:
        return READ_ONLY
    state = await s.run(folder.sync)
    deleted = [m.uid for m in state.messages if DELETED in m.flags]
    if cmd.uids is not None:  # RFC 4315 §2.1: only those in the UID set
        largest = view.uids[-1] if view.uids else 0
        if cmd.uids.saved:
            wanted = set(view.saved)
            deleted = [u for u in deleted if u in wanted]
        else:
            deleted = [u for u in deleted if cmd.uids.contains(u, largest)]
    if deleted:
        await s.run(folder.expunge, deleted)
        await _forget_expunged(s, folder)
    return ok(f"{c.command_name(cmd)} completed")


async def _forget_expunged(s: ImapSession, folder: Folder) -> None:
    """The summary cache drops what is gone (imap/cache.py rewrites its file
    when most of it is stale)."""
    state = await s.run(folder.sync)
    cache = s.deps.caches.for_folder(folder)
    await s.run(cache.forget_except, [m.key for m in state.messages])
