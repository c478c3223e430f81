"""The IMAP engine (imap/protocol.py): framing, literals, the state table,
APPEND streaming, AUTHENTICATE, IDLE, STARTTLS, limits and hostile input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap import commands as c
from postoffice.imap import docs as imap_docs
from postoffice.imap import events as ev
from postoffice.imap.events import Event, Limits
from postoffice.imap.protocol import RULES, ServerProtocol, State
from postoffice.imap.response import Code, Result

DOCS = Path(__file__).resolve().parent.parent / "docs"

OK = Result(status="OK", text="done")
NO = Result(status="NO", text="no")


class Driver:
    """A fake session: answers every event with `policy` and records all."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        preauth: bool = False,
        policy: Callable[[ServerProtocol, Event], None] | None = None,
    ) -> None:
        self.engine = ServerProtocol(limits)
        status = "PREAUTH" if preauth else "OK"
        self.engine.greeting(Result(status=status, text="ready"))
        self.engine.data_to_send()
        self.events: list[Event] = []
        self.appended: list[bytes] = []
        self._current = bytearray()
        self.policy = policy or answer_ok

    def feed(self, data: bytes) -> bytes:
        """Feed `data`, answer everything, return what the engine sent."""
        events = self.engine.receive_data(data)
        while True:
            for event in events:
                self.events.append(event)
                if isinstance(event, ev.AppendData):
                    self._current += event.data
                elif isinstance(event, ev.AppendEnd):
                    self.appended.append(bytes(self._current))
                    self._current.clear()
            if not events or not events[-1].needs_answer:
                break
            self.policy(self.engine, events[-1])
            events = self.engine.receive_data(b"")
        return self.engine.data_to_send()

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    def commands(self) -> list[c.Command]:
        return [e.command for e in self.events if isinstance(e, ev.CommandReady)]


def answer_ok(engine: ServerProtocol, event: Event) -> None:
    if isinstance(event, ev.CommandReady) and isinstance(event.command, c.Idle):
        engine.start_idle()
    elif isinstance(event, ev.CommandReady) and isinstance(event.command, c.StartTls):
        engine.finish(Result(status="NO", text="no TLS here"))
    elif isinstance(event, ev.AppendBegin):
        engine.accept_append()
    else:
        engine.finish(OK)


def logged_in(
    limits: Limits | None = None, **kw: Callable[[ServerProtocol, Event], None]
) -> Driver:
    d = Driver(limits, **kw)
    d.feed(b"l LOGIN fred secret\r\n")
    assert d.engine.state is State.AUTHENTICATED
    d.events.clear()
    return d


# -- basics ----------------------------------------------------------------------


def test_greetings() -> None:
    e = ServerProtocol()
    e.greeting(Result(status="OK", text="IMAP4rev1 ready"))
    assert e.data_to_send() == b"* OK IMAP4rev1 ready\r\n"
    assert e.state is State.NOT_AUTHENTICATED
    e = ServerProtocol()
    e.greeting(Result(status="PREAUTH", text="welcome"))
    assert e.state is State.AUTHENTICATED
    e = ServerProtocol()
    e.greeting(Result(status="BYE", text="go away"))
    assert e.closed and e.state is State.LOGOUT
    assert e.receive_data(b"a NOOP\r\n") == []


def test_one_command_and_its_answer() -> None:
    e = ServerProtocol()
    events = e.receive_data(b"a1 CAPABILITY\r\n")
    assert len(events) == 1 and isinstance(events[0], ev.CommandReady)
    assert isinstance(events[0].command, c.Capability) and e.awaiting == "answer"
    e.send(b"* CAPABILITY IMAP4rev1\r\n")
    e.finish(Result(status="OK", text="CAPABILITY completed"))
    assert e.data_to_send() == b"* CAPABILITY IMAP4rev1\r\na1 OK CAPABILITY completed\r\n"
    assert e.awaiting == "command"
    with pytest.raises(RuntimeError):
        e.finish(OK)


