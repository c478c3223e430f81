"""config/load — find, parse, validate and resolve postoffice.toml into a frozen Config.

Description:
    load_config(path) reads one TOML file and returns a fully resolved
    `Config` (config/schema.py): every key typed and checked, every path
    absolute, every default filled in. Nothing later needs to look at the
    file again.

    Discovery, first hit wins:
      1. the path given (`postoffice -c FILE`),
      2. `$POSTOFFICE_CONFIG` (when set and not empty),
      3. `./postoffice.toml`,
      4. `/etc/postoffice/postoffice.toml`,
      5. none: the schema defaults (Config.source is then "").
    A path named by 1 or 2 must exist; 3 and 4 are tried quietly.

    Paths. A relative path written in a file is relative to the folder of
    that file, so a configuration means the same whatever the current
    directory. The built-in default `state_dir = "./postoffice-data"` is
    the one exception: it is relative to the current directory of the
    process, so that `postoffice serve` with no file at all runs in place.
    `~` at the start of a path is the invoking user's home. state_dir may
    use no placeholder; config_dir may use `{state_dir}`; users_file and
    log.file may use `{state_dir}` and `{config_dir}`. config_dir
    defaults to the folder of the config file, or to state_dir when there
    is no file.

    `[delivery] mailbox` is `maildir:PATH` or `mbox:PATH`. `{state_dir}`
    and `{config_dir}` are expanded here; `{user}`, `{domain}` and
    `{address}` stay for delivery to fill (expand_mailbox) and the path
    must contain `{user}` or `{address}`, so that two users never share a
    mailbox by accident.

    local_domains defaults to `localhost` and the hostname; every domain
    in `config_dir/local-host-names` (sendmail's file: whitespace-separated
    domains, `#` starts a comment) is added. All are lower-cased, trailing
    dots removed, duplicates dropped, order kept.

    Every error is a ConfigError naming file, line and key. tomllib gives
    no positions for keys, so this module finds them by scanning the text
    for table headers and `key =` lines.

Security:
    Reads the config file and local-host-names with the caller's
    privileges; trusts their content only as configuration (types and
    values are checked, nothing is evaluated).

Config:
    Every key of config/schema.py.

See also:
    config/schema.py (the keys), config/docs.py (docs/config.md),
    cli/config_cmd.py (`postoffice config check|show`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from postoffice.config.schema import Config
from postoffice.errors import ConfigError

ENV_VAR = "POSTOFFICE_CONFIG"
SEARCH_PATHS = ("./postoffice.toml", "/etc/postoffice/postoffice.toml")
LOCAL_HOST_NAMES = "local-host-names"

MapCheck = Callable[[Config], list[str]]
"""A checker of one map file named by the config: returns "file:line: message" lines."""

# Keys whose numbers must be above zero, and keys with a fixed set of values.
_POSITIVE = {
    "smtp.max_connections", "smtp.command_timeout", "smtp.data_timeout", "smtp.max_errors",
    "limits.max_message_size", "limits.max_recipients", "limits.max_hops",
    "queue.min_backoff", "queue.max_backoff", "queue.run_interval", "queue.max_lifetime",
    "queue.delivery_concurrency",
}  # fmt: skip
_CHOICES: dict[str, tuple[str, ...]] = {
    "smtp.vrfy": ("cannot", "on", "off"),
    "log.level": ("debug", "info", "warning", "error"),
}
_MAILBOX_KINDS = ("maildir", "mbox")
_DELIVERY_PLACEHOLDERS = frozenset({"user", "domain", "address"})


# --- Finding keys in the text ---------------------------------------------------

_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_KEY_RE = re.compile(rf"\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
_HEADER_RE = re.compile(rf"\s*\[\[?\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*\]\]?")
_PART_RE = re.compile(_KEY_PART)


def _split_key(text: str) -> tuple[str, ...]:
    parts = []
    for m in _PART_RE.finditer(text):
        part = m.group(0)
        if part[0] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


def _locate_keys(text: str) -> dict[tuple[str, ...], int]:
    """Map every table and key path in a TOML text to the line it is defined on."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_multiline: str | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if in_multiline is not None:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER_RE.match(line)
        if header and not _KEY_RE.match(line):
            table = _split_key(header.group(1))
            lines.setdefault(table, number)
            continue
        key = _KEY_RE.match(line)
        if key:
            path = table + _split_key(key.group(1))
            for i in range(len(table) + 1, len(path) + 1):
                lines.setdefault(path[:i], number)
            rest = line[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
    return lines


class _Context:
    """Where errors point: the file name and the key → line map."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = _locate_keys(text) if text else {}

    def error(self, key: str, message: str) -> ConfigError:
        path = tuple(key.split(".")) if key else ()
        line = 0
        while path and not line:
            line = self.lines.get(path, 0)
            path = path[:-1]
        return ConfigError(message, file=self.file, line=line, key=key)


# --- Types ------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _expected(tp: Any) -> str:
    if tp is str:
        return "a string"
    if tp is bool:
        return "a boolean (true or false)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if typing.get_origin(tp) is tuple:
        return "an array of strings"
    if typing.get_origin(tp) is dict:
        return "a table of strings"
    return str(tp)


def _optional(tp: Any) -> Any:
    """`T` for a schema type `T | None` (a key that may be left out: TOML has no null)."""
    if isinstance(tp, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _convert(value: Any, tp: Any, key: str, ctx: _Context) -> Any:
    tp = _optional(tp)
    ok: bool
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif tp is str:
        ok = isinstance(value, str)
    elif typing.get_origin(tp) is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if ok:
            value = tuple(value)
    elif typing.get_origin(tp) is dict:
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
        if ok:
            value = dict(value)
    else:  # pragma: no cover - a schema type this loader does not know
        raise ctx.error(key, f"unsupported schema type {tp!r}")
    if not ok:
        raise ctx.error(key, f"expected {_expected(tp)}, got {_type_name(value)}")
    return value


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    return {
        f.name: (f, hints[f.name])
        for f in dataclasses.fields(cls)
        if not f.metadata.get("internal")
    }


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _check_value(key: str, value: Any, ctx: _Context) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if key in _POSITIVE and value <= 0:
            raise ctx.error(key, f"must be greater than zero, got {value}")
        if value < 0:
            raise ctx.error(key, f"must not be negative, got {value}")
    choices = _CHOICES.get(key)
    if choices is not None and value not in choices:
        raise ctx.error(key, f"must be one of {', '.join(choices)}; got {value!r}")


def _read_table(data: Mapping[str, Any], cls: type, prefix: str, ctx: _Context) -> dict[str, Any]:
    """Check one table against its dataclass: known keys, right types, sane values."""
    fields = _fields(cls)
    out: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in fields:
            if isinstance(value, dict):
                raise ctx.error(key, f"unknown table [{key}]")
            raise ctx.error(key, "unknown key")
        _, tp = fields[name]
        if _is_section(tp):
            if not isinstance(value, dict):
                raise ctx.error(key, f"expected a table [{key}], got {_type_name(value)}")
            table = _read_table(value, tp, f"{key}.", ctx)
            # A table inside a section ([smtp.policy]) is built here; the
            # top-level sections are resolved further by resolve_config().
            out[name] = tp(**table) if prefix else table
        else:
            out[name] = _convert(value, tp, key, ctx)
            _check_value(key, out[name], ctx)
    return out


# --- Values -----------------------------------------------------------------------

_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


def _expand(
    value: str,
    known: Mapping[str, str],
    key: str,
    ctx: _Context,
    keep: frozenset[str] = frozenset(),
) -> str:
    """Expand `{name}` placeholders; unknown names and stray braces are errors."""

    def replace(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in known:
            return known[name]
        if name in keep:
            return m.group(0)
        allowed = ", ".join("{" + n + "}" for n in sorted(set(known) | keep)) or "none"
        raise ctx.error(key, f"unknown placeholder {{{name}}} (allowed here: {allowed})")

    stray = _PLACEHOLDER_RE.sub("", value)
    if "{" in stray or "}" in stray:
        raise ctx.error(key, f"unbalanced brace in {value!r}")
    return _PLACEHOLDER_RE.sub(replace, value)


def _absolute(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def parse_listen_address(text: str) -> tuple[str, int]:
    """`host:port` or `[ipv6]:port` → (host, port); raises ValueError with a reason.

    The host is an IPv4 or bracketed IPv6 literal or a host name; the port
    is 0-65535 (0: an ephemeral port).
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError("expected [ipv6]:port")
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError("expected host:port")
        if ":" in host:
            raise ValueError("an IPv6 address needs brackets: [ipv6]:port")
        if not host or not _is_hostname(host):
            raise ValueError(f"{host!r} is not an IP address or host name")
    # Port 0 asks the kernel for an ephemeral port (tests, `serve --listen`).
    if not port_text.isascii() or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


_LABEL_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")


def _is_hostname(name: str) -> bool:
    name = name.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL_RE.match(label) for label in name.split("."))


