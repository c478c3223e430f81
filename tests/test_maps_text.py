"""maps/text: the makemap text format, TextMap over a file, reload."""

from __future__ import annotations

import os
from pathlib import Path

from postoffice.maps.text import TextMap, parse_text_map, strip_comment

SEED_VIRTUSERTABLE = """\
someone@tonk.com  dl
dl@tonk.com error:No such user
 @tonk.com   dl@linux102.example.com    # 所有的邮件都给dl
@pp.com      dl@linux102.example.com
"""


def test_key_whitespace_value_with_spaces() -> None:
    p = parse_text_map("lee@tonk.com\terror:5.1.1:550 you are wrong\n", file="vt")
    assert p.problems == ()
    e = p.entries["lee@tonk.com"]
    assert e.value == "error:5.1.1:550 you are wrong"
    assert (e.file, e.line, e.where) == ("vt", 1, "vt:1")


def test_seed_virtusertable_examples() -> None:
    p = parse_text_map(SEED_VIRTUSERTABLE, file="vt")
    assert p.problems == ()
    assert p.entries["someone@tonk.com"].value == "dl"
    assert p.entries["dl@tonk.com"].value == "error:No such user"
    # leading blank ignored, trailing comment dropped
    assert p.entries["@tonk.com"].value == "dl@linux102.example.com"
    assert p.entries["@tonk.com"].line == 3


def test_keys_are_folded_values_are_not() -> None:
    p = parse_text_map("Info@Example.COM  Alice@Example.NET\n", file="m")
    assert list(p.entries) == ["info@example.com"]
    assert p.entries["info@example.com"].value == "Alice@Example.NET"
    kept = parse_text_map("Info@Example.COM  x\n", file="m", fold_case=False)
    assert list(kept.entries) == ["Info@Example.COM"]


def test_comments_blank_lines_and_crlf() -> None:
    text = "# a comment\n\n   \n  # indented comment\r\nkey value\r\nk2 v2 # note\n"
    p = parse_text_map(text, file="m")
    assert p.problems == ()
    assert {k: e.value for k, e in p.entries.items()} == {"key": "value", "k2": "v2"}
    assert p.entries["key"].line == 5


def test_hash_inside_quotes_or_words_is_data() -> None:
    assert strip_comment('ERROR:"550 no # here" # gone') == 'ERROR:"550 no # here" '
    assert strip_comment("a#b c#d") == "a#b c#d"
    p = parse_text_map('k ERROR:"550 #1 rule"  # why\n', file="m")
    assert p.entries["k"].value == 'ERROR:"550 #1 rule"'


def test_duplicate_key_first_wins_with_a_problem() -> None:
    p = parse_text_map("a first\nB x\nA second\n", file="/etc/mail/m")
    assert p.entries["a"].value == "first"
    assert p.problems == ("/etc/mail/m:3: a: duplicate key; the entry at line 1 is used",)
    r = parse_text_map("a first\nA second\n", file="m", replace=True)
    assert r.entries["a"].value == "second" and r.problems == ()


def test_malformed_lines_are_reported_and_the_rest_works() -> None:
    data = b"good value\nnovalue\nctl va\x01lue\nbad \xff\xfe\nlast one\n"
    p = parse_text_map(data, file="/m")
    assert set(p.entries) == {"good", "last"}
    assert p.problems == (
        "/m:2: novalue: no value (write: key, white space, value)",
        "/m:3: control character in line; line skipped",
        "/m:4: not valid UTF-8; line skipped",
    )


def test_allow_empty_reads_lists() -> None:
    p = parse_text_map("example.com\n# x\nexample.net\n", file="relay-domains", allow_empty=True)
    assert p.problems == ()
    assert {k: e.value for k, e in p.entries.items()} == {"example.com": "", "example.net": ""}


def test_delimiter_and_comment_character() -> None:
    p = parse_text_map("key one:value two\n%skip:me\n", file="m", delimiter=":", comment="%")
    assert p.problems == ()
    assert p.entries["key one"].value == "value two"


def test_utf8_keys() -> None:
    p = parse_text_map("用户@例子.中国 alice\n".encode(), file="m")
    assert p.entries["用户@例子.中国"].value == "alice"


# --- TextMap over a file ---------------------------------------------------------


def test_textmap_lookup_folds_the_key(tmp_path: Path) -> None:
    f = tmp_path / "virtusertable"
    f.write_text("Info@Example.com alice\n")
    m = TextMap("virtusertable", str(f))
    assert m.name == "virtusertable" and len(m) == 1
    e = m.lookup("INFO@example.COM")
    assert e is not None and e.value == "alice" and e.where == f"{f}:1"
    assert m.lookup("other@example.com") is None
    assert m.problems() == []
    assert [x.key for x in m.entries()] == ["info@example.com"]


def test_missing_file_is_an_empty_map_without_problems(tmp_path: Path) -> None:
    m = TextMap("access", str(tmp_path / "nope"))
    assert len(m) == 0 and m.problems() == [] and m.lookup("x") is None
    assert m.reload_if_changed() is False


def test_problems_name_file_and_line_and_the_rest_works(tmp_path: Path) -> None:
    f = tmp_path / "mailertable"
    f.write_text("example.com smtp:[mx.example.com]\nbroken\n.example.org relay:x\n")
    m = TextMap("mailertable", str(f))
    assert m.problems() == [f"{f}:2: broken: no value (write: key, white space, value)"]
    e = m.lookup(".example.org")
    assert e is not None and e.value == "relay:x"


def test_reload_when_the_file_changes(tmp_path: Path) -> None:
    f = tmp_path / "genericstable"
    f.write_text("lee@a.example dl@b.example\n")
    m = TextMap("genericstable", str(f))
    assert m.reload_if_changed() is False
    # Same size, new content, mtime forced forward: no sleeping.
    f.write_text("lee@a.example dl@c.example\n")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert m.reload_if_changed() is True
    e = m.lookup("lee@a.example")
    assert e is not None and e.value == "dl@c.example"
    assert m.reload_if_changed() is False


def test_reload_when_the_file_is_replaced_or_removed(tmp_path: Path) -> None:
    f = tmp_path / "m"
    f.write_text("a 1\n")
    m = TextMap("m", str(f))
    new = tmp_path / "m.new"
    new.write_text("b 2\n")
    os.replace(new, f)  # a new inode
    assert m.reload_if_changed() is True
    assert m.lookup("a") is None and m.lookup("b") is not None
    f.unlink()
    assert m.reload_if_changed() is True
    assert len(m) == 0 and m.problems() == []
    f.write_text("c 3\n")
    assert m.reload_if_changed() is True and m.lookup("c") is not None