def test_pipelined_commands_wait_for_answers() -> None:
    e = ServerProtocol()
    events = e.receive_data(b"a NOOP\r\nb NOOP\r\nc NOO")
    assert [x.command.tag for x in events if isinstance(x, ev.CommandReady)] == ["a"]
    e.finish(OK)
    events = e.receive_data(b"")
    assert [x.command.tag for x in events if isinstance(x, ev.CommandReady)] == ["b"]
    e.finish(OK)
    assert e.receive_data(b"") == []
    events = e.receive_data(b"P\r\n")
    assert isinstance(events[0], ev.CommandReady) and events[0].command.tag == "c"
    e.finish(OK)
    assert e.data_to_send() == b"a OK done\r\nb OK done\r\nc OK done\r\n"


def test_untagged_bad_unknown_and_syntax() -> None:
    d = Driver()
    assert d.feed(b"\r\n") == b"* BAD missing or invalid tag\r\n"
    assert d.feed(b"+ NOOP\r\n") == b"* BAD missing or invalid tag\r\n"
    assert d.feed(b"a1 XYZZY\r\n") == b"a1 BAD unknown command\r\n"
    assert d.feed(b"a2 NOOP junk\r\n") == b"a2 BAD unexpected characters after the command\r\n"
    assert d.feed(b"a3 LOGIN a\x00b c\r\n").startswith(b"a3 BAD ")
    assert d.feed(b"a4 LOGIN a b\r\n") == b"a4 OK done\r\n"
    assert d.kinds().count("CommandRefused") == 5


def test_state_table_walk() -> None:
    """Every command in every state: allowed ones reach the session,
    others are BAD without it (RFC 9051 §6)."""
    samples = {
        "CAPABILITY": b"CAPABILITY",
        "NOOP": b"NOOP",
        "LOGOUT": b"LOGOUT",
        "ID": b"ID NIL",
        "STARTTLS": b"STARTTLS",
        "AUTHENTICATE": b"AUTHENTICATE PLAIN",
        "LOGIN": b"LOGIN a b",
        "ENABLE": b"ENABLE IMAP4rev2",
        "SELECT": b"SELECT INBOX",
        "EXAMINE": b"EXAMINE INBOX",
        "CREATE": b"CREATE x",
        "DELETE": b"DELETE x",
        "RENAME": b"RENAME x y",
        "SUBSCRIBE": b"SUBSCRIBE x",
        "UNSUBSCRIBE": b"UNSUBSCRIBE x",
        "LIST": b'LIST "" *',
        "LSUB": b'LSUB "" *',
        "NAMESPACE": b"NAMESPACE",
        "STATUS": b"STATUS x (MESSAGES)",
        "APPEND": b"APPEND x {1+}\r\nx",
        "IDLE": b"IDLE",
        "CHECK": b"CHECK",
        "CLOSE": b"CLOSE",
        "UNSELECT": b"UNSELECT",
        "EXPUNGE": b"EXPUNGE",
        "SEARCH": b"SEARCH ALL",
        "FETCH": b"FETCH 1 FLAGS",
        "STORE": b"STORE 1 FLAGS ()",
        "COPY": b"COPY 1 x",
        "MOVE": b"MOVE 1 x",
        "UID SEARCH": b"UID SEARCH ALL",
        "UID FETCH": b"UID FETCH 1 FLAGS",
        "UID STORE": b"UID STORE 1 FLAGS ()",
        "UID COPY": b"UID COPY 1 x",
        "UID MOVE": b"UID MOVE 1 x",
        "UID EXPUNGE": b"UID EXPUNGE 1",
    }
    assert set(samples) == set(RULES)
    for name, rule in RULES.items():
        for state in (State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED):
            e = ServerProtocol()
            e._state = state  # the walk starts from each state directly
            events = e.receive_data(b"t " + samples[name] + b"\r\n")
            asked = [x for x in events if x.needs_answer]
            if state in rule.states:
                assert asked, (name, state, e.data_to_send())
                first = asked[0]
                if isinstance(first, ev.CommandReady):
                    assert c.command_name(first.command) == name
                else:
                    assert isinstance(first, ev.AppendBegin) and name == "APPEND"
            else:
                assert not asked, (name, state)
                assert e.data_to_send() == (
                    b"t BAD "
                    + f"{name} is not allowed in the {state.value} state".encode()
                    + b"\r\n"
                )


