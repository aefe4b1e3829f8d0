"""Canonical names from list text (policy/names.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.names import (
    canonical_from_wire,
    canonical_name,
    is_public_suffix,
    is_subdomain,
    labels_of,
    suffixes,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", "example.com"),
        ("  BlOcKeD.Example.  ", "blocked.example"),
        ("example.com.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),  # IDN as A-labels
        ("Bücher.Example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        # IDNA 2008 keeps ß (IDNA 2003 / Python's codec would map it to "ss")
        ("straße.de", "xn--strae-oqa.de"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("ａｂｃ.com", "abc.com"),  # full-width letters map (UTS #46)
        ("a。b。c", "a.b.c"),  # ideographic full stop separates labels
        ("_dmarc.example.com", "_dmarc.example.com"),  # underscores: lenient like resolvers
        ("foo-.blogspot.com", "foo-.blogspot.com"),  # trailing hyphen seen in real lists
        ("-foo.example", "-foo.example"),
        ("0x3d.lu", "0x3d.lu"),
        ("1.2.3.example", "1.2.3.example"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_canonical_name_accepts(text: str, expected: str) -> None:
    assert canonical_name(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty name"),
        ("   ", "empty name"),
        (".", "empty name"),
        ("a..b", "empty label"),
        (".example.com", "empty label"),
        ("a" * 64 + ".com", "label longer than 63 octets"),
        (".".join(["abcdefghi"] * 26), "name longer than 253 characters"),
        ("a." * 2000 + "com", "name longer than 253 characters"),  # refused before label work
        ("ü" * 2000 + ".com", "name longer than 253 characters"),
        ("com", "too broad"),
        ("localhost", "too broad"),
        ("1.2.3.4", "IP address"),
        ("::1", "IP address"),
        ("2001:db8::1", "IP address"),
        ("[::1]", "IP address"),
        ("fe80::1%eth0", "IP address"),
        ("1.2.3", "numeric top-level label"),
        ("example.com/path", "character '/'"),
        ("ex ample.com", "character ' '"),
        ("ex'ample.com", 'character "\'"'),
        ("ex;ample.com", "character ';'"),
        ("ex\x00ample.com", "character '\\x00'"),
        ("*.example.com", "wildcard"),
        ("☃.com", "invalid IDN label"),
        ("\ufffd.com", "not valid UTF-8"),
    ],
)
def test_canonical_name_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        canonical_name(text)
    assert reason in str(info.value)


def test_name_of_exactly_253_characters_is_accepted() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    assert canonical_name(name) == name
    with pytest.raises(ValueError, match="253"):
        canonical_name(name + "c")


@given(st.text(max_size=300))
def test_canonical_name_only_ever_raises_value_error(text: str) -> None:
    try:
        name = canonical_name(text)
    except ValueError as e:
        assert str(e)  # a reason a person can read
        return
    # whatever is accepted obeys the canonical-name rules
    assert name == name.lower() and name.isascii()
    assert 2 <= len(name.split(".")) and len(name) <= 253
    assert all(0 < len(label) <= 63 for label in name.split("."))
    assert canonical_name(name) == name  # idempotent


def test_helpers() -> None:
    assert labels_of("a.b.c") == ["a", "b", "c"]
    assert labels_of("") == []
    assert is_subdomain("a.b.example.com", "example.com")
    assert is_subdomain("example.com", "example.com")
    assert not is_subdomain("badexample.com", "example.com")  # labels, not strings
    assert not is_subdomain("example.com.evil", "example.com")
    assert list(suffixes("a.b.c")) == ["a.b.c", "b.c", "c"]


def test_wire_labels_escape_dots_and_odd_bytes() -> None:
    # one label holding a dot must never read as two labels
    assert canonical_from_wire([b"a.B", b"Example"]) == "a\\046b.example"
    assert canonical_from_wire([b"\xc3\xa9", b"com"]) == "\\195\\169.com"
    assert canonical_from_wire([b"WWW", b"Example", b"COM"]) == "www.example.com"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("com.vn", True),
        ("co.uk", True),
        ("gob.mx", True),
        ("com", True),
        ("x.np", True),  # PSL wildcard rule *.np
        ("city.kawasaki.jp", False),  # PSL exception !city.kawasaki.jp
        ("foo.kawasaki.jp", True),  # *.kawasaki.jp
        ("xn--55qx5d.cn", True),  # 公司.cn, as A-labels
        ("example.com.vn", False),
        ("github.io", False),  # private section: lists block such names on purpose
        ("duckdns.org", False),
    ],
)
def test_is_public_suffix(name: str, expected: bool) -> None:
    assert is_public_suffix(name) is expected
    if "." in name:
        assert canonical_name(name) == name  # still a canonical name ("is co.uk blocked?")