_DOMAIN_BAD_CHARS = re.compile(r"[\s@,;:/\\\"<>()\[\]{}]")


def _normalise_domain(name: str) -> str | None:
    """A local domain lower-cased without its trailing dot, or None when it is no domain.

    Address literals such as `[192.0.2.1]` are accepted as they are.
    """
    name = name.strip().lower().removesuffix(".")
    if name.startswith("[") and name.endswith("]"):
        literal = name[1:-1].removeprefix("ipv6:")
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            return None
        return name
    if not name or _DOMAIN_BAD_CHARS.search(name) or "" in name.split("."):
        return None
    return name


def _default_hostname() -> str:
    try:
        name = socket.getfqdn()
    except OSError:
        name = ""
    if not name:
        name = socket.gethostname()
    return name.removesuffix(".") or "localhost"


def read_local_host_names(path: str) -> list[str]:
    """Domains listed in a sendmail local-host-names file ([] when it does not exist).

    Raises ConfigError naming file and line for an entry that is no domain,
    and for a file that exists but cannot be read.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {_reason(e)}", file=path) from None
    domains = []
    for number, line in enumerate(text.splitlines(), start=1):
        for word in line.split("#", 1)[0].split():
            domain = _normalise_domain(word)
            if domain is None:
                raise ConfigError(f"{word!r} is not a domain name", file=path, line=number)
            domains.append(domain)
    return domains


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


def parse_mailbox_spec(spec: str) -> tuple[str, str]:
    """`maildir:PATH` or `mbox:PATH` → (kind, path); raises ValueError otherwise."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in _MAILBOX_KINDS:
        raise ValueError("expected maildir:PATH or mbox:PATH")
    if not path:
        raise ValueError("the mailbox path is empty")
    return kind, path