def test_state_moves_with_the_tagged_response() -> None:
    d = Driver()
    d.feed(b"a LOGIN fred secret\r\n")
    assert d.engine.state is State.AUTHENTICATED
    d.feed(b"b SELECT INBOX\r\n")
    assert d.engine.state is State.SELECTED
    d.policy = lambda e, x: e.finish(NO)
    d.feed(b"c SELECT nonexistent\r\n")  # RFC 9051 §6.3.2: no mailbox selected now
    assert d.engine.state is State.AUTHENTICATED
    d.feed(b"d LOGIN x y\r\n")
    assert d.engine.state is State.AUTHENTICATED
    d.policy = answer_ok
    d.feed(b"e EXAMINE INBOX\r\n")
    assert d.engine.state is State.SELECTED
    d.feed(b"f BAD-COMMAND\r\ng CLOSE\r\n")
    assert d.engine.state is State.AUTHENTICATED
    out = d.feed(b"h LOGOUT\r\ni NOOP\r\n")
    assert d.engine.closed and d.engine.state is State.LOGOUT
    assert out == b"h OK done\r\n"


def test_login_refused_stays_not_authenticated() -> None:
    d = Driver(policy=lambda e, x: e.finish(NO))
    d.feed(b"a LOGIN fred wrong\r\n")
    assert d.engine.state is State.NOT_AUTHENTICATED


def test_docs_state_table_is_current() -> None:
    assert (DOCS / "imap.md").read_text() == imap_docs.render_markdown(), (
        "docs/imap.md is stale: run `python -m postoffice.imap.docs > docs/imap.md`"
    )


# -- literals ------------------------------------------------------------------------


def test_synchronizing_literal_gets_a_continuation() -> None:
    d = Driver()
    assert d.feed(b"a LOGIN {4}\r\n") == b"+ OK\r\n"
    assert d.feed(b"fred {6}\r\n") == b"+ OK\r\n"
    assert d.feed(b"se\r\ncr") == b""
    assert d.feed(b"\r\n") == b"a OK done\r\n"
    login = d.commands()[0]
    assert isinstance(login, c.Login) and login.password == "se\r\ncr"


def test_non_synchronizing_literal_gets_none() -> None:
    d = Driver()
    assert d.feed(b"a LOGIN {4+}\r\nfred {6+}\r\nsecret\r\n") == b"a OK done\r\n"


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30))
@settings(max_examples=100, deadline=None)
def test_any_split_gives_the_same_result(cuts: list[int]) -> None:
    script = (
        b"a LOGIN {4+}\r\nfred {6}\r\nsecret\r\n"
        b"b SELECT INBOX\r\n"
        b"c APPEND INBOX (\\Seen) {12}\r\nhello\r\nworld {3+}\r\nabc\r\n"
        b'd UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS ("From" {2}\r\nTo)])\r\n'
        b"e IDLE\r\nDONE\r\nf LOGOUT\r\n"
    )
    whole = Driver()
    expected_out = whole.feed(script)
    pieces = Driver()
    out = b""
    pos = 0
    for cut in cuts * 20:
        if pos >= len(script):
            break
        out += pieces.feed(script[pos : pos + cut])
        pos += cut
    out += pieces.feed(script[pos:])
    assert out == expected_out
    assert [repr(e) for e in pieces.events if not isinstance(e, ev.AppendData)] == [
        repr(e) for e in whole.events if not isinstance(e, ev.AppendData)
    ]
    assert pieces.appended == whole.appended == [b"hello\r\nworld", b"abc"]


def test_refused_synchronizing_literal_is_not_read() -> None:
    d = Driver()  # before login: 8 KiB
    out = d.feed(b"a LOGIN {100000}\r\n")
    assert out == b"a BAD [TOOBIG] literal too big\r\n"
    assert b"+" not in out
    assert d.feed(b"b NOOP\r\n") == b"b OK done\r\n"


