"""Loading postoffice.toml: discovery, defaults, path resolution, and errors with file:line:key."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.config import load
from postoffice.config.load import (
    check_config,
    discover_config,
    expand_mailbox,
    load_config,
    parse_config,
    parse_listen_address,
    read_local_host_names,
)
from postoffice.config.schema import Config, DeliveryConfig, SmtpConfig
from postoffice.errors import ConfigError


@pytest.fixture(autouse=True)
def fixed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "Mail.Example.NET.")
    monkeypatch.setattr(load, "SEARCH_PATHS", ("./postoffice.toml",))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- Discovery -----------------------------------------------------------------


def test_no_file_gives_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(env={})
    assert cfg.source == ""
    assert cfg.hostname == "Mail.Example.NET"
    assert cfg.state_dir == str(tmp_path / "postoffice-data")
    assert cfg.config_dir == cfg.state_dir
    assert cfg.users_file == str(tmp_path / "postoffice-data" / "users")
    assert cfg.local_domains == ("localhost", "mail.example.net")
    assert cfg.delivery.mailbox == f"maildir:{tmp_path}/postoffice-data/mail/{{domain}}/{{user}}"
    assert cfg.log.file == str(tmp_path / "postoffice-data" / "log" / "maillog")
    assert cfg.smtp == SmtpConfig()
    assert cfg.queue.max_backoff == 4 * 3600.0


def test_hostname_falls_back_to_gethostname(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "")
    monkeypatch.setattr(socket, "gethostname", lambda: "box")
    assert load_config(env={}).hostname == "box"


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cwd_file = write(tmp_path / "postoffice.toml", 'hostname = "cwd.example"')
    env_file = write(tmp_path / "env" / "po.toml", 'hostname = "env.example"')
    arg_file = write(tmp_path / "arg" / "po.toml", 'hostname = "arg.example"')
    env = {"POSTOFFICE_CONFIG": str(env_file)}

    assert load_config(str(arg_file), env=env).hostname == "arg.example"
    assert load_config(env=env).hostname == "env.example"
    assert load_config(env={"POSTOFFICE_CONFIG": ""}).hostname == "cwd.example"
    cfg = load_config(env={})
    assert cfg.hostname == "cwd.example"
    assert cfg.source == str(cwd_file)
    assert discover_config("arg/po.toml", env=env) == str(arg_file)


def test_named_files_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^missing\.toml: no such file$"):
        load_config("missing.toml", env={})
    with pytest.raises(ConfigError, match=r"POSTOFFICE_CONFIG"):
        load_config(env={"POSTOFFICE_CONFIG": str(tmp_path / "gone.toml")})


# --- Paths -----------------------------------------------------------------------


def test_relative_paths_in_a_file_are_relative_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(
        tmp_path / "etc" / "postoffice.toml",
        'state_dir = "../var"\n'
        'users_file = "{config_dir}/secret/users"\n'
        "[delivery]\n"
        'mailbox = "mbox:spool/{address}"\n'
        "[log]\n"
        'file = "logs/mail.log"\n',
    )
    cfg = load_config(str(path), env={})
    etc = tmp_path / "etc"
    assert cfg.state_dir == str(tmp_path / "var")
    assert cfg.config_dir == str(etc)
    assert cfg.users_file == str(etc / "secret" / "users")
    assert cfg.delivery.mailbox == f"mbox:{etc}/spool/{{address}}"
    assert cfg.log.file == str(etc / "logs" / "mail.log")


def test_default_state_dir_is_relative_to_the_cwd_even_with_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "etc" / "postoffice.toml", "")
    cfg = load_config(str(path), env={})
    assert cfg.state_dir == str(tmp_path / "postoffice-data")
    assert cfg.config_dir == str(tmp_path / "etc")
    assert cfg.users_file == str(tmp_path / "etc" / "users")


def test_placeholders_and_config_dir(tmp_path: Path) -> None:
    cfg = parse_config(
        'state_dir = "/srv/po"\nconfig_dir = "{state_dir}/conf"\n'
        '[log]\nfile = ""\n[delivery]\nmailbox = "maildir:{config_dir}/../mail/{domain}/{user}"\n',
        file=str(tmp_path / "po.toml"),
    )
    assert cfg.config_dir == "/srv/po/conf"
    assert cfg.users_file == "/srv/po/conf/users"
    assert cfg.log.file == ""
    assert cfg.delivery.mailbox == "maildir:/srv/po/mail/{domain}/{user}"


def test_expand_mailbox() -> None:
    spec = "maildir:/srv/mail/{domain}/{user}"
    assert expand_mailbox(spec, user="bob", domain="x.org") == ("maildir", "/srv/mail/x.org/bob")
    assert expand_mailbox("mbox:/m/{address}", user="b", domain="x") == ("mbox", "/m/b@x")
    for user in ("..", "a/b", "", "."):
        with pytest.raises(ValueError):
            expand_mailbox(spec, user=user, domain="x.org")


# --- local_domains ----------------------------------------------------------------


def test_local_host_names_are_merged(tmp_path: Path) -> None:
    write(
        tmp_path / "local-host-names",
        "# sendmail style\nExample.ORG.\n\n  mail.example.org  # inline\nexample.org\n"
        "a.test b.test\n[192.0.2.1]\n",
    )
    cfg = parse_config("", file=str(tmp_path / "po.toml"))
    assert cfg.local_domains == (
        "localhost",
        "mail.example.net",
        "example.org",
        "mail.example.org",
        "a.test",
        "b.test",
        "[192.0.2.1]",
    )


def test_local_domains_from_the_file_replace_the_default(tmp_path: Path) -> None:
    write(tmp_path / "local-host-names", "extra.example\n")
    cfg = parse_config('local_domains = ["Example.COM.", "example.com"]', file=str(tmp_path / "p"))
    assert cfg.local_domains == ("example.com", "extra.example")


def test_bad_local_host_names_line(tmp_path: Path) -> None:
    lhn = write(tmp_path / "local-host-names", "ok.example\nnot@domain\n")
    with pytest.raises(ConfigError, match=rf"^{lhn}:2: 'not@domain' is not a domain name$"):
        parse_config("", file=str(tmp_path / "po.toml"))
    assert read_local_host_names(str(tmp_path / "none")) == []


# --- Errors name file, line and key -------------------------------------------------


def error_of(text: str, file: str = "/etc/po.toml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, file=file)
    return info.value


def test_toml_syntax_error_passes_the_position_on() -> None:
    e = error_of('hostname = "a"\nstate_dir = \n')
    assert (e.file, e.line) == ("/etc/po.toml", 2)
    assert str(e).startswith("/etc/po.toml:2: TOML syntax error: ")
    assert "line 2" in str(e)


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("hostname = 'a.example'\nhostnme = 'x'\n", 2, "hostnme", "unknown key"),
        ("[smtp]\nbanner = 'x'\n\n[smtp.tls]\ncert = 'x'\n", 4, "smtp.tls", "unknown table"),
        ("[nntp]\nlisten = []\n", 1, "nntp", "unknown table [nntp]"),
        ("[smtp]\nlisten = []\nlistne = []\n", 3, "smtp.listne", "unknown key"),
        ("hostname = 5\n", 1, "hostname", "expected a string, got an integer"),
        ("[smtp]\n# c\nexpn = 'yes'\n", 3, "smtp.expn", "expected a boolean"),
        ("[smtp]\nmax_connections = 1.5\n", 2, "smtp.max_connections", "expected an integer"),
        ("[smtp]\nmax_connections = true\n", 2, "smtp.max_connections", "expected an integer"),
        ("[smtp]\nlisten = '127.0.0.1:25'\n", 2, "smtp.listen", "expected an array of strings"),
        ("[smtp]\nlisten = [25]\n", 2, "smtp.listen", "expected an array of strings"),
        ("smtp = 3\n", 1, "smtp", "expected a table [smtp]"),
        ("[limits]\nmax_hops = 0\n", 2, "limits.max_hops", "greater than zero"),
        ("[queue]\nmin_backoff = -5\n", 2, "queue.min_backoff", "greater than zero"),
        ("[queue]\nmin_backoff = 600\nmax_backoff = 60\n", 3, "queue.max_backoff", "min_backoff"),
        ("[smtp]\nvrfy = 'yes'\n", 2, "smtp.vrfy", "one of cannot, on, off"),
        ("[log]\nlevel = 'loud'\n", 2, "log.level", "one of debug"),
        ("hostname = 'not a host'\n", 1, "hostname", "not a host name"),
        ("local_domains = ['a b']\n", 1, "local_domains", "not a domain name"),
        ("users_file = '{home}/users'\n", 1, "users_file", "unknown placeholder {home}"),
        ("users_file = '{config_dir/users'\n", 1, "users_file", "unbalanced brace"),
        ("state_dir = '{config_dir}/x'\n", 1, "state_dir", "unknown placeholder"),
        ("source = 'x'\n", 1, "source", "unknown key"),
        ("smtp.banner = 'x'\nsmtp.bannr = 'y'\n", 2, "smtp.bannr", "unknown key"),
        ("smtp = { banner = 'x', bannr = 'y' }\n", 1, "smtp.bannr", "unknown key"),
        # Listen addresses.
        ("[smtp]\nlisten = ['127.0.0.1']\n", 2, "smtp.listen", "expected host:port"),
        ("[smtp]\nlisten = ['127.0.0.1:65536']\n", 2, "smtp.listen", "0 to 65535"),
        ("[smtp]\nlisten = ['h:x25']\n", 2, "smtp.listen", "0 to 65535"),
        ("[smtp]\nlisten = ['::1:25']\n", 2, "smtp.listen", "needs brackets"),
        ("[smtp]\nlisten = ['[::g]:25']\n", 2, "smtp.listen", "not an IPv6 address"),
        ("[smtp]\nlisten = ['[::1]25']\n", 2, "smtp.listen", "[ipv6]:port"),
        ("[smtp]\nlisten = [':25']\n", 2, "smtp.listen", "not an IP address or host name"),
        # Mailbox specs.
        ("[delivery]\nmailbox = '/var/mail/{user}'\n", 2, "delivery.mailbox", "maildir:PATH"),
        ("[delivery]\nmailbox = 'mh:/m/{user}'\n", 2, "delivery.mailbox", "maildir:PATH"),
        ("[delivery]\nmailbox = 'mbox:'\n", 2, "delivery.mailbox", "empty"),
        ("[delivery]\nmailbox = 'mbox:/m/{usr}'\n", 2, "delivery.mailbox", "placeholder {usr}"),
        ("[delivery]\nmailbox = 'mbox:/var/mail/all'\n", 2, "delivery.mailbox", "{user} or"),
        ("[delivery]\nmailbox = 'maildir:~/{user}'\n", 2, "delivery.mailbox", "home-relative"),
        # Networks.
        ("[relay]\ntrusted_networks = ['10.0.0.1/8']\n", 2, "relay.trusted_networks", "10.0.0.0/8"),
        ("[relay]\ntrusted_networks = ['nope']\n", 2, "relay.trusted_networks", "'nope'"),
    ],
)
def test_errors_name_file_line_and_key(text: str, line: int, key: str, message: str) -> None:
    e = error_of(text)
    assert (e.file, e.line, e.key) == ("/etc/po.toml", line, key)
    assert str(e).startswith(f"/etc/po.toml:{line}: {key}: ")
    assert message in str(e)


def test_line_finding_ignores_multiline_strings() -> None:
    text = '[smtp]\nbanner = """\nfake = 1\n"""\nfake = 2\n'
    e = error_of(text)
    assert (e.line, e.key) == (5, "smtp.fake")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "po.toml"
    path.write_bytes(b'hostname = "a"\n# \xff\n')
    with pytest.raises(ConfigError, match=r":2: not valid UTF-8"):
        load_config(str(path), env={})


def test_valid_values_are_typed(tmp_path: Path) -> None:
    cfg = parse_config(
        "hostname = 'mx.example.org.'\n"
        "[smtp]\nlisten = ['[::1]:25', '0.0.0.0:587', 'localhost:2525']\n"
        "command_timeout = 60\nexpn = true\n"
        "[relay]\ntrusted_networks = ['10.0.0.0/8', '2001:db8::/32']\n",
        file=str(tmp_path / "po.toml"),
    )
    assert cfg.hostname == "mx.example.org"
    assert cfg.smtp.listen == ("[::1]:25", "0.0.0.0:587", "localhost:2525")
    assert cfg.smtp.command_timeout == 60.0 and isinstance(cfg.smtp.command_timeout, float)
    assert cfg.smtp.expn is True
    assert cfg.delivery == DeliveryConfig(
        mailbox=f"maildir:{cfg.state_dir}/mail/{{domain}}/{{user}}",
        program_dir=f"{cfg.config_dir}/smrsh",
    )
    assert isinstance(cfg, Config)
    with pytest.raises(AttributeError):
        cfg.hostname = "x"  # type: ignore[misc]


def test_parse_listen_address() -> None:
    assert parse_listen_address("[::]:25") == ("::", 25)
    assert parse_listen_address("0.0.0.0:465") == ("0.0.0.0", 465)
    assert parse_listen_address("mail.example.org:587") == ("mail.example.org", 587)


# --- check_config -------------------------------------------------------------------


def test_check_config_uses_the_given_checkers(tmp_path: Path) -> None:
    cfg = parse_config("", file=str(tmp_path / "po.toml"))
    assert check_config(cfg) == []
    assert check_config(cfg, {"x": lambda c: [f"{c.users_file}:3: bad"]}) == [
        f"{tmp_path}/users:3: bad"
    ]


def test_check_config_reports_unreadable_local_host_names(tmp_path: Path) -> None:
    # A directory in its place cannot be read, even by root (who ignores chmod 0).
    cfg = parse_config("", file=str(tmp_path / "po.toml"))
    lhn = tmp_path / "local-host-names"
    lhn.mkdir()
    assert check_config(cfg) == [f"{lhn}: cannot read: Is a directory"]


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=200))
def test_parse_config_only_raises_config_errors(text: str) -> None:
    try:
        parse_config(text, file="/nonexistent/po.toml")
    except ConfigError as e:
        assert str(e).startswith("/nonexistent/po.toml")