def expand_mailbox(spec: str, *, user: str, domain: str) -> tuple[str, str]:
    """Fill `{user}`, `{domain}`, `{address}` of a resolved `[delivery] mailbox`.

    Returns (kind, path). Raises ValueError when user or domain could
    escape the mailbox tree (empty, `.`/`..`, a `/` or a NUL).
    """
    for what, value in (("user", user), ("domain", domain)):
        if value in ("", ".", "..") or "/" in value or "\0" in value:
            raise ValueError(f"unsafe {what} for a mailbox path: {value!r}")
    kind, path = parse_mailbox_spec(spec)
    values = {"user": user, "domain": domain, "address": f"{user}@{domain}"}
    return kind, _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), path)


# --- Loading ------------------------------------------------------------------------


def discover_config(path: str | None = None, *, env: Mapping[str, str] = os.environ) -> str | None:
    """The config file to read (see Description), or None for the embedded defaults.

    Raises ConfigError when a file named by `path` or $POSTOFFICE_CONFIG
    does not exist.
    """
    if path is None and env.get(ENV_VAR):
        path = env[ENV_VAR]
        if not os.path.exists(path):
            raise ConfigError(f"no such file (named by ${ENV_VAR})", file=path)
    if path is not None:
        if not os.path.exists(path):
            raise ConfigError("no such file", file=path)
        return os.path.abspath(path)
    for candidate in SEARCH_PATHS:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None


def load_config(path: str | None = None, *, env: Mapping[str, str] = os.environ) -> Config:
    """Find (when `path` is None), read, check and resolve the configuration."""
    file = discover_config(path, env=env)
    if file is None:
        return resolve_config({}, file="", text="")
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read: {_reason(e)}", file=file) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8", file=file, line=line) from None
    return parse_config(text, file=file)


_TOML_POSITION_RE = re.compile(r"at line (\d+), column \d+")