def test_refused_non_synchronizing_literal_is_swallowed() -> None:
    d = Driver()
    payload = b"x LOGOUT\r\n" * 1000  # 10,000 octets that must never run
    out = d.feed(b"a LOGIN {10000+}\r\n" + payload + b" more {3+}\r\nzzz\r\nb NOOP\r\n")
    assert out == b"a BAD [TOOBIG] literal too big\r\nb OK done\r\n"
    assert [cmd.tag for cmd in d.commands()] == ["b"]
    assert not d.engine.closed


def test_literal_in_a_command_refused_for_its_state_is_swallowed() -> None:
    d = Driver()
    out = d.feed(b"a SELECT {7+}\r\nc CLOSE\r\nb NOOP\r\n")
    assert out == b"a BAD SELECT is not allowed in the not authenticated state\r\nb OK done\r\n"
    assert [cmd.tag for cmd in d.commands()] == ["b"]
    out = d.feed(b"c SELECT {7}\r\nd NOOP\r\n")  # synchronizing: the client sends nothing
    assert out == (b"c BAD SELECT is not allowed in the not authenticated state\r\nd OK done\r\n")


def test_gigabyte_literals() -> None:
    d = logged_in()
    # synchronizing: refused before it is read, no continuation
    out = d.feed(b"a APPEND INBOX {1073741824}\r\n")
    assert out == b"a NO [TOOBIG] message too big\r\n"
    assert d.feed(b"b NOOP\r\n") == b"b OK done\r\n"
    out = d.feed(b"c LOGIN {1073741824}\r\n")
    assert out.startswith(b"c BAD ")
    out = d.feed(b"c2 SELECT {1073741824}\r\n")
    assert out == b"c2 BAD [TOOBIG] literal too big\r\n"
    # non-synchronizing: too big to swallow, the connection ends
    out = d.feed(b"d APPEND INBOX {1073741824+}\r\nFrom: x\r\n")
    assert out == b"d NO [TOOBIG] message too big\r\n* BYE [TOOBIG] literal too big\r\n"
    assert d.engine.closed and d.kinds()[-1] == "Closing"
    d = logged_in()
    out = d.feed(b"e SELECT {99999999999999999999999999+}\r\n")
    assert out.endswith(b"* BYE [TOOBIG] literal too big\r\n") and d.engine.closed


def test_literal_minus() -> None:
    d = Driver(Limits(literal_plus=False, max_unauthenticated=64 * 1024))
    assert d.feed(b"a LOGIN {4096+}\r\n" + b"x" * 4096 + b" y\r\n") == b"a OK done\r\n"
    d = Driver(Limits(literal_plus=False, max_unauthenticated=64 * 1024))
    out = d.feed(b"b LOGIN {4097+}\r\n" + b"x" * 4097 + b" y\r\nc NOOP\r\n")
    assert out == b"b BAD [TOOBIG] non-synchronizing literal too big\r\nc OK done\r\n"
    d = logged_in(Limits(literal_plus=False))
    out = d.feed(b"d APPEND INBOX {5000+}\r\n" + b"x" * 5000 + b"\r\ne NOOP\r\n")
    assert out == b"d BAD [TOOBIG] non-synchronizing literal too big\r\ne OK done\r\n"
    assert not d.appended


# -- limits and hostile input ------------------------------------------------------


def test_long_lines() -> None:
    d = Driver()
    out = d.feed(b"a LOGIN " + b"x" * 9000)
    assert out == b"a BAD command line too long\r\n"
    assert d.feed(b"y" * 100000 + b" {5+}\r\n12345\r\nb NOOP\r\n") == b"b OK done\r\n"
    d = logged_in()
    assert d.feed(b"c LOGOUT " + b"x" * 9000 + b"\r\n").startswith(b"c BAD unexpected")
    out = d.feed(b"d NOOP " + b"x" * 70000 + b"\r\ne NOOP\r\n")
    assert out == b"d BAD command line too long\r\ne OK done\r\n"
    # a literal may not stretch a command past the limit either
    out = d.feed(b"f RENAME {60000}\r\n")
    assert out == b"+ OK\r\n"
    out = d.feed(b"x" * 60000 + b" {6000}\r\n")
    assert out == b"f BAD [TOOBIG] literal too big\r\n"
    assert d.feed(b"g NOOP\r\n") == b"g OK done\r\n"


