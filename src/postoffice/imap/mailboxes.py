"""imap.mailboxes — CREATE, DELETE, RENAME, SUBSCRIBE, LIST, LSUB, NAMESPACE, STATUS.

Description:
    The authenticated-state commands that work on mailbox names rather than
    on messages (RFC 9051 §6.3). Each `async def` takes the session
    (imap/session.py: its store, its run() for blocking calls, its output)
    and the command, writes the untagged responses and returns the tagged
    Result. Store calls block (directory scans, renames, fsync) and run in
    a worker thread through `session.run`.

    Names: the store takes and returns Unicode names with "." as the
    hierarchy delimiter (store/mailstore.py, Maildir++); the parser has
    already decoded modified UTF-7 or UTF-8, and response.mailbox()
    encodes names for the client's mode. A name the store refuses
    (ValueError: "..", "/", "~", NUL, a leading ".", over 200 characters)
    is answered NO [CANNOT] and touches nothing.

    LIST (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS,
    RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN):
      * the reference and each pattern are joined (reference + pattern);
        `*` matches any characters, `%` any but the delimiter; INBOX
        matches case-insensitively; `LIST "" ""` returns the delimiter;
      * a parent that does not exist but has children (a Maildir++
        `.a.b` without `.a`) is listed when a `%` pattern matches it,
        as \\NonExistent (IMAP4rev2 and extended LIST) or \\Noselect;
      * every mailbox gets \\HasChildren or \\HasNoChildren, and its
        special-use attribute (\\Sent, \\Drafts ...); \\Subscribed is
        added for the SUBSCRIBED selection or return option;
      * (SUBSCRIBED) lists the subscriptions, including those whose
        mailbox does not exist (\\NonExistent); RECURSIVEMATCH adds the
        parents of subscribed mailboxes with CHILDINFO ("SUBSCRIBED")
        (RFC 5258 §3.5); (SPECIAL-USE) only the special-use mailboxes;
      * RETURN (STATUS (...)) sends a STATUS response after each
        selectable mailbox's LIST response (RFC 5819 §2).

    STATUS (RFC 9051 §6.3.11): MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN,
    DELETED, SIZE (RFC 8438) and, for IMAP4rev1, RECENT. For the mailbox
    the session has selected, the session's own view answers (what it
    reported to the client, RFC 9051 §6.3.11 note).

Security:
    Only the store turns names into paths, and it refuses every name that
    could leave the user's tree (store/mailstore.py check_name).

See also:
    RFC 9051 §6.3.4-§6.3.11, RFC 3501 §6.3.9 (LSUB), RFC 5258, RFC 5819,
    RFC 6154, RFC 8438 (STATUS=SIZE), RFC 5530 (response codes);
    store/mailstore.py, imap/session.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from postoffice.errors import TempFail
from postoffice.imap import commands as c
from postoffice.imap import response as r
from postoffice.store.interfaces import DELETED, SEEN, FolderState, MailStore, MessageInfo

if TYPE_CHECKING:
    from postoffice.imap.session import ImapSession

__all__ = [
    "DELIMITER",
    "create",
    "delete",
    "list_mailboxes",
    "lsub",
    "namespace",
    "rename",
    "status",
    "subscribe",
]

DELIMITER = "."
SPECIAL_USES = frozenset({"\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash"})


def ok(text: str, code: r.Code | None = None) -> r.Result:
    return r.Result(status="OK", text=text, code=code)


def no(text: str, code: str | None = None) -> r.Result:
    return r.Result(status="NO", text=text, code=r.Code(name=code) if code else None)


NONEXISTENT = no("No such mailbox", "NONEXISTENT")
BAD_NAME = no("Invalid mailbox name", "CANNOT")


def _storage_failed(e: TempFail) -> r.Result:
    return no("Mailbox storage is not available; try again later", "UNAVAILABLE")


# -- CREATE DELETE RENAME SUBSCRIBE --------------------------------------------


async def create(s: ImapSession, cmd: c.Create) -> r.Result:
    name = cmd.mailbox.removesuffix(DELIMITER)  # RFC 9051 §6.3.4: "foo." declares a parent
    if name.upper() == "INBOX":
        return no("INBOX always exists", "ALREADYEXISTS")
    use: str | None = None
    if cmd.special_use:
        if len(cmd.special_use) > 1 or not cmd.special_use <= SPECIAL_USES:
            return no("Unsupported special-use attribute", "USEATTR")  # RFC 6154 §3
        (use,) = cmd.special_use
    store = s.mailstore()
    try:
        await s.run(store.create, name, use)
    except FileExistsError:
        return no("Mailbox already exists", "ALREADYEXISTS")
    except ValueError:
        return BAD_NAME
    except TempFail as e:
        return _storage_failed(e)
    except OSError:
        return no("Cannot create the mailbox", "SERVERBUG")
    return ok("CREATE completed")


def _selected_here(s: ImapSession, name: str) -> bool:
    return s.folder is not None and s.folder.name == name


async def delete(s: ImapSession, cmd: c.Delete) -> r.Result:
    if cmd.mailbox.upper() == "INBOX":
        return no("INBOX cannot be deleted", "CANNOT")
    if _selected_here(s, cmd.mailbox):  # its view would outlive it
        return no("The mailbox is selected; close it first", "INUSE")
    store = s.mailstore()
    try:
        await s.run(store.delete, cmd.mailbox)
    except KeyError:
        return NONEXISTENT
    except ValueError:
        return BAD_NAME
    except TempFail as e:
        return _storage_failed(e)
    except OSError:
        return no("Cannot delete the mailbox", "SERVERBUG")
    await s.run(store.set_subscribed, cmd.mailbox, False)
    return ok("DELETE completed")


async def rename(s: ImapSession, cmd: c.Rename) -> r.Result:
    new = cmd.new.removesuffix(DELIMITER)
    if new.upper() == "INBOX":
        return no("INBOX already exists", "ALREADYEXISTS")
    if cmd.old != "INBOX" and _selected_here(s, cmd.old):
        return no("The mailbox is selected; close it first", "INUSE")
    store = s.mailstore()
    try:
        await s.run(store.rename, cmd.old, new)
    except KeyError:
        return NONEXISTENT
    except FileExistsError:
        return no("Mailbox already exists", "ALREADYEXISTS")
    except ValueError:
        return BAD_NAME
    except TempFail as e:
        return _storage_failed(e)
    except OSError:
        return no("Cannot rename the mailbox", "SERVERBUG")
    return ok("RENAME completed")


async def subscribe(s: ImapSession, cmd: c.Subscribe | c.Unsubscribe) -> r.Result:
    store = s.mailstore()
    on = isinstance(cmd, c.Subscribe)
    try:
        await s.run(store.set_subscribed, cmd.mailbox, on)
    except ValueError:
        return BAD_NAME
    except (TempFail, OSError):
        return no("Cannot change subscriptions now; try again later", "UNAVAILABLE")
    return ok(f"{cmd.name} completed")


# -- LIST and LSUB -----------------------------------------------------------------


def pattern_matcher(pattern: str) -> re.Pattern[str]:
    """`*` any characters, `%` any but the delimiter (RFC 9051 §6.3.9); a
    pattern that starts with INBOX in any case matches INBOX (RFC 9051 §5.1)."""
    if pattern[:5].upper() == "INBOX" and pattern[5:6] in ("", DELIMITER, "%", "*"):
        pattern = "INBOX" + pattern[5:]
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "%":
            parts.append("[^" + re.escape(DELIMITER) + "]*")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def _matches(rx: re.Pattern[str], name: str) -> bool:
    return rx.fullmatch(name) is not None


def _parents(name: str) -> Iterable[str]:
    parts = name.split(DELIMITER)
    for i in range(1, len(parts)):
        yield DELIMITER.join(parts[:i])


class _Tree:
    """The user's mailbox names, their implied parents and children."""

    def __init__(self, names: list[str], subscribed: list[str], uses: dict[str, str]) -> None:
        self.existing = set(names)
        self.order = list(names)
        self.subscribed = set(subscribed)
        self.subscribed_order = list(dict.fromkeys(subscribed))
        self.uses = uses
        self.has_children: set[str] = set()
        self.implied: list[str] = []
        for name in names:
            for parent in _parents(name):
                self.has_children.add(parent)
                if parent not in self.existing and parent not in self.implied:
                    self.implied.append(parent)
        self.subscribed_children: set[str] = set()
        for name in self.subscribed:
            self.subscribed_children.update(_parents(name))


