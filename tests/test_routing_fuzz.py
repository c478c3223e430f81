"""Hypothesis: .forward and .qmail parsing, and resolve() on random maps, never raise and end."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.routing import dotqmail, forward, virtual
from postoffice.routing.aliases import classify, parse_address
from postoffice.routing.targets import File, Mailbox, Program, Refusal, Remote, to_spec
from postoffice.smtp.replies import Reply
from test_routing_support import HOST, TOOLS, Accounts, config, make_router

NAMES = st.sampled_from(["a", "b", "c", "dl", "lee", "root", "postmaster", "x+y", "a-b"])
DOMAINS = st.sampled_from([HOST, "tonk.com", "remote.example", "virt.example"])
ADDRESS = st.one_of(NAMES, st.builds(lambda n, d: f"{n}@{d}", NAMES, DOMAINS))
TARGET = st.one_of(
    ADDRESS,
    ADDRESS.map(lambda a: "\\" + a),
    st.just('"|/usr/bin/prog"'),
    st.just("/var/log/file"),
    st.just("%1@tonk.com"),
    st.just("%1%3@virt.example"),
    st.just("error:5.1.1:550 gone"),
    st.text(max_size=12),
)
RHS = st.lists(TARGET, min_size=1, max_size=4).map(", ".join)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.text(max_size=300))
def test_dotqmail_parser_total(text: str) -> None:
    instructions, problems = dotqmail.parse_dotqmail(text)
    assert len(instructions) + len(problems) <= text.count("\n") + 1
    for i in instructions:
        assert i.value and i.value == i.value.rstrip(" \t")


@SETTINGS
@given(st.text(max_size=300))
def test_forward_parser_total(text: str) -> None:
    for target, line in forward.parse_forward(text, TOOLS.parse_targets):
        assert target and 1 <= line <= len(text.splitlines())
        classify(target)


@SETTINGS
@given(st.text(max_size=80))
def test_address_and_error_parsers_total(text: str) -> None:
    addr = parse_address(text, HOST)
    if addr is not None:
        assert "\n" not in addr.text and addr.local
    reply = virtual.parse_error("error:" + text, default=Reply(code=550, enhanced="5.1.1"))
    assert reply.code in range(400, 600) and reply.enhanced[0] == str(reply.code)[0]
    assert "\n" not in reply.text and "\r" not in reply.text


@SETTINGS
@given(
    aliases=st.dictionaries(NAMES, RHS, max_size=8),
    virtusertable=st.dictionaries(
        st.one_of(
            st.builds(lambda n: f"{n}@tonk.com", NAMES),
            st.sampled_from(["@tonk.com", "@virt.example"]),
        ),
        TARGET,
        max_size=6,
    ),
    mailertable=st.dictionaries(
        st.sampled_from(["remote.example", ".example", "."]),
        st.sampled_from(["smtp:[gw]", "local:", "local:dl", "error:550 no", "uucp:x", "junk"]),
        max_size=3,
    ),
    recipient=ADDRESS,
    home_files=st.dictionaries(
        st.sampled_from([".forward", ".qmail", ".qmail-y", ".qmail-default", ".forward+y"]),
        st.lists(TARGET, max_size=3).map("\n".join),
        max_size=3,
    ),
)
def test_resolve_is_total_and_bounded(
    aliases: dict[str, str],
    virtusertable: dict[str, str],
    mailertable: dict[str, str],
    recipient: str,
    home_files: dict[str, str],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        accounts = Accounts()
        accounts.add("nobody", "/nonexistent", uid=65534)
        for name in ("dl", "lee", "x"):
            h = Path(tmp) / name
            h.mkdir()
            for fname, text in home_files.items():
                (h / fname).write_text(text)
                (h / fname).chmod(0o644)
            accounts.add(name, h, uid=1000)
        r = make_router(
            cfg=config(local_domains=(HOST, "tonk.com", "virt.example")),
            users=[f"a@{HOST}", "b@tonk.com"],
            aliases=aliases,
            virtusertable=virtusertable,
            mailertable=mailertable,
            accounts=accounts,
        )
        res = r.resolve(recipient)
    assert res.targets, res
    assert len(res.targets) <= 10_000
    assert len({to_spec(t) + t.address for t in res.targets}) == len(res.targets)
    for t in res.targets:
        assert isinstance(t, Mailbox | Program | File | Remote | Refusal)
        if isinstance(t, Program | File):
            assert t.user not in ("", "root")
        if isinstance(t, Mailbox):
            assert t.spec.split(":", 1)[1].startswith("/")