def test_hostile_lines_are_refused_cleanly() -> None:
    d = logged_in()
    for line in (
        b"a SELECT \x00\r\n",
        b"a FETCH 1 (FLAGS\r\n",
        b"a FETCH 1 FLAGS)\r\n",
        b"a SEARCH ((((ALL\r\n",
        b"a SEARCH " + b"(" * 1000 + b"ALL" + b")" * 1000 + b"\r\n",
        b"a SEARCH " + b"NOT " * 5000 + b"ALL\r\n",
        b"a CREATE ../../etc\x00\r\n",
    ):
        out = d.feed(line)
        assert out.startswith(b"a BAD "), (line[:40], out)
        d.feed(b"b NOOP\r\n")
    assert not d.engine.closed


def test_too_many_errors_end_the_connection() -> None:
    d = Driver(Limits(max_errors=3))
    d.feed(b"a BOGUS\r\nb NOOP\r\nc BOGUS\r\nd BOGUS\r\n")
    assert not d.engine.closed
    out = d.feed(b"e BOGUS\r\nf NOOP\r\n")
    assert out == b"e BAD unknown command\r\n* BYE too many invalid commands\r\n"
    assert d.engine.closed


def test_badcharset_is_no_and_not_an_error() -> None:
    d = logged_in(Limits(max_errors=1))
    d.feed(b"s SELECT INBOX\r\n")
    out = d.feed(b"a SEARCH CHARSET KOI8-R ALL\r\n")
    assert out == b"a NO [BADCHARSET (US-ASCII UTF-8)] unsupported charset\r\n"
    assert not d.engine.closed


def test_input_while_an_answer_is_pending_is_bounded() -> None:
    e = ServerProtocol(Limits(max_command=1024))
    e.receive_data(b"a NOOP\r\n")
    assert e.receive_data(b"b NOOP\r\n" * 100) == []
    events = e.receive_data(b"x" * 100000)
    assert isinstance(events[-1], ev.Closing) and e.closed
    assert e.data_to_send().endswith(b"* BYE too much input while a command runs\r\n")


def test_utf8_mailbox_names_once_enabled() -> None:
    d = logged_in()
    assert d.feed(b'a SELECT "Entw\xc3\xbcrfe"\r\n').startswith(b"a BAD ")
    d.engine.utf8 = True
    d.feed(b'b SELECT "Entw\xc3\xbcrfe"\r\n')
    cmd = d.commands()[-1]
    assert isinstance(cmd, c.Select) and cmd.mailbox == "Entwürfe"


# -- APPEND ---------------------------------------------------------------------------


def test_append_streams_the_message() -> None:
    d = logged_in()
    out = d.feed(b'a APPEND INBOX (\\Seen) " 7-Feb-1994 21:52:25 -0800" {26}\r\n')
    assert out == b"+ Ready for literal data\r\n"
    begin = d.events[0]
    assert isinstance(begin, ev.AppendBegin)
    assert begin.mailbox == "INBOX" and begin.message.size == 26 and begin.index == 0
    assert d.feed(b"Subject: hi\r\n") == b""
    assert d.feed(b"\r\nhello world") == b""
    assert d.engine.awaiting == "command"
    assert d.feed(b"\r\nb NOOP\r\n") == b"a OK done\r\nb OK done\r\n"
    assert d.appended == [b"Subject: hi\r\n\r\nhello world"]
    kinds = d.kinds()
    assert kinds[0] == "AppendBegin" and kinds.count("AppendData") == 2
    assert kinds[-3:] == ["AppendEnd", "AppendComplete", "CommandReady"]


def test_multiappend_and_mailbox_literal() -> None:
    d = logged_in()
    out = d.feed(b"a APPEND {6}\r\n")
    assert out == b"+ OK\r\n"  # the mailbox name itself
    out = d.feed(b"Drafts (\\Draft) {3+}\r\none ~{4+}\r\nt\x00o! {5}\r\n")
    assert out == b"+ Ready for literal data\r\n"
    out = d.feed(b"three\r\n")
    assert out == b"a OK done\r\n"
    assert d.appended == [b"one", b"t\x00o!", b"three"]
    begins = [e for e in d.events if isinstance(e, ev.AppendBegin)]
    assert [b.index for b in begins] == [0, 1, 2]
    assert [b.mailbox for b in begins] == ["Drafts"] * 3
    assert begins[0].message.flags == {"\\Draft"} and begins[1].message.binary
    done = d.events[-1]
    assert isinstance(done, ev.AppendComplete) and done.count == 3