async def list_mailboxes(s: ImapSession, cmd: c.List) -> r.Result:
    store = s.mailstore()
    extended = cmd.extended or s.rev2
    if cmd.patterns == ("",):  # RFC 9051 §6.3.9: the delimiter and the root
        s.write(r.list_item(["\\Noselect"], DELIMITER, "", utf8=s.utf8))
        return ok("LIST completed")
    try:
        tree = await s.run(_load_tree, store)
    except (TempFail, OSError):
        return no("Cannot list mailboxes now; try again later", "UNAVAILABLE")
    matchers = [pattern_matcher(cmd.reference + p) for p in cmd.patterns]
    percent = any("%" in p for p in cmd.patterns)
    want_subscribed = (
        c.ListSelect.SUBSCRIBED in cmd.select or c.ListReturn.SUBSCRIBED in cmd.returns
    )
    recursive = c.ListSelect.RECURSIVEMATCH in cmd.select
    special_only = c.ListSelect.SPECIAL_USE in cmd.select
    if c.ListSelect.SUBSCRIBED in cmd.select:
        candidates = list(tree.subscribed_order)
        if recursive:
            candidates += [n for n in tree.order + tree.implied if n not in tree.subscribed]
    else:
        candidates = tree.order + (tree.implied if percent else [])
    out: list[bytes] = []
    status_for: list[str] = []
    seen: set[str] = set()
    for name in candidates:
        if name in seen or not any(_matches(rx, name) for rx in matchers):
            continue
        seen.add(name)
        exists = name in tree.existing
        attrs: list[str] = []
        childinfo = b""
        if c.ListSelect.SUBSCRIBED in cmd.select and name not in tree.subscribed:
            if not (recursive and name in tree.subscribed_children):
                continue
            childinfo = b'("CHILDINFO" ("SUBSCRIBED"))'
        elif recursive and name in tree.subscribed_children:
            childinfo = b'("CHILDINFO" ("SUBSCRIBED"))'
        if not exists:
            attrs.append("\\NonExistent" if extended else "\\Noselect")
        if name in tree.has_children:
            attrs.append("\\HasChildren")
        elif exists:
            attrs.append("\\HasNoChildren")
        if want_subscribed and name in tree.subscribed:
            attrs.append("\\Subscribed")
        use = tree.uses.get(name)
        if special_only and use is None:
            continue
        if use is not None:
            attrs.append(use)
        out.append(r.list_item(attrs, DELIMITER, name, utf8=s.utf8, extended=childinfo))
        if cmd.status is not None and exists:
            status_for.append(name)
            out.append(b"")  # the STATUS response goes here
    if cmd.status is None:
        s.write(b"".join(out))
        return ok("LIST completed")
    names = iter(status_for)
    for line in out:
        if line:
            s.write(line)
            continue
        name = next(names)
        values = await status_values(s, name, cmd.status)
        if values is not None:
            s.write(r.status(name, values, utf8=s.utf8))
    return ok("LIST completed")


