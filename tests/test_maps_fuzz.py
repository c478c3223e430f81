"""Fuzzing the map parsers: any input gives entries and problems, never an exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.maps import aliases as aliases_module
from postoffice.maps.aliases import parse_aliases, parse_targets, split_targets
from postoffice.maps.text import parse_text_map

# Text that looks like map files: the characters the grammars care about, often.
PIECES = [*' \t\n\r#:,"\\()<>|/@%.abcXYZ', ":include:", "\x00", "é"]
GRAMMAR = st.lists(st.sampled_from(PIECES), max_size=120).map("".join)
ANY = st.one_of(GRAMMAR, st.text(max_size=300), st.binary(max_size=300))


def _check_problems(problems: tuple[str, ...], file: str) -> None:
    for p in problems:
        assert p.startswith(f"{file}:"), p
        assert "\n" not in p


@settings(max_examples=400, deadline=None)
@given(ANY, st.booleans(), st.booleans())
def test_text_map_parser_never_raises(data: str | bytes, fold: bool, empty: bool) -> None:
    parsed = parse_text_map(data, file="m", fold_case=fold, allow_empty=empty)
    _check_problems(parsed.problems, "m")
    for key, entry in parsed.entries.items():
        assert key == entry.key and key and entry.line >= 1
        assert empty or entry.value
        assert "\n" not in key and "\n" not in entry.value
        if fold:
            assert key == key.lower()


@settings(max_examples=400, deadline=None)
@given(ANY)
def test_aliases_parser_never_raises(data: str | bytes) -> None:
    parsed = parse_aliases(data, file="a")
    _check_problems(parsed.problems, "a")
    for key, entry in parsed.entries.items():
        assert key == entry.key == key.lower() and key and "@" not in key
        targets, error = split_targets(entry.value)
        assert targets and not error


@settings(max_examples=400, deadline=None)
@given(st.one_of(GRAMMAR, st.text(max_size=200)))
def test_target_splitting_never_raises(value: str) -> None:
    targets = parse_targets(value)
    assert all(isinstance(t, str) and t for t in targets)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*" \t,abc@.é+-_\xa0"]), max_size=60).map("".join))
def test_fast_path_agrees_with_the_full_scanner(value: str) -> None:
    pieces, error = aliases_module._scan(value)
    slow = [t for piece in pieces for t in aliases_module._targets_of(piece) if t]
    assert split_targets(value) == (slow, error)