def test_append_refused_by_the_session() -> None:
    def refuse(e: ServerProtocol, x: Event) -> None:
        if isinstance(x, ev.AppendBegin):
            e.finish(Result(status="NO", text="no such mailbox", code=Code(name="TRYCREATE")))
        else:
            answer_ok(e, x)

    d = logged_in(policy=refuse)
    out = d.feed(b"a APPEND nowhere {10}\r\n")  # synchronizing: never read
    assert out == b"a NO [TRYCREATE] no such mailbox\r\n"
    assert d.feed(b"b NOOP\r\n") == b"b OK done\r\n"
    out = d.feed(b"c APPEND nowhere {10+}\r\nd LOGOUT\r\n {3+}\r\nabc\r\ne NOOP\r\n")
    assert out == b"c NO [TRYCREATE] no such mailbox\r\ne OK done\r\n"
    assert not d.appended and not d.engine.closed


def test_append_faults() -> None:
    d = logged_in()
    out = d.feed(b"a APPEND INBOX {3+}\r\na\x00b\r\nb NOOP\r\n")
    assert out == b"a BAD NUL octet in the message; use literal8 (BINARY)\r\nb OK done\r\n"
    assert "AppendAborted" in d.kinds() and not d.appended
    d.events.clear()
    out = d.feed(b"c APPEND INBOX {3+}\r\nabc junk\r\nd NOOP\r\n")
    assert out == b"c BAD unexpected characters after the message\r\nd OK done\r\n"
    assert d.kinds().count("AppendAborted") == 1
    out = d.feed(b"e APPEND INBOX {3+}\r\nabc (\\Bogus) {3+}\r\nxyz\r\nf NOOP\r\n")
    assert out == b"e BAD invalid system flag \\Bogus\r\nf OK done\r\n"
    out = d.feed(b"g APPEND INBOX (\\Seen {3+}\r\nxyz\r\nh NOOP\r\n")
    assert out.startswith(b"g BAD ") and out.endswith(b"h OK done\r\n")
    d.events.clear()
    d.feed(b"i APPEND INBOX {10+}\r\nabc")
    events = d.engine.eof_received()
    assert [type(x).__name__ for x in events] == ["AppendAborted", "Closing"]


def test_append_before_login_is_refused_unread() -> None:
    d = Driver()
    out = d.feed(b"a APPEND INBOX {5000000}\r\n")
    assert out == b"a BAD APPEND is not allowed in the not authenticated state\r\n"
    out = d.feed(b"b APPEND INBOX {5000+}\r\n" + b"c LOGOUT\r\n" * 500 + b"\r\nd NOOP\r\n")
    assert out.endswith(b"d OK done\r\n") and not d.engine.closed


# -- AUTHENTICATE, IDLE, STARTTLS ----------------------------------------------------


