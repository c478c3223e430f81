"""Per-listener overrides: [smtp.policy] and [submission.policy] over [policy].

Unit level (the rules, the engine with a fake DNS blocklist), configuration
(types, values and file:line:key errors, `config show`, docs), and end to
end against a live `postoffice serve` with an SMTP and a submission
listener.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PASSWORD, LiveServer, make_site
from policy_support import connect, make_engine
from postoffice.cli.config_cmd import render_config
from postoffice.config.docs import render_markdown
from postoffice.config.load import parse_config
from postoffice.config.schema import Config, ListenerPolicyConfig
from postoffice.errors import ConfigError
from postoffice.policy.engine import Kind, PolicyEngine
from postoffice.policy.limits import ConnectionLimits
from postoffice.policy.listener import (
    QMTP,
    SMTP,
    SUBMISSION,
    ListenerRules,
    listener_rules,
    rules_for,
)
from postoffice.testing.fake_dns import FakeDnsServer

LISTED = "192.0.2.99"


@pytest.fixture(scope="module")
def dns() -> Iterator[FakeDnsServer]:
    zones = {"99.2.0.192.bl.example": {"A": ["127.0.0.2"], "TXT": ["listed"]}}
    with FakeDnsServer(zones) as server:  # type: ignore[arg-type]
        yield server


def engine_with(tmp_path: Path, **kinds: ListenerRules) -> PolicyEngine:
    engine = make_engine(tmp_path, limits=ConnectionLimits(max_connections_per_ip=2))
    engine.listeners = dict(kinds)
    return engine


# --- the rules ------------------------------------------------------------------------


def test_defaults_and_overrides() -> None:
    rules = listener_rules(Config())
    assert rules[SMTP] == ListenerRules(kind=SMTP)
    assert rules[QMTP] == ListenerRules(kind=QMTP)
    assert rules[SUBMISSION] == ListenerRules(kind=SUBMISSION, require_auth=True)
    cfg = parse_config(
        "[smtp.policy]\nrequire_auth = true\nmax_connection_rate = 10\n"
        "[submission.policy]\nrequire_auth = false\ndnsbl = false\naccess = false\n"
        "max_connections_per_ip = 0\nmax_messages_per_hour = 100\n"
    )
    rules = listener_rules(cfg)
    assert rules[SMTP].require_auth and rules[QMTP].require_auth  # QMTP follows [smtp.policy]
    assert rules[SMTP].max_connection_rate == 10 and rules[SMTP].dnsbl
    sub = rules[SUBMISSION]
    assert (sub.require_auth, sub.dnsbl, sub.access) == (False, False, False)
    assert (sub.max_connections_per_ip, sub.max_messages_per_hour) == (0, 100)
    assert sub.max_connection_rate is None  # not given: [policy]'s
    assert rules_for({}, SUBMISSION).require_auth and not rules_for({}, "other").require_auth


# --- the engine -----------------------------------------------------------------------


async def test_connections_count_per_kind_of_listener(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, submission=ListenerRules(kind=SUBMISSION, require_auth=True))
    held = []
    for _ in range(2):
        state = await engine.new_client("192.0.2.1")  # smtp
        assert (await engine.on_connect(state)).kind is Kind.ACCEPT
        held.append(state)
    state = await engine.new_client("192.0.2.1")
    assert (await engine.on_connect(state)).reply.code == 421  # [policy]'s 2 on smtp
    # the same client still has its allowance on the submission port
    state = await engine.new_client("192.0.2.1", listener=SUBMISSION)
    assert state.listener == SUBMISSION
    assert (await engine.on_connect(state)).kind is Kind.ACCEPT
    engine.on_disconnect(held.pop())
    state = await engine.new_client("192.0.2.1")
    assert (await engine.on_connect(state)).kind is Kind.ACCEPT


async def test_listener_limits_override_policy_and_tcprules_override_both(
    tmp_path: Path,
) -> None:
    engine = make_engine(
        tmp_path,
        limits=ConnectionLimits(max_connections_per_ip=5),
        tcprules='192.0.2.7:allow,MAXCONNIP="3"\n',
    )
    engine.listeners = {
        SUBMISSION: ListenerRules(kind=SUBMISSION, max_connections_per_ip=1),
        SMTP: ListenerRules(kind=SMTP, max_messages_per_hour=1),
    }
    first = await engine.new_client("192.0.2.1", listener=SUBMISSION)
    assert (await engine.on_connect(first)).kind is Kind.ACCEPT
    second = await engine.new_client("192.0.2.1", listener=SUBMISSION)
    assert (await engine.on_connect(second)).reply.code == 421
    for _ in range(3):  # the rule's MAXCONNIP="3" beats the listener's 1
        state = await engine.new_client("192.0.2.7", listener=SUBMISSION)
        assert (await engine.on_connect(state)).kind is Kind.ACCEPT
    state = await engine.new_client("192.0.2.7", listener=SUBMISSION)
    assert (await engine.on_connect(state)).reply.code == 421
    # the message rate of [smtp.policy]: one message an hour on smtp
    smtp, _ = await connect(engine, "192.0.2.8")
    assert (await engine.on_mail(smtp, "a@b.example")).kind is not Kind.DEFER
    over = await engine.on_mail(smtp, "a@b.example")
    assert (over.reply.code, over.reply.enhanced) == (451, "4.7.1")


async def test_dnsbl_off_on_one_listener(tmp_path: Path, dns: FakeDnsServer) -> None:
    engine = make_engine(tmp_path, resolver=dns.resolver(timeout=1.0), dnsbl_zones=("bl.example",))
    engine.listeners = {SUBMISSION: ListenerRules(kind=SUBMISSION, dnsbl=False)}
    state = await engine.new_client(LISTED)
    assert (await engine.on_connect(state)).kind is Kind.REJECT
    state = await engine.new_client(LISTED, listener=SUBMISSION)
    assert (await engine.on_connect(state)).kind is Kind.ACCEPT


async def test_access_off_on_one_listener(tmp_path: Path) -> None:
    access = (
        "Connect:192.0.2.5 REJECT\nFrom:spammer@bad.example REJECT\n"
        "Connect:192.0.2.6 RELAY\nTo:partner.example RELAY\n"
    )
    engine = make_engine(tmp_path, access=access, accept_unresolvable_domains=True)
    engine.listeners = {SUBMISSION: ListenerRules(kind=SUBMISSION, access=False)}
    assert (await connect(engine, "192.0.2.5"))[1].kind is Kind.REJECT
    state = await engine.new_client("192.0.2.5", listener=SUBMISSION)
    assert (await engine.on_connect(state)).kind is Kind.ACCEPT
    assert (await engine.on_mail(state, "spammer@bad.example")).kind is Kind.ACCEPT
    # nor does the access database open relaying there
    assert (await engine.on_rcpt(state, "x@partner.example")).kind is Kind.REJECT
    relay = await engine.new_client("192.0.2.6", listener=SUBMISSION)
    await engine.on_connect(relay)
    await engine.on_mail(relay, "x@good.example")
    assert (await engine.on_rcpt(relay, "x@elsewhere.example")).kind is Kind.REJECT
    on_smtp, _ = await connect(engine, "192.0.2.6")
    await engine.on_mail(on_smtp, "x@good.example")
    assert (await engine.on_rcpt(on_smtp, "x@elsewhere.example")).kind is Kind.RELAY


def test_from_config_takes_the_listener_rules(tmp_path: Path) -> None:
    cfg = parse_config(
        f'config_dir = "{tmp_path}"\n[submission.policy]\nmax_connections_per_ip = 7\n',
        file=str(tmp_path / "postoffice.toml"),
    )
    engine = PolicyEngine.from_config(cfg, resolver=None, user_exists=lambda a: False)
    assert engine.listeners[SUBMISSION].max_connections_per_ip == 7
    assert engine.listeners[SMTP].max_connections_per_ip is None


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (
            "[submission.policy]\nmax_connections_per_ip = -1\n",
            2,
            "max_connections_per_ip",
            "negative",
        ),
        (
            '[smtp]\nbanner = "x"\n\n[smtp.policy]\ndnsbl = "no"\n',
            5,
            "smtp.policy.dnsbl",
            "boolean",
        ),
        ("[smtp.policy]\nrequire_auth = true\nbogus = 1\n", 3, "smtp.policy.bogus", "unknown key"),
        ("[submission]\npolicy = 3\n", 2, "submission.policy", "expected a table"),
        ("[smtp.policy.deeper]\n", 1, "smtp.policy.deeper", "unknown table"),
    ],
)
def test_errors_name_file_line_and_key(text: str, line: int, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, file="/etc/postoffice/postoffice.toml")
    error = raised.value
    assert str(error).startswith(f"/etc/postoffice/postoffice.toml:{line}: ")
    assert key in str(error) and message in str(error)


def test_inline_table_form_and_show_and_docs() -> None:
    cfg = parse_config("[submission]\npolicy = { dnsbl = false, max_connection_rate = 30 }\n")
    assert cfg.submission.policy == ListenerPolicyConfig(dnsbl=False, max_connection_rate=30)
    shown = render_config(cfg)
    part = shown[shown.index("[submission.policy]") :]
    assert "max_connection_rate = 30" in part and "dnsbl = false" in part
    assert "# require_auth = (unset)" in part
    docs = render_markdown()
    assert "### [smtp.policy], [submission.policy]" in docs
    assert "| `require_auth` | boolean (optional) | `(unset)` |" in docs


# --- end to end --------------------------------------------------------------------------


def test_live_listeners_with_their_own_policy(tmp_path: Path) -> None:
    site = make_site(
        tmp_path / "site",
        extra_toml='[relay]\ntrusted_networks = ["10.9.9.9/32"]\n'
        '[submission]\nlisten = ["127.0.0.1:0"]\n'
        "[auth]\nfailure_delay = 0.01\n"
        "[policy]\naccept_unresolvable_domains = true\n"
        "[smtp.policy]\nrequire_auth = true\n"  # port 25 takes mail only after AUTH here
        "[submission.policy]\nmax_connections_per_ip = 1\naccess = false\n",
    )
    (site.root / "access").write_text("From:boss@example.org REJECT\n")
    (site.root / "access").chmod(0o600)
    server = LiveServer(site)
    try:
        m = server.wait_for(r"listening for submission on 127\.0\.0\.1:(\d+)")
        sub_port = int(m.group(1))
        with smtplib.SMTP(server.host, server.port, timeout=10) as c:
            c.ehlo("client.example.org")
            code, _ = c.mail("x@example.org")
            assert code == 530  # [smtp.policy] require_auth
            c.login("alice@example.test", PASSWORD)
            code, _ = c.mail("boss@example.org")
            assert code == 550  # access From: applies on smtp
        with smtplib.SMTP(server.host, sub_port, timeout=10) as first:
            first.ehlo("client.example.org")
            first.login("alice@example.test", PASSWORD)
            assert first.mail("boss@example.org")[0] == 250  # access = false on submission
            assert first.rcpt("bob@example.test")[0] == 250
            # a second submission connection from 127.0.0.1 while the first is open
            with smtplib.SMTP(timeout=10) as second:
                code, msg = second.connect(server.host, sub_port)
                assert (code, msg) == (
                    421,
                    b"Too many connections from your address, try again later",
                )
            # ... while port 25 still takes more connections from it
            with smtplib.SMTP(server.host, server.port, timeout=10) as third:
                assert third.ehlo("client.example.org")[0] == 250
    finally:
        server.stop()