def parse_config(text: str, *, file: str = "") -> Config:
    """Parse and resolve the TOML `text` as if read from `file` (absolute, or "" for none)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = _TOML_POSITION_RE.search(str(e))
        line = int(m.group(1)) if m else len(text.splitlines()) or 1
        raise ConfigError(f"TOML syntax error: {e}", file=file or "<config>", line=line) from None
    return resolve_config(data, file=file, text=text)


def resolve_config(data: Mapping[str, Any], *, file: str, text: str) -> Config:
    """Check parsed TOML `data` against the schema and resolve every derived value."""
    ctx = _Context(file or "<config>", text)
    values = _read_table(data, Config, "", ctx)
    base = os.path.dirname(file) if file else os.getcwd()

    # state_dir: from the file relative to its folder; the default relative to the cwd.
    if "state_dir" in values:
        state = _expand(values["state_dir"], {}, "state_dir", ctx)
        if not state:
            raise ctx.error("state_dir", "must not be empty")
        state_dir = _absolute(state, base)
    else:
        state_dir = _absolute(_default(Config, "state_dir"), os.getcwd())

    if values.get("config_dir"):
        expanded = _expand(values["config_dir"], {"state_dir": state_dir}, "config_dir", ctx)
        config_dir = _absolute(expanded, base)
    else:
        config_dir = os.path.dirname(file) if file else state_dir
    known = {"state_dir": state_dir, "config_dir": config_dir}

    hostname = values.get("hostname") or _default_hostname()
    if values.get("hostname"):
        if not _is_hostname(hostname):
            raise ctx.error("hostname", f"{hostname!r} is not a host name")
        hostname = hostname.removesuffix(".")

    users_spec = values.get("users_file", _default(Config, "users_file"))
    users_file = _absolute(_expand(users_spec, known, "users_file", ctx), base)

    domains: list[str] = []
    for name in values.get("local_domains", ("localhost", hostname)):
        domain = _normalise_domain(name)
        if domain is None:
            raise ctx.error("local_domains", f"{name!r} is not a domain name")
        domains.append(domain)
    domains += read_local_host_names(os.path.join(config_dir, LOCAL_HOST_NAMES))

    sections = {
        name: dict(values.get(name, {}))
        for name, (_, tp) in _fields(Config).items()
        if _is_section(tp)
    }
    _resolve_sections(sections, known, base, ctx)

    top = {k: v for k, v in values.items() if k not in sections}
    top |= {
        "hostname": hostname,
        "state_dir": state_dir,
        "config_dir": config_dir,
        "users_file": users_file,
        "local_domains": tuple(dict.fromkeys(domains)),
    }
    built = {
        name: _fields(Config)[name][1](**section_values)
        for name, section_values in sections.items()
    }
    return Config(**top, **built, source=file)


def _resolve_sections(
    sections: dict[str, dict[str, Any]], known: Mapping[str, str], base: str, ctx: _Context
) -> None:
    smtp = sections.get("smtp", {})
    for key in ("listen", "qmtp_listen"):
        for address in smtp.get(key, ()):
            try:
                parse_listen_address(address)
            except ValueError as e:
                raise ctx.error(f"smtp.{key}", f"bad listen address {address!r}: {e}") from None

    relay = sections.get("relay", {})
    for network in relay.get("trusted_networks", ()):
        try:
            ipaddress.ip_network(network, strict=True)
        except ValueError as e:
            hint = ""
            try:
                hint = f"; did you mean {ipaddress.ip_network(network, strict=False)}?"
            except ValueError:
                pass
            raise ctx.error("relay.trusted_networks", f"{network!r}: {e}{hint}") from None

    delivery = sections.get("delivery")
    if delivery is not None:
        spec = delivery.get("mailbox", _section_default("delivery", "mailbox"))
        delivery["mailbox"] = _resolve_mailbox(spec, known, base, ctx)

    # Keys marked path=True in the schema: placeholders, then absolute.
    for name, (_, tp) in _fields(Config).items():
        if not _is_section(tp):
            continue
        section = sections.setdefault(name, {})
        for key, (fld, _) in _fields(tp).items():
            if not fld.metadata.get("path"):
                continue
            value = section.get(key, _default(tp, key))
            if value:
                section[key] = _absolute(_expand(value, known, f"{name}.{key}", ctx), base)

    log = sections.get("log")
    if log is not None:
        log_file = log.get("file", _section_default("log", "file"))
        if log_file:
            log["file"] = _absolute(_expand(log_file, known, "log.file", ctx), base)

    submission = sections.get("submission", {})
    for key in ("listen", "tls_listen"):
        for address in submission.get(key, ()):
            try:
                parse_listen_address(address)
            except ValueError as e:
                raise ctx.error(
                    f"submission.{key}", f"bad listen address {address!r}: {e}"
                ) from None
    for listener in ("imap", "imaps"):
        for address in sections.get(listener, {}).get("listen", ()):
            try:
                parse_listen_address(address)
            except ValueError as e:
                raise ctx.error(
                    f"{listener}.listen", f"bad listen address {address!r}: {e}"
                ) from None
    imap = sections.get("imap", {})
    if imap.get("idle_timeout", 1800.0) < 1800.0:  # RFC 9051 §5.4: at least 30 minutes
        raise ctx.error("imap.idle_timeout", "must be at least 1800 seconds (RFC 9051 §5.4)")
    for key in ("login_timeout", "max_line", "max_literal", "max_connections"):
        if key in imap and imap[key] <= 0:
            raise ctx.error(f"imap.{key}", "must be positive")
    if imap.get("max_line", 65536) < 8192:  # RFC 7162 §4
        raise ctx.error("imap.max_line", "must be at least 8192 octets (RFC 7162 §4)")
    if sections.get("tls", {}).get("min_version", "TLSv1.2") not in ("TLSv1.2", "TLSv1.3"):
        raise ctx.error("tls.min_version", "must be TLSv1.2 or TLSv1.3")
    if sections.get("policy", {}).get("dnsbl_mode", "reject") not in ("reject", "warn"):
        raise ctx.error("policy.dnsbl_mode", "must be reject or warn")

    client = sections.get("smtp_client", {})
    tls_levels = ("none", "may", "encrypt", "verify")
    if client.get("tls", "may") not in tls_levels:
        raise ctx.error("smtp_client.tls", f"must be one of {', '.join(tls_levels)}")
    for dest, level in client.get("tls_policy", {}).items():
        if level not in tls_levels:
            raise ctx.error(
                "smtp_client.tls_policy", f"{dest}: must be one of {', '.join(tls_levels)}"
            )

    queue = sections.get("queue", {})
    low = queue.get("min_backoff", _section_default("queue", "min_backoff"))
    high = queue.get("max_backoff", _section_default("queue", "max_backoff"))
    if high < low:
        raise ctx.error("queue.max_backoff", f"must not be less than min_backoff ({low})")


def _section_default(section: str, key: str) -> Any:
    return _default(_fields(Config)[section][1], key)


def _default(cls: type, key: str) -> Any:
    """The schema default of `key` in dataclass `cls` (slots hide it from the class)."""
    field, _ = _fields(cls)[key]
    if field.default is not dataclasses.MISSING:
        return field.default
    factory: Callable[[], Any] = field.default_factory  # type: ignore[assignment]
    return factory()


def _resolve_mailbox(spec: str, known: Mapping[str, str], base: str, ctx: _Context) -> str:
    key = "delivery.mailbox"
    try:
        kind, path = parse_mailbox_spec(spec)
    except ValueError as e:
        raise ctx.error(key, f"{spec!r}: {e}") from None
    path = _expand(path, known, key, ctx, keep=_DELIVERY_PLACEHOLDERS)
    if "{user}" not in path and "{address}" not in path:
        raise ctx.error(key, f"{spec!r}: the path must contain {{user}} or {{address}}")
    if path.startswith("~"):
        raise ctx.error(key, f"{spec!r}: home-relative mailbox paths are not supported")
    return f"{kind}:{os.path.normpath(os.path.join(base, path))}"


# --- Checking the maps ---------------------------------------------------------------


def check_config(cfg: Config, checkers: Mapping[str, MapCheck] | None = None) -> list[str]:
    """Problems with the map files `cfg` names, as "file:line: message" lines.

    This module checks local-host-names itself. Maps owned by higher
    layers (the users file, auth/passwd_file.check_users_file) come in
    through `checkers`, an explicit registry assembled by the caller
    (cli/config_cmd.MAP_CHECKERS), since config.load may not import them.
    An empty list means every map is fine.
    """
    problems: list[str] = []
    try:
        read_local_host_names(os.path.join(cfg.config_dir, LOCAL_HOST_NAMES))
    except ConfigError as e:
        problems.append(str(e))
    for check in (checkers or {}).values():
        problems.extend(check(cfg))
    return problems


__all__ = [
    "ENV_VAR",
    "LOCAL_HOST_NAMES",
    "SEARCH_PATHS",
    "MapCheck",
    "check_config",
    "discover_config",
    "expand_mailbox",
    "load_config",
    "parse_config",
    "parse_listen_address",
    "parse_mailbox_spec",
    "read_local_host_names",
    "resolve_config",
]