def test_authenticate_exchange() -> None:
    e = ServerProtocol()
    events = e.receive_data(b"a AUTHENTICATE PLAIN\r\n")
    assert isinstance(events[0], ev.CommandReady)
    e.challenge(b"")
    assert e.data_to_send() == b"+ \r\n"
    events = e.receive_data(b"AGZyZWQAc2VjcmV0\r\n")
    assert isinstance(events[0], ev.AuthResponse)
    assert events[0].data == b"\x00fred\x00secret" and "secret" not in repr(events[0])
    e.finish(Result(status="OK", text="authenticated"))
    assert e.state is State.AUTHENTICATED
    e = ServerProtocol()
    e.receive_data(b"b AUTHENTICATE LOGIN\r\n")
    e.challenge(b"Username:")
    assert e.data_to_send() == b"+ VXNlcm5hbWU6\r\n"
    events = e.receive_data(b"*\r\n")
    assert isinstance(events[0], ev.AuthResponse) and events[0].data is None
    e.finish(Result(status="BAD", text="cancelled"))
    assert e.state is State.NOT_AUTHENTICATED
    e.receive_data(b"c AUTHENTICATE LOGIN\r\n")
    e.challenge(b"x")
    events = e.receive_data(b"not base64!\r\nd NOOP\r\n")
    assert isinstance(events[0], ev.AuthAborted)
    assert isinstance(events[-1], ev.CommandReady)
    assert e.data_to_send().endswith(b"c BAD invalid base64 in the response\r\n")
    e.finish(OK)
    e.receive_data(b"e AUTHENTICATE PLAIN\r\n")
    e.challenge(b"")
    events = e.receive_data(b"A" * 20000 + b"\r\nf NOOP\r\n")
    assert isinstance(events[0], ev.AuthAborted) and isinstance(events[-1], ev.CommandReady)
    with pytest.raises(RuntimeError):
        e.challenge(b"")  # NOOP is not AUTHENTICATE


def test_idle() -> None:
    d = logged_in()
    d.feed(b"s SELECT INBOX\r\n")
    assert d.feed(b"a IDLE\r\n") == b"+ idling\r\n"
    assert d.engine.awaiting == "idle"
    d.engine.send(b"* 4 EXISTS\r\n")
    assert d.feed(b"") == b"* 4 EXISTS\r\n"
    assert d.feed(b"done\r\nb NOOP\r\n") == b"a OK done\r\nb OK done\r\n"
    assert d.feed(b"c IDLE\r\n") == b"+ idling\r\n"
    out = d.feed(b"d NOOP\r\ne NOOP\r\n")
    assert out == b"c BAD expected DONE\r\ne OK done\r\n"
    assert "IdleAborted" in d.kinds()


def test_starttls_discards_pipelined_plaintext() -> None:
    e = ServerProtocol()
    events = e.receive_data(b"a STARTTLS\r\nb LOGIN fred secret\r\n")
    assert isinstance(events[0], ev.CommandReady) and isinstance(events[0].command, c.StartTls)
    e.finish(Result(status="OK", text="begin TLS"))
    assert e.data_to_send() == b"a OK begin TLS\r\n"
    assert e.awaiting == "tls"
    assert e.receive_data(b"") == []
    assert e.receive_data(b"c LOGIN x y\r\n") == []
    e.tls_started()
    assert e.tls
    events = e.receive_data(b"d CAPABILITY\r\n")
    assert isinstance(events[0], ev.CommandReady) and events[0].command.tag == "d"


def test_close_sends_bye() -> None:
    e = ServerProtocol()
    e.close("server shutting down")
    assert e.data_to_send() == b"* BYE server shutting down\r\n" and e.closed
    e.finish(OK)  # a session answering after the close is harmless


# -- fuzz --------------------------------------------------------------------------------

_WORDS = st.sampled_from(
    [
        b"a ",
        b"LOGIN fred x",
        b"SELECT INBOX",
        b"APPEND INBOX ",
        b"FETCH 1:* (FLAGS BODY[])",
        b"SEARCH NOT (",
        b"IDLE",
        b"DONE",
        b"AUTHENTICATE PLAIN",
        b"STARTTLS",
        b"LOGOUT",
        b"{3}",
        b"{2+}",
        b"~{4+}",
        b"{99999999+}",
        b"\r\n",
        b"\r",
        b"\n",
        b"\x00",
        b"(",
        b")",
        b'"',
        b"xyz",
        b"*",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_WORDS, max_size=40).map(b"".join), st.integers(1, 50))
def test_fuzz_engine_never_raises(script: bytes, chunk: int) -> None:
    d = Driver(Limits(max_unauthenticated=256, max_command=512, max_discard=1024))
    for pos in range(0, len(script), chunk):
        d.feed(script[pos : pos + chunk])
    d.engine.eof_received()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_fuzz_random_bytes(data: bytes, preauth: bool) -> None:
    d = Driver(preauth=preauth)
    out = d.feed(data)
    assert out == b"" or out.endswith(b"\r\n")
