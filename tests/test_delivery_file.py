"""Tests for delivery/file.py (with delivery/runas.py): /path targets appended as the target's user.

Run as root (as CI does), delivering as `nobody` into a directory under
/tmp that nobody can reach and write (pytest's tmp_path is under a 0700
directory).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from postoffice.delivery import file as file_mod
from postoffice.delivery import pipe
from postoffice.delivery.file import FileAgent
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Bounced, Deferred, Delivered, Outcome
from postoffice.routing.targets import File, Program, to_spec

BODY = b"Subject: test\r\nFrom: alice@example.org\r\n\r\nHello\r\nFrom me\r\n>From you\r\n"
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


@dataclass
class Setup:
    root: Path
    out: Path  # owned by nobody
    body: Path

    def open_body(self, queue_id: str) -> BinaryIO:
        return open(self.body, "rb")

    def agent(self, *, timeout: float = 30.0) -> FileAgent:
        return FileAgent(
            self.open_body, hostname="mx.example", timeout=timeout, default_user="nobody"
        )


@pytest.fixture
def setup() -> Iterator[Setup]:
    root = Path(tempfile.mkdtemp(prefix="postoffice-file-"))
    try:
        root.chmod(0o755)
        out = root / "out"
        out.mkdir(mode=0o755)
        if NOBODY is not None and os.geteuid() == 0:
            os.chown(out, NOBODY.pw_uid, NOBODY.pw_gid)
        body = root / "body"
        body.write_bytes(BODY)
        body.chmod(0o600)
        yield Setup(root=root, out=out, body=body)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def envelope(path: str, *, user: str = "", address: str = "bob@example.org") -> Envelope:
    target = to_spec(File(address=address, path=path, user=user))
    return Envelope(
        queue_id="01QUEUEID",
        sender="alice@example.org",
        recipients=(EnvelopeRecipient(address=address, target=target),),
        arrival_time=ARRIVAL,
    )


async def deliver_one(agent: FileAgent, env: Envelope) -> Outcome:
    (outcome,) = await agent.deliver(env, env.recipients)
    assert outcome.recipient is env.recipients[0]
    return outcome


def message(rcpt: str = "bob@example.org") -> bytes:
    return (
        b"From alice@example.org " + time.asctime(time.localtime(ARRIVAL)).encode() + b"\n"
        b"Return-Path: <alice@example.org>\n"
        b"Delivered-To: " + rcpt.encode() + b"\n"
        b"Subject: test\nFrom: alice@example.org\n\nHello\n>From me\n>>From you\n\n"
    )


@needs_root
async def test_appends_in_mbox_format_as_the_user(setup: Setup) -> None:
    path = setup.out / "archive"
    agent = setup.agent()
    first = await deliver_one(agent, envelope(str(path)))
    assert isinstance(first, Delivered), first
    assert first.reply == file_mod.DELIVERED_FILE
    assert first.relay == "local"
    st = path.stat()
    assert NOBODY is not None
    assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o600
    second = await deliver_one(agent, envelope(str(path), address="carol@example.org"))
    assert isinstance(second, Delivered), second
    assert path.read_bytes() == message() + message("carol@example.org")
    assert not (setup.out / "archive.lock").exists()
    assert agent.statistics() == {"delivered": 2, "deferred": 0, "bounced": 0}


@needs_root
async def test_existing_file_of_the_user_is_appended_to(setup: Setup) -> None:
    path = setup.out / "log"
    path.write_bytes(b"From x Thu Jan  1 00:00:00 1970\nold\n")  # no empty line at the end
    path.chmod(0o600)
    assert NOBODY is not None
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    outcome = await deliver_one(setup.agent(), envelope(str(path)))
    assert isinstance(outcome, Delivered), outcome
    assert path.read_bytes() == b"From x Thu Jan  1 00:00:00 1970\nold\n\n" + message()


@needs_root
async def test_symlink_is_refused(setup: Setup) -> None:
    victim = setup.out / "victim"
    victim.write_bytes(b"precious\n")
    link = setup.out / "link"
    link.symlink_to(victim)
    outcome = await deliver_one(setup.agent(), envelope(str(link)))
    assert isinstance(outcome, Bounced), outcome
    assert (outcome.reply.code, outcome.reply.enhanced) == (550, "5.2.0")
    assert "symbolic link" in outcome.detail
    assert str(link) not in outcome.reply.text
    assert victim.read_bytes() == b"precious\n"


@needs_root
@pytest.mark.parametrize("mode", [0o700, 0o610, 0o601, 0o4600, 0o2600])
async def test_executable_or_setid_file_is_refused(setup: Setup, mode: int) -> None:
    path = setup.out / "prog"
    path.write_bytes(b"#!/bin/sh\n")
    assert NOBODY is not None
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    path.chmod(mode)
    outcome = await deliver_one(setup.agent(), envelope(str(path)))
    assert isinstance(outcome, Bounced), outcome
    assert (outcome.reply.code, outcome.reply.enhanced) == (550, "5.7.1")
    assert path.read_bytes() == b"#!/bin/sh\n"


@needs_root
async def test_directory_is_refused(setup: Setup) -> None:
    outcome = await deliver_one(setup.agent(), envelope(str(setup.out)))
    assert isinstance(outcome, Bounced), outcome
    assert outcome.reply.enhanced == "5.2.0"


@pytest.mark.parametrize("path", ["relative/file", "/tmp/../etc/passwd", "/a/./../b", ""])
async def test_unsafe_paths_are_refused(setup: Setup, path: str) -> None:
    outcome = await deliver_one(setup.agent(), envelope(path))
    assert isinstance(outcome, Bounced), outcome
    assert (outcome.reply.code, outcome.reply.enhanced) == (550, "5.7.1")


@needs_root
async def test_missing_directory_bounces(setup: Setup) -> None:
    path = setup.out / "no" / "such" / "file"
    outcome = await deliver_one(setup.agent(), envelope(str(path)))
    assert isinstance(outcome, Bounced), outcome
    assert outcome.reply.enhanced == "5.2.0"
    assert not (setup.out / "no").exists()


@needs_root
async def test_file_the_user_cannot_write_defers(setup: Setup) -> None:
    path = setup.root / "roots"  # in a root-owned directory, owned by root
    path.write_bytes(b"")
    path.chmod(0o644)
    outcome = await deliver_one(setup.agent(), envelope(str(path)))
    assert isinstance(outcome, Deferred), outcome
    assert outcome.reply.code == 451
    assert path.read_bytes() == b""


async def test_dev_null_discards(setup: Setup) -> None:
    outcome = await deliver_one(setup.agent(), envelope("/dev/null"))
    assert isinstance(outcome, Delivered)
    assert outcome.reply == file_mod.DISCARDED


@needs_root
async def test_root_is_refused(setup: Setup) -> None:
    path = setup.out / "mbox"
    outcome = await deliver_one(setup.agent(), envelope(str(path), user="root"))
    assert isinstance(outcome, Bounced), outcome
    assert (outcome.reply.code, outcome.reply.enhanced) == (550, "5.7.1")
    assert outcome.reply.text == "file delivery as root refused"
    assert not path.exists()


@needs_root
async def test_time_limit_undoes_and_defers(setup: Setup) -> None:
    path = setup.out / "busy"
    path.write_bytes(b"")
    assert NOBODY is not None
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    path.chmod(0o600)
    (setup.out / "busy.lock").write_bytes(b"")  # a fresh dot-lock: MboxWriter retries
    started = time.monotonic()
    outcome = await deliver_one(setup.agent(timeout=0.5), envelope(str(path)))
    assert time.monotonic() - started < 20
    assert isinstance(outcome, Deferred), outcome
    assert outcome.reply == file_mod.TIME_LIMIT
    assert path.read_bytes() == b""


@needs_root
async def test_unreadable_queue_file_defers(setup: Setup) -> None:
    def broken(queue_id: str) -> BinaryIO:
        raise PermissionError(13, "Permission denied")

    agent = FileAgent(broken, hostname="mx.example", timeout=30, default_user="nobody")
    path = setup.out / "mbox"
    outcome = await deliver_one(agent, envelope(str(path)))
    assert isinstance(outcome, Deferred)
    assert outcome.reply == pipe.LOCAL_ERROR
    assert not path.exists()


async def test_wrong_target_defers(setup: Setup) -> None:
    target = to_spec(Program(address="a@b", command="|x", user="nobody"))
    env = Envelope(
        queue_id="Q",
        sender="",
        recipients=(EnvelopeRecipient(address="a@b", target=target),),
        arrival_time=ARRIVAL,
    )
    (outcome,) = await setup.agent().deliver(env, env.recipients)
    assert isinstance(outcome, Deferred)
    assert outcome.reply == pipe.MISCONFIGURED


@needs_root
async def test_clean_environment_reaches_nothing(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper gets PATH and its request only; parent variables never pass."""
    seen: list[dict[str, str]] = []
    original = asyncio.create_subprocess_exec

    async def spy(*args: Any, **kwargs: Any) -> Any:
        env = kwargs.get("env")
        assert isinstance(env, dict)
        seen.append(env)
        return await original(*args, **kwargs)

    monkeypatch.setenv("POSTOFFICE_SECRET", "must-not-leak")
    monkeypatch.setattr(asyncio, "create_subprocess_exec", spy)
    outcome = await deliver_one(setup.agent(), envelope(str(setup.out / "mbox")))
    assert isinstance(outcome, Delivered), outcome
    assert [sorted(e) for e in seen] == [["PATH", "POSTOFFICE_RUNAS"]]


@needs_root
def test_works_under_uvloop(setup: Setup) -> None:
    uvloop = pytest.importorskip("uvloop")
    path = setup.out / "mbox"
    outcome = uvloop.run(deliver_one(setup.agent(), envelope(str(path))))
    assert isinstance(outcome, Delivered), outcome
    assert path.read_bytes() == message()


@needs_root
async def test_a_list_owners_copy_has_the_owners_from_line(setup: Setup) -> None:
    import dataclasses

    path = setup.out / "archive"
    env = envelope(str(path))
    owned = dataclasses.replace(env.recipients[0], sender="owner-list@example.org")
    env = dataclasses.replace(env, recipients=(owned,))
    outcome = await deliver_one(setup.agent(), env)
    assert isinstance(outcome, Delivered), outcome
    data = path.read_bytes()
    assert data.startswith(b"From owner-list@example.org ")
    assert b"\nReturn-Path: <owner-list@example.org>\n" in data
