"""Tests for delivery/pipe.py and delivery/runas.py: |command delivery as the target's user.

The tests run as root (as CI does) and deliver as `nobody` into a directory
under /tmp that nobody can reach (pytest's tmp_path is under a 0700
directory). The programs are small /bin/sh scripts in a program_dir; the
timeout test's program sleeps, the test does not.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from postoffice.delivery import pipe, runas
from postoffice.delivery.pipe import (
    AddressParts,
    ProgramAgent,
    Stop,
    env_value,
    split_command,
    status_outcome,
)
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Bounced, Deferred, Delivered, Outcome
from postoffice.routing.targets import File, Program, to_spec

BODY = b"Subject: test\r\nFrom: alice@example.org\r\n\r\nHello\r\nFrom me\r\n"
ARRIVAL = 1795281136.0


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:  # pragma: no cover - Debian has it
        return None


NOBODY = _nobody()

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or NOBODY is None, reason="needs root and the nobody user"
)

DUMP = """#!/bin/sh
# Record how we were run, then exit with $1 (default 0).
out=%(out)s
env > "$out/env"
cat > "$out/stdin"
id -u > "$out/uid"
id -g > "$out/gid"
id -G > "$out/groups"
pwd > "$out/cwd"
umask > "$out/umask"
for a in "$@"; do printf '%%s\\n' "$a"; done > "$out/args"
exit "${1:-0}"
"""


@dataclass
class Setup:
    root: Path
    bin: Path  # program_dir
    out: Path  # writable by nobody
    body: Path

    def script(self, name: str, text: str, mode: int = 0o755, where: Path | None = None) -> Path:
        path = (where or self.bin) / name
        path.write_text(text)
        path.chmod(mode)
        return path

    def open_body(self, queue_id: str) -> BinaryIO:
        return open(self.body, "rb")

    def agent(self, *, timeout: float = 30.0, any_program: bool = False) -> ProgramAgent:
        return ProgramAgent(
            self.open_body,
            hostname="mx.example",
            program_dir=str(self.bin),
            any_program=any_program,
            timeout=timeout,
            default_user="nobody",
        )


@pytest.fixture
def setup() -> Iterator[Setup]:
    root = Path(tempfile.mkdtemp(prefix="postoffice-pipe-"))
    try:
        root.chmod(0o755)
        (root / "bin").mkdir(mode=0o755)
        out = root / "out"
        out.mkdir(mode=0o755)
        if NOBODY is not None and os.geteuid() == 0:
            os.chown(out, NOBODY.pw_uid, NOBODY.pw_gid)
        body = root / "body"
        body.write_bytes(BODY)
        body.chmod(0o600)  # only the server reads the queue
        s = Setup(root=root, bin=root / "bin", out=out, body=body)
        s.script("dump", DUMP % {"out": out})
        yield s
    finally:
        shutil.rmtree(root, ignore_errors=True)


def envelope(
    command: str,
    *,
    user: str = "",
    home: str = "",
    address: str = "bob+ext@example.org",
    orig: str = "Bob@Example.ORG",
    sender: str = "alice@example.org",
) -> Envelope:
    target = to_spec(Program(address=address, command=command, user=user, home=home))
    return Envelope(
        queue_id="01QUEUEID",
        sender=sender,
        recipients=(EnvelopeRecipient(address=address, orig=orig, target=target),),
        arrival_time=ARRIVAL,
        size=len(BODY),
        client_address="192.0.2.1",
        client_name="client.example",
        helo="helo.example",
        protocol="ESMTP",
    )


async def deliver_one(agent: ProgramAgent, env: Envelope) -> Outcome:
    (outcome,) = await agent.deliver(env, env.recipients)
    assert outcome.recipient is env.recipients[0]
    return outcome


def read_env(out: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    key = ""
    for line in (out / "env").read_text().splitlines():
        if "=" in line and line.split("=", 1)[0].isidentifier():
            key, _, value = line.partition("=")
            env[key] = value
        else:  # a value with a newline (RPLINE, DTLINE)
            env[key] += "\n" + line
    return env


def live_members(pgid: int) -> list[int]:
    """Processes of process group `pgid` that are not zombies (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


# --- a real delivery ------------------------------------------------------------------


@needs_root
async def test_runs_as_nobody_with_clean_environment_and_postfix_input(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTOFFICE_SECRET", "must-not-leak")
    agent = setup.agent()
    outcome = await deliver_one(agent, envelope("|dump"))
    assert isinstance(outcome, Delivered), outcome
    assert outcome.reply == pipe.DELIVERED_COMMAND
    assert outcome.relay == "local"
    assert NOBODY is not None
    assert (setup.out / "uid").read_text().split() == [str(NOBODY.pw_uid)]
    assert (setup.out / "gid").read_text().split() == [str(NOBODY.pw_gid)]
    groups = sorted(int(g) for g in (setup.out / "groups").read_text().split())
    assert groups == sorted(set(os.getgrouplist("nobody", NOBODY.pw_gid)))
    # nobody's home (/nonexistent) is missing: the program runs in /
    assert (setup.out / "cwd").read_text() == "/\n"
    assert (setup.out / "umask").read_text().strip() == "0077"
    # Postfix local(8): From line, Return-Path, Delivered-To, LF endings, no quoting
    assert (setup.out / "stdin").read_bytes() == (
        b"From alice@example.org " + time.asctime(time.localtime(ARRIVAL)).encode() + b"\n"
        b"Return-Path: <alice@example.org>\n"
        b"Delivered-To: bob+ext@example.org\n"
        b"Subject: test\nFrom: alice@example.org\n\nHello\nFrom me\n"
    )
    env = read_env(setup.out)
    env.pop("PWD", None)  # set by /bin/sh itself
    env.pop("SHLVL", None)
    assert env == {
        "PATH": "/usr/bin:/bin",
        "SHELL": "/bin/sh",
        "HOME": "/",
        "USER": "nobody",
        "LOGNAME": "nobody",
        "SENDER": "alice@example.org",
        "RECIPIENT": "bob+ext@example.org",
        "ORIGINAL_RECIPIENT": "Bob@Example.ORG",
        "LOCAL": "bob+ext",
        "DOMAIN": "example.org",
        "HOST": "example.org",
        "EXTENSION": "ext",
        "EXT": "ext",
        "RPLINE": "Return-Path: <alice@example.org>\n",
        "DTLINE": "Delivered-To: bob+ext@example.org\n",
        "QUEUE_ID": "01QUEUEID",
        "CLIENT_ADDRESS": "192.0.2.1",
        "CLIENT_HELO": "helo.example",
        "CLIENT_HOSTNAME": "client.example",
        "CLIENT_PROTOCOL": "ESMTP",
    }
    assert agent.statistics() == {"delivered": 1, "deferred": 0, "bounced": 0}


@needs_root
async def test_home_from_target_is_the_working_directory(setup: Setup) -> None:
    home = setup.root / "home"
    home.mkdir(mode=0o755)
    outcome = await deliver_one(setup.agent(), envelope("|dump", home=str(home)))
    assert isinstance(outcome, Delivered), outcome
    assert (setup.out / "cwd").read_text() == f"{home}\n"
    assert read_env(setup.out)["HOME"] == str(home)


@needs_root
async def test_envelope_values_are_filtered_in_the_environment(setup: Setup) -> None:
    env = envelope("|dump", sender="o'brien;$(id)@example.org", address='"j doe"@example.org')
    outcome = await deliver_one(setup.agent(), env)
    assert isinstance(outcome, Delivered), outcome
    got = read_env(setup.out)
    assert got["SENDER"] == "o_brien___id_@example.org"
    assert got["LOCAL"] == "j_doe"
    assert got["RPLINE"] == "Return-Path: <o_brien___id_@example.org>\n"


@needs_root
async def test_macros_become_whole_arguments(setup: Setup) -> None:
    setup.script("args", f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {setup.out}/args\n')
    command = '|args "${sender}" ${recipient} x${extension}y ${user} ${size} "a b"'
    outcome = await deliver_one(setup.agent(), envelope(command, sender=""))
    assert isinstance(outcome, Delivered), outcome
    assert (setup.out / "args").read_text().splitlines() == [
        "MAILER-DAEMON",
        "bob+ext@example.org",
        "xexty",
        "bob",
        str(len(BODY)),
        "a b",
    ]


@needs_root
async def test_macro_starting_an_option_is_refused(setup: Setup) -> None:
    env = envelope("|dump ${sender}", sender="-oQ/tmp/x@example.org")
    outcome = await deliver_one(setup.agent(), env)
    assert isinstance(outcome, Bounced)
    assert outcome.reply == pipe.DASH_ARGUMENT
    assert not (setup.out / "env").exists()


# --- exit status ---------------------------------------------------------------------


@needs_root
@pytest.mark.parametrize(
    ("status", "kind", "code", "enhanced"),
    [
        (0, Delivered, 250, "2.0.0"),
        (99, Delivered, 250, "2.0.0"),  # qmail: success
        (75, Deferred, 451, "4.3.0"),  # EX_TEMPFAIL
        (71, Deferred, 451, "4.3.0"),  # EX_OSERR (Postfix: soft)
        (111, Deferred, 451, "4.3.0"),  # qmail soft
        (67, Bounced, 550, "5.1.1"),  # EX_NOUSER
        (77, Bounced, 550, "5.7.0"),  # EX_NOPERM (Postfix sys_exits.c)
        (78, Bounced, 554, "5.3.5"),  # EX_CONFIG
        (100, Bounced, 554, "5.3.0"),  # qmail hard
        (1, Bounced, 554, "5.3.0"),  # anything else (Postfix)
    ],
)
async def test_exit_status(setup: Setup, status: int, kind: type, code: int, enhanced: str) -> None:
    outcome = await deliver_one(setup.agent(), envelope(f"|dump {status}"))
    assert type(outcome) is kind, outcome
    assert (outcome.reply.code, outcome.reply.enhanced) == (code, enhanced)
    assert f"exit {status}" in outcome.detail


@needs_root
async def test_output_goes_into_the_reply_bounded(setup: Setup) -> None:
    setup.script("noisy", "#!/bin/sh\necho 'no such mailbox'\nhead -c 100000 /dev/zero\nexit 67\n")
    outcome = await deliver_one(setup.agent(), envelope("|noisy"))
    assert isinstance(outcome, Bounced)
    assert outcome.reply.text.startswith("user unknown. Command output: no such mailbox")
    assert len(outcome.reply.text) < 300
    assert len(outcome.detail) < pipe.OUTPUT_LIMIT + 200


@needs_root
async def test_enhanced_code_in_output_wins(setup: Setup) -> None:
    setup.script("full", "#!/bin/sh\necho '5.2.2 mailbox full'\nexit 75\n")
    setup.script("quota", "#!/bin/sh\necho '4.2.2 over quota'\nexit 1\n")
    full = await deliver_one(setup.agent(), envelope("|full"))
    assert isinstance(full, Bounced)
    assert (full.reply.code, full.reply.enhanced, full.reply.text) == (
        550,
        "5.2.2",
        "mailbox full",
    )
    quota = await deliver_one(setup.agent(), envelope("|quota"))
    assert isinstance(quota, Deferred)
    assert quota.reply.enhanced == "4.2.2"


@needs_root
async def test_program_that_ignores_stdin_is_judged_by_status(setup: Setup) -> None:
    setup.body.write_bytes(BODY + b"x" * 2_000_000 + b"\r\n")  # more than any pipe buffer
    setup.script("ignore", "#!/bin/sh\nexit 0\n")
    outcome = await deliver_one(setup.agent(), envelope("|ignore"))
    assert isinstance(outcome, Delivered), outcome


@needs_root
async def test_timeout_kills_the_process_group(setup: Setup) -> None:
    setup.script("slow", f"#!/bin/sh\necho $$ > {setup.out}/pid\nsleep 60\n")
    started = time.monotonic()
    outcome = await deliver_one(setup.agent(timeout=0.5), envelope("|slow"))
    assert time.monotonic() - started < 20
    assert isinstance(outcome, Deferred)
    assert outcome.reply == pipe.TIME_LIMIT
    pgid = int((setup.out / "pid").read_text())
    # SIGKILL is delivered asynchronously: poll (with a deadline) until no live
    # process is left in the group (zombies waiting for init do not count).
    deadline = time.monotonic() + 10
    while live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live_members(pgid) == []


@needs_root
async def test_killed_by_signal_defers(setup: Setup) -> None:
    setup.script("suicide", "#!/bin/sh\nkill -TERM $$\n")
    outcome = await deliver_one(setup.agent(), envelope("|suicide"))
    assert isinstance(outcome, Deferred)
    assert outcome.reply.text == "command died with signal 15"


def test_status_outcome_table() -> None:
    assert status_outcome(0, b"") == ("delivered", pipe.DELIVERED_COMMAND)
    kind, reply = status_outcome(73, b"")
    assert (kind, reply.code, reply.enhanced) == ("bounced", 550, "5.2.0")
    kind, reply = status_outcome(42, b"\x00oops\r\n")
    assert (kind, reply.text) == ("bounced", "command died with status 42. Command output: oops")
    kind, reply = status_outcome(1, b"4.7.1 greylisted, try later")
    assert (kind, reply.code, reply.enhanced, reply.text) == (
        "deferred",
        451,
        "4.7.1",
        "greylisted, try later",
    )
    assert set(pipe.SYSEXITS) >= set(range(64, 79))


# --- smrsh semantics and refusals -------------------------------------------------------


@needs_root
@pytest.mark.parametrize("command", ["|/usr/bin/dump", "|../../dump", "|exec dump", "| dump"])
async def test_directory_part_is_stripped(setup: Setup, command: str) -> None:
    outcome = await deliver_one(setup.agent(), envelope(command))
    assert isinstance(outcome, Delivered), outcome
    assert (setup.out / "env").exists()


@needs_root
async def test_symlink_in_program_dir_is_allowed(setup: Setup) -> None:
    (setup.bin / "true").symlink_to("/bin/true")
    outcome = await deliver_one(setup.agent(), envelope("|/usr/local/bin/true"))
    assert isinstance(outcome, Delivered), outcome


@needs_root
@pytest.mark.parametrize("command", ["|sh -c true", "|/bin/true", "|missing", "|..", "|dump/"])
async def test_programs_outside_program_dir_are_refused(setup: Setup, command: str) -> None:
    outcome = await deliver_one(setup.agent(), envelope(command))
    assert isinstance(outcome, Bounced), outcome
    assert outcome.reply == pipe.NOT_ALLOWED
    assert str(setup.bin) not in outcome.reply.text  # no paths in reply texts
    assert not (setup.out / "env").exists()


@needs_root
async def test_non_executable_file_is_refused(setup: Setup) -> None:
    setup.script("plain", "#!/bin/sh\nexit 0\n", mode=0o644)
    outcome = await deliver_one(setup.agent(), envelope("|plain"))
    assert isinstance(outcome, Bounced)
    assert outcome.reply == pipe.NOT_ALLOWED


@needs_root
@pytest.mark.parametrize(
    "command",
    [
        "|dump; rm -rf /",
        "|dump | mail x",
        "|dump > /etc/passwd",
        "|dump < /etc/shadow",
        "|dump `id`",
        "|dump $(id)",
        "|dump $HOME",
        "|dump ${unknown}",
        "|dump && id",
        "|dump\nid",
        "|(dump)",
        "|dump 'unbalanced",
    ],
)
async def test_shell_syntax_is_refused(setup: Setup, command: str) -> None:
    for any_program in (False, True):
        outcome = await deliver_one(setup.agent(any_program=any_program), envelope(command))
        assert isinstance(outcome, Bounced), (command, outcome)
        assert outcome.reply == pipe.SHELL_SYNTAX
    assert not (setup.out / "env").exists()


@needs_root
async def test_any_program_runs_the_path_as_given(setup: Setup) -> None:
    elsewhere = setup.root / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    script = setup.script("prog", DUMP % {"out": setup.out}, where=elsewhere)
    refused = await deliver_one(setup.agent(), envelope(f"|{script}"))
    assert isinstance(refused, Bounced)
    outcome = await deliver_one(setup.agent(any_program=True), envelope(f"|{script}"))
    assert isinstance(outcome, Delivered), outcome
    assert (setup.out / "env").exists()
    relative = await deliver_one(setup.agent(any_program=True), envelope("|elsewhere/prog"))
    assert isinstance(relative, Bounced)
    assert relative.reply == pipe.NOT_FOUND


@needs_root
async def test_unsafe_program_dir_defers(setup: Setup) -> None:
    setup.bin.chmod(0o777)
    outcome = await deliver_one(setup.agent(), envelope("|dump"))
    assert isinstance(outcome, Deferred)
    assert outcome.reply == pipe.MISCONFIGURED
    assert not (setup.out / "env").exists()
    setup.bin.chmod(0o755)
    (setup.bin / "dump").chmod(0o757)
    outcome = await deliver_one(setup.agent(), envelope("|dump"))
    assert isinstance(outcome, Deferred)


@needs_root
async def test_root_is_refused(setup: Setup) -> None:
    outcome = await deliver_one(setup.agent(), envelope("|dump", user="root"))
    assert isinstance(outcome, Bounced)
    assert outcome.reply == pipe.ROOT_REFUSED
    assert (outcome.reply.code, outcome.reply.enhanced) == (550, "5.7.1")
    assert not (setup.out / "env").exists()


@needs_root
async def test_unknown_user_defers(setup: Setup) -> None:
    outcome = await deliver_one(setup.agent(), envelope("|dump", user="no-such-user-xyz"))
    assert isinstance(outcome, Deferred)
    assert outcome.reply == pipe.MISCONFIGURED


async def test_wrong_target_defers(setup: Setup) -> None:
    file_target = to_spec(File(address="a@b", path="/tmp/x", user="nobody"))
    env = Envelope(
        queue_id="Q",
        sender="",
        recipients=(
            EnvelopeRecipient(address="a@b", target=file_target),
            EnvelopeRecipient(address="c@d", target="garbage"),
        ),
        arrival_time=ARRIVAL,
    )
    outcomes = await setup.agent().deliver(env, env.recipients)
    assert [type(o) for o in outcomes] == [Deferred, Deferred]


@needs_root
async def test_unreadable_queue_file_defers(setup: Setup) -> None:
    def broken(queue_id: str) -> BinaryIO:
        raise FileNotFoundError(2, "No such file or directory")

    agent = ProgramAgent(
        broken,
        hostname="mx.example",
        program_dir=str(setup.bin),
        any_program=False,
        timeout=30,
        default_user="nobody",
    )
    outcome = await deliver_one(agent, envelope("|dump"))
    assert isinstance(outcome, Deferred)
    assert outcome.reply == pipe.LOCAL_ERROR
    assert not (setup.out / "env").exists()


@needs_root
async def test_several_recipients_in_order(setup: Setup) -> None:
    setup.script("ok", "#!/bin/sh\ncat >/dev/null\n")
    setup.script("no", "#!/bin/sh\nexit 67\n")
    rcpts = tuple(
        EnvelopeRecipient(
            address=f"r{i}@example.org",
            target=to_spec(Program(address=f"r{i}@example.org", command=cmd, user="nobody")),
        )
        for i, cmd in enumerate(["|ok", "|no", "|ok"])
    )
    env = Envelope(queue_id="Q", sender="a@b", recipients=rcpts, arrival_time=ARRIVAL)
    agent = setup.agent()
    outcomes = await agent.deliver(env, rcpts)
    assert [type(o) for o in outcomes] == [Delivered, Bounced, Delivered]
    assert [o.recipient for o in outcomes] == list(rcpts)
    assert agent.statistics() == {"delivered": 2, "deferred": 0, "bounced": 1}


# --- pure pieces ---------------------------------------------------------------------


def test_split_command() -> None:
    assert split_command("|vacation -a 'x y' bob") == ["vacation", "-a", "x y", "bob"]
    assert split_command("| exec /usr/bin/procmail -f-") == ["/usr/bin/procmail", "-f-"]
    assert split_command("|prog ${sender}") == ["prog", "${sender}"]
    for bad in ("|", "|  ", "|a;b", "|a $x", "|a ${nope}"):
        with pytest.raises(Stop):
            split_command(bad)


def test_address_parts() -> None:
    p = AddressParts.of("Bob+Ext+more@Example.ORG", "+")
    assert (p.local, p.user, p.extension, p.domain) == (
        "Bob+Ext+more",
        "Bob",
        "Ext+more",
        "example.org",
    )
    q = AddressParts.of("list-request@x", "-+")
    assert (q.user, q.extension) == ("list", "request")
    r = AddressParts.of("+lead@x", "+")
    assert (r.user, r.extension) == ("+lead", "")
    assert AddressParts.of('"a+b c"@x', "").local == "a+b c"


def test_env_value_filter() -> None:
    assert env_value("a.b-c_d+e=f:g,h/i@j%k!l") == "a.b-c_d+e=f:g,h/i@j%k!l"
    assert env_value("a b;c'd\"e$f`g\nh") == "a_b_c_d_e_f_g_h"


def test_helper_refuses_root_before_anything() -> None:
    with pytest.raises(runas.Refused) as info:
        runas.become(0, 0, ())
    assert info.value.result.status == "bounced"
    assert info.value.result.enhanced == "5.7.1"
    with pytest.raises(runas.Refused):
        runas.become(1000, 0, ())
    assert os.geteuid() == os.getuid()  # nothing changed in this process


def test_request_round_trip() -> None:
    req = runas.Request(
        mode="program",
        uid=65534,
        gid=65534,
        groups=(65534,),
        cwd="/",
        program="/x",
        argv=("/x", "a b"),
        env={"A": "1"},
    )
    assert runas.Request.from_json(req.to_json()) == req
    with pytest.raises(ValueError):
        runas.Request.from_json('{"mode": "shell"}')
    assert runas.Result.from_json("not json") is None


@needs_root
def test_works_under_uvloop(setup: Setup) -> None:
    uvloop = pytest.importorskip("uvloop")
    setup.script("slow", "#!/bin/sh\nsleep 60\n")
    done = uvloop.run(deliver_one(setup.agent(), envelope("|dump 67")))
    assert isinstance(done, Bounced), done
    assert (setup.out / "stdin").exists()
    slow = uvloop.run(deliver_one(setup.agent(timeout=0.5), envelope("|slow")))
    assert isinstance(slow, Deferred), slow
    assert slow.reply == pipe.TIME_LIMIT


def test_a_list_owners_copy_tells_the_program_the_owner() -> None:
    env = envelope("|dump", sender="")
    rcpt = dataclasses.replace(env.recipients[0], sender="owner-list@example.org")
    account = runas.Account(name="nobody", uid=65534, gid=65534, groups=(), home="/")
    got = pipe.command_environment(env, rcpt, account, "/", "+")
    assert got["SENDER"] == "owner-list@example.org"
    assert got["RPLINE"] == "Return-Path: <owner-list@example.org>\n"
    assert pipe.macro_values(env, rcpt, "+")["sender"] == "owner-list@example.org"
    assert pipe.macro_values(env, env.recipients[0], "+")["sender"] == "MAILER-DAEMON"