def _load_tree(store: MailStore) -> _Tree:
    return _Tree(store.list_folders(), store.subscriptions(), store.special_uses())


async def lsub(s: ImapSession, cmd: c.Lsub) -> r.Result:
    store = s.mailstore()
    try:
        tree = await s.run(_load_tree, store)
    except (TempFail, OSError):
        return no("Cannot list mailboxes now; try again later", "UNAVAILABLE")
    rx = pattern_matcher(cmd.reference + cmd.pattern)
    lines: list[bytes] = []
    seen: set[str] = set()
    names = list(tree.subscribed_order)
    if "%" in cmd.pattern:  # RFC 3501 §6.3.9: the parent of a subscribed child, \Noselect
        names += [p for n in tree.subscribed_order for p in _parents(n)]
    for name in names:
        if name in seen or not _matches(rx, name):
            continue
        seen.add(name)
        attrs = [] if name in tree.subscribed else ["\\Noselect"]
        lines.append(r.list_item(attrs, DELIMITER, name, utf8=s.utf8, verb="LSUB"))
    s.write(b"".join(lines))
    return ok("LSUB completed")


async def namespace(s: ImapSession, cmd: c.Namespace) -> r.Result:
    # RFC 2342 / RFC 9051 §6.3.10: one personal namespace, no others (yet).
    s.write(b'* NAMESPACE (("" "' + DELIMITER.encode() + b'")) NIL NIL\r\n')
    return ok("NAMESPACE completed")


# -- STATUS ------------------------------------------------------------------------


async def status(s: ImapSession, cmd: c.Status) -> r.Result:
    values = await status_values(s, cmd.mailbox, cmd.items)
    if values is None:
        return NONEXISTENT
    s.write(r.status(cmd.mailbox, values, utf8=s.utf8))
    return ok("STATUS completed")


async def status_values(
    s: ImapSession, name: str, items: Iterable[c.StatusItem]
) -> list[tuple[c.StatusItem, int]] | None:
    """The STATUS numbers of mailbox `name`, None when it does not exist."""
    items = [i for i in items if not (i is c.StatusItem.RECENT and s.rev2)]
    selected = s.selected
    if selected is not None and s.folder is not None and s.folder.name == name:
        state = selected.state
        messages = list(selected.infos)
        recent = len(selected.recent)
    else:
        store = s.mailstore()
        try:
            folder = await s.run(store.folder, name)
            state = await s.run(folder.sync)
        except (KeyError, ValueError):
            return None
        except (TempFail, OSError):
            return None
        messages = list(state.messages)
        recent = 0
        if c.StatusItem.RECENT in items:
            recent = len(s.deps.claims.claim((s.user, folder.name), messages, read_only=True))
    return [(item, _status_number(item, state, messages, recent)) for item in items]


def _status_number(
    item: c.StatusItem, state: FolderState, messages: list[MessageInfo], recent: int
) -> int:
    if item is c.StatusItem.MESSAGES:
        return len(messages)
    if item is c.StatusItem.UIDNEXT:
        return state.uidnext
    if item is c.StatusItem.UIDVALIDITY:
        return state.uidvalidity
    if item is c.StatusItem.UNSEEN:
        return sum(1 for m in messages if SEEN not in m.flags)
    if item is c.StatusItem.DELETED:
        return sum(1 for m in messages if DELETED in m.flags)
    if item is c.StatusItem.SIZE:
        return sum(m.size for m in messages)
    return recent
