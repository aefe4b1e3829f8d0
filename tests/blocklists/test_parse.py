"""List parsers: each format as it appears in the wild; a parse never raises."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklists.parse import (
    FORMAT_NAMES,
    PARSERS,
    Entry,
    ParseResult,
    Rejected,
    detect_format,
    parse,
    parse_file,
)
from policy.names import is_public_suffix


def names(result: ParseResult) -> list[str]:
    return [e.name for e in result.entries]


def reasons(result: ParseResult) -> dict[int, str]:
    return {r.line: r.reason for r in result.rejected}


# --------------------------------------------------------------------------- hosts


def test_hosts_addresses_several_names_and_comments() -> None:
    text = (
        "# header\n"
        "127.0.0.1 localhost\n"
        "::1 localhost ip6-localhost ip6-loopback\n"
        "255.255.255.255 broadcasthost\n"
        "0.0.0.0 0.0.0.0\n"
        "\n"
        "0.0.0.0 ads.example\n"
        "127.0.0.1 a.example b.example  c.example # three on one line\n"
        ":: v6.example\n"
        "0 zero.example\n"
        "0.0.0.0\tTab.Example\n"
        "bare.example\n"
        "0.0.0.0 bad..example good.example\n"
        "ads.example other.example\n"
        "0.0.0.0 ads.example\n"
    )
    r = parse(text, "hosts")
    assert names(r) == [
        "ads.example",
        "a.example",
        "b.example",
        "c.example",
        "v6.example",
        "zero.example",
        "tab.example",
        "bare.example",  # lenient: a bare name without an address is accepted
        "good.example",
    ]
    assert [e.line for e in r.entries][:4] == [7, 8, 8, 8]
    assert reasons(r) == {
        13: "'bad..example': empty label",
        14: "expected an address first, got 'ads.example'",
    }
    assert r.duplicates == 1
    assert r.skipped_by == {"comment": 1, "localhost": 4, "blank": 1}
    assert r.skipped == 6
    assert r.lines == 15


# --------------------------------------------------------------------------- domains


def test_domains_comments_wildcards_urls_and_ips() -> None:
    text = (
        "# hash comment\n"
        "; semicolon comment\n"
        "! bang comment\n"
        "Example.COM\n"
        "*.wild.example\n"
        "site.example # inline comment\n"
        "site.example/path/page.html\n"
        "http://scheme.example/\n"
        "192.168.0.1\n"
        "com\n"
        "two fields.example\n"
        "example.com\n"
    )
    r = parse(text, "domains")
    assert names(r) == ["example.com", "wild.example", "site.example"]
    assert not any(e.subdomains_only for e in r.entries)  # *.x covers x too (hagezi wildcard)
    assert reasons(r) == {
        7: "URL, not a domain",
        8: "URL, not a domain",
        9: "IP address, not a name",
        10: "single label 'com': too broad (like a whole top-level domain)",
        11: "more than one field (hosts line? use format 'hosts')",
    }
    assert r.duplicates == 1
    assert r.skipped == 3


def test_unicode_entries_are_stored_as_a_labels() -> None:
    r = parse("bücher.example\n", "domains")
    assert names(r) == ["xn--bcher-kva.example"]


def test_bad_utf8_byte_rejects_only_its_line(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"good.example\nb\xffd.example\nalso-good.example\n")
    r = parse_file(path, "domains")
    assert names(r) == ["good.example", "also-good.example"]
    assert r.rejected == [Rejected(2, "b\ufffdd.example", "not valid UTF-8")]


def test_bom_and_crlf_are_tolerated() -> None:
    r = parse("\ufeffone.example\r\ntwo.example\r\n", "domains")
    assert names(r) == ["one.example", "two.example"]
    assert r.rejected == []


def test_long_lines_are_cut_to_200_characters_in_rejections() -> None:
    r = parse("x/" + "a" * 500 + "\n", "domains")
    assert len(r.rejected[0].text) == 200


def test_rejections_kept_are_capped_but_all_counted() -> None:
    r = parse("bad..example\n" * 50, "domains", keep_rejected=10)
    assert len(r.rejected) == 10
    assert r.rejected_count == 50


# --------------------------------------------------------------------------- adblock


def test_adblock_rules() -> None:
    text = (
        "[Adblock Plus 2.0]\n"
        "! Title: test\n"
        "||block.example^\n"
        "@@||allow.example^\n"
        "|exact.example^\n"
        "||important.example^$important\n"
        "||sub.example^$dnsrewrite=1.2.3.4\n"
        "||*.only-below.example^\n"
        "||mid*dle.example^\n"
        "example.com##.ad-banner\n"
        "##.ad\n"
        "example.com#@#.ad\n"
        "example.com#$#body { }\n"
        "||path.example/ads/*\n"
        "/banner[0-9]+/\n"
        "plain.example\n"
        "0.0.0.0 hosts-style.example\n"
        "||block.example^\n"
    )
    r = parse(text, "adblock")
    assert r.entries == [
        Entry("block.example", line=3),
        Entry("allow.example", exception=True, line=4),
        Entry("exact.example", line=5),
        Entry("important.example", line=6),
        Entry("only-below.example", subdomains_only=True, line=8),
        Entry("plain.example", line=16),
        Entry("hosts-style.example", line=17),
    ]
    assert reasons(r) == {
        7: "modifier $dnsrewrite not supported",
        9: "wildcard inside a name not supported by DNS filtering",
        15: "regex rule not supported",
    }
    # cosmetic and URL rules are valid adblock that DNS cannot use: skipped, not rejected
    assert r.skipped_by == {"header": 1, "comment": 1, "cosmetic rule": 4, "URL rule": 1}
    assert r.duplicates == 1


def test_adblock_wildcard_then_plain_rule_covers_the_name_itself() -> None:
    r = parse("||*.x.example^\n||x.example^\n", "adblock")
    assert r.entries == [Entry("x.example", line=1)]
    assert r.duplicates == 1


# --------------------------------------------------------------------------- rpz

RPZ = """\
$TTL 30
@ IN SOA localhost. root.localhost. (
        1741176124 ; serial
        86400 3600 604800 30 )
 NS localhost.
; comment

block.example CNAME .
*.block.example CNAME .
*.below.example CNAME .
nodata.example 300 IN CNAME *.
pass.example CNAME rpz-passthru.
drop.example CNAME rpz-drop.
walled.example CNAME walled-garden.isp.example.
local.example A 0.0.0.0
local.example AAAA ::
32.1.0.0.127.rpz-ip CNAME .
weird.example MX 10 mail.example.
tcp.example CNAME rpz-tcp-only.
"""


def test_rpz_actions() -> None:
    r = parse(RPZ, "rpz")
    assert r.entries == [
        Entry("block.example", line=8),
        Entry("below.example", subdomains_only=True, line=10),
        Entry("nodata.example", line=11, note="nodata"),
        Entry("pass.example", exception=True, line=12),
        Entry("drop.example", line=13, note="drop"),
        Entry("walled.example", line=14, note="local redirect to walled-garden.isp.example."),
        Entry("local.example", line=15, note="local data (A)"),
        # any local data replaces the real answer: the name is blocked (redirected)
        Entry("weird.example", line=18, note="local data (MX)"),
    ]
    assert r.duplicates == 2  # *.block.example (merged) and the AAAA of local.example
    assert reasons(r) == {
        17: "RPZ IP/NSDNAME/client triggers not supported",
        19: "rpz-tcp-only is not a filtering action",
    }


def test_rpz_origin_makes_names_relative_to_the_zone() -> None:
    text = (
        "$ORIGIN rpz.example.org.\n"
        "@ SOA ns.example.org. hostmaster.example.org. 1 2 3 4 5\n"
        "@ NS ns.example.org.\n"
        "bad.example CNAME .\n"  # relative: bad.example.rpz.example.org -> bad.example
        "abs.example.rpz.example.org. CNAME .\n"  # absolute inside the zone
        "$ORIGIN sub.example.rpz.example.org.\n"
        "www CNAME .\n"  # www.sub.example
        "*.deep CNAME .\n"
    )
    r = parse(text, "rpz")
    assert r.entries == [
        Entry("bad.example", line=4),
        Entry("abs.example", line=5),
        Entry("www.sub.example", line=7),
        Entry("deep.sub.example", subdomains_only=True, line=8),
    ]
    assert r.rejected == []


def test_rpz_wildcard_first_then_name_covers_the_name() -> None:
    r = parse("*.x.example CNAME .\nx.example CNAME .\n", "rpz")
    assert r.entries == [Entry("x.example", line=1)]


def test_rpz_unclosed_parenthesis_is_reported() -> None:
    r = parse("@ SOA a. b. ( 1 2 3\nok.example CNAME .\n", "rpz")
    assert r.rejected_count == 1
    assert "unclosed" in r.rejected[0].reason


# --------------------------------------------------------------------------- rating

CATS = ("adult", "gambling", "games", "social")


def test_rating_csv() -> None:
    text = (
        "\ufeffdomain,category,min_age,note\n"
        "casino.example,gambling,18,licensed operator\n"
        '"quoted.example","games","12",""\n'
        "game.example,Games,,\n"
        "# a comment\n"
        "odd.example,astrology,16,\n"
        "old.example,games,100,\n"
        "neg.example,games,-1,\n"
        "few.example,games\n"
        "bad..example,games,12,\n"
        'broken.example,"games,12\n'
        "casino.example,adult,18,\n"
    )
    r = parse(text, "rating", categories=CATS)
    assert r.entries == [
        Entry("casino.example", category="gambling", min_age=18, line=2),
        Entry("quoted.example", category="games", min_age=12, line=3),
        Entry("game.example", category="games", min_age=None, line=4),
        Entry("casino.example", category="adult", min_age=18, line=12),
    ]
    got = reasons(r)
    assert got[6] == "unknown category 'astrology'"
    assert got[7] == "min_age must be a whole number 0-99, got '100'"
    assert got[8] == "min_age must be a whole number 0-99, got '-1'"
    assert got[9] == "expected 4 fields, got 2"
    assert got[10] == "'bad..example': empty label"
    assert got[11].startswith("bad CSV")
    assert r.skipped_by == {"header": 1, "comment": 1}


def test_rating_without_header_rejects_every_line() -> None:
    r = parse("casino.example,gambling,18\ngame.example,games,12\n", "rating", categories=CATS)
    assert r.entries == []
    assert r.rejected[0] == Rejected(
        1,
        "casino.example,gambling,18",
        "missing header: the first line must be domain,category,min_age",
    )
    assert r.rejected_count == 2


# --------------------------------------------------------------------------- dnsmasq, unbound


def test_dnsmasq_lines() -> None:
    text = (
        "address=/a.example/0.0.0.0\n"
        "address=/b.example/#\n"
        "address=/c.example/d.example/\n"
        "local=/e.example/\n"
        "server=/f.example/\n"
        "server=/g.example/1.1.1.1\n"
        "address=/#/0.0.0.0\n"
        "no-resolv\n"
    )
    r = parse(text, "dnsmasq")
    assert names(r) == [
        "a.example",
        "b.example",
        "c.example",
        "d.example",
        "e.example",
        "f.example",
    ]
    assert reasons(r) == {
        6: "forwarding rule, not a block",
        7: "matches every domain: too broad",
        8: "not an address=/…/, local=/…/ or server=/…/ line",
    }


def test_unbound_lines() -> None:
    text = (
        "server:\n"
        'local-zone: "a.example." always_nxdomain\n'
        'local-zone: "b.example" static\n'
        'local-zone: "c.example." always_transparent\n'
        'local-zone: "d.example." transparent\n'
        'local-data: "e.example. A 0.0.0.0"\n'
    )
    r = parse(text, "unbound")
    assert r.entries == [
        Entry("a.example", line=2),
        Entry("b.example", line=3),
        Entry("c.example", exception=True, line=4),
        Entry("e.example", line=6, note="local data (A)"),
    ]
    assert reasons(r) == {5: "local-zone type transparent does not block"}


# --------------------------------------------------------------------------- totality


def test_unknown_format_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown list format 'csv'"):
        parse("", "csv")


TOKENS = [*"'\";\x00\\|^$@#!*/.:-_ \t()[]{}=,", "a" * 64, "xn--", "ü", "CNAME", "||", "0.0.0.0 "]
HOSTILE = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.text(max_size=6), st.just("example.com")),
    max_size=20,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(HOSTILE, max_size=12), st.sampled_from(FORMAT_NAMES))
def test_parse_never_raises_and_accounts_for_every_line(lines: list[str], fmt: str) -> None:
    text = "\n".join(lines)
    r = parse(text, fmt, categories=CATS)
    assert r.lines == text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    for e in r.entries:
        assert e.name == e.name.lower() and e.name.isascii() and ".." not in e.name
        assert not is_public_suffix(e.name)
        assert 1 <= e.line <= r.lines
    for rej in r.rejected:
        assert rej.reason and len(rej.text) <= 200
    assert r.rejected_count == len(r.rejected)
    # every line is accounted for: accepted (maybe as a duplicate), skipped or rejected
    outcomes = len(r.entries) + r.duplicates + r.rejected_count + r.skipped
    if fmt in ("domains", "wildcard", "rating", "unbound"):
        assert outcomes == r.lines  # one name per line: exactly one outcome each
    else:
        assert outcomes >= r.lines  # hosts/adblock/dnsmasq lines may hold several names
    assert sum(r.skipped_by.values()) == r.skipped
    assert detect_format(text) in FORMAT_NAMES


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("sample", "fmt"),
    [
        ("# c\n0.0.0.0 a.example\n0.0.0.0 b.example\n", "hosts"),
        ("127.0.0.1 localhost\n::1 localhost\n0.0.0.0 a.example\n", "hosts"),
        ("# c\na.example\nb.example\n", "domains"),
        ("*.a.example\n*.b.example\n", "wildcard"),
        ("[Adblock Plus 2.0]\n! c\n||a.example^\n||b.example^\n", "adblock"),
        ("$TTL 30\n@ SOA a. b. 1 2 3 4 5\n NS localhost.\na.example CNAME .\n", "rpz"),
        ("; c\na.example CNAME .\n*.a.example CNAME .\n", "rpz"),
        ("domain,category,min_age\na.example,games,12\n", "rating"),
        ("address=/a.example/#\nlocal=/b.example/\n", "dnsmasq"),
        ('server:\nlocal-zone: "a.example." always_nxdomain\n', "unbound"),
        ("", "domains"),
    ],
)
def test_detect_format(sample: str, fmt: str) -> None:
    assert detect_format(sample) == fmt
    assert fmt in PARSERS


# --------------------------------------------------------------------------- real extracts

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "lists"


@pytest.mark.parametrize(
    ("file", "fmt", "accepted", "rejected", "skipped", "duplicates"),
    [
        ("hagezi-bypass-rpz-head.txt", "rpz", 8, 0, 15, 7),
        ("hagezi-bypass-unbound-head.txt", "unbound", 8, 0, 12, 0),
        ("hagezi-bypass-wildcard-head.txt", "wildcard", 9, 0, 11, 0),
        ("malware-filter-phishing-rpz-head.txt", "rpz", 9, 0, 11, 0),
        ("blocklistproject-drugs-ags-head.txt", "adblock", 7, 0, 13, 0),
        ("blocklistproject-drugs-dnsmasq-head.txt", "dnsmasq", 7, 0, 13, 0),
        ("sinfonietta-pornography-quirks.txt", "hosts", 9, 2, 0, 0),
        ("sinfonietta-social-lines-3225-3230.txt", "hosts", 5, 1, 0, 0),
        ("ut1-dynamic-dns-head.txt", "domains", 10, 0, 0, 0),
        ("ut1-adult-urls-head.txt", "domains", 0, 10, 0, 0),
        ("ut1-redirector-lines-458-468.txt", "domains", 8, 3, 0, 0),
    ],
)
def test_real_extracts(
    file: str, fmt: str, accepted: int, rejected: int, skipped: int, duplicates: int
) -> None:
    r = parse_file(FIXTURES / file, fmt)
    assert (len(r.entries), r.rejected_count, r.skipped, r.duplicates) == (
        accepted,
        rejected,
        skipped,
        duplicates,
    )
    assert detect_format((FIXTURES / file).read_text(encoding="utf-8")) == fmt


def test_real_extract_reasons() -> None:
    porn = parse_file(FIXTURES / "sinfonietta-pornography-quirks.txt", "hosts")
    assert [(x.line, x.reason) for x in porn.rejected] == [
        (4, "'85.17.187.83': IP address, not a name"),
        (8, "'en': single label 'en': too broad (like a whole top-level domain)"),
    ]
    assert "xxxhindi.to" in names(porn)  # the good name on the line with 'en' is kept
    dyn = parse_file(FIXTURES / "ut1-dynamic-dns-head.txt", "domains")
    assert names(dyn)[:2] == ["afshin.ir", "giswebservice.com"]  # squid ".x" syntax
    urls = parse_file(FIXTURES / "ut1-adult-urls-head.txt", "domains")
    assert {x.reason for x in urls.rejected} == {"URL, not a domain"}
    rpz = parse_file(FIXTURES / "hagezi-bypass-rpz-head.txt", "rpz")
    assert names(rpz)[:2] == ["vpn.ac", "123proxy.app"]
    assert not any(e.subdomains_only for e in rpz.entries)


# --------------------------------------------------------------------------- corner cases


def test_hosts_skips_every_ip6_alias() -> None:
    r = parse("ff02::3 ip6-allhosts\nff02::4 ip6-whatever\n127.0.0.1 x.example\n", "hosts")
    assert names(r) == ["x.example"]
    assert r.skipped_by == {"localhost": 2}


def test_adblock_url_substring_rules_are_skipped_not_rejected() -> None:
    r = parse("-ad-banner.\n&ad_type=\n.com/ads/\nplain.example\n", "adblock")
    assert names(r) == ["plain.example"]
    assert r.rejected == []
    assert r.skipped_by == {"URL rule": 3}


def test_rpz_relative_action_names_and_empty_parentheses() -> None:
    r = parse("a.example CNAME rpz-passthru\n()\n(\n)\nb.example CNAME *\n", "rpz")
    assert r.entries == [
        Entry("a.example", exception=True, line=1),
        Entry("b.example", line=5, note="nodata"),
    ]
    assert r.rejected == []


def test_dnsmasq_leading_dot_and_wildcard() -> None:
    r = parse("address=/.a.example/#\nlocal=/*.b.example/\n", "dnsmasq")
    assert names(r) == ["a.example", "b.example"]


def test_fast_entry_factory_builds_the_same_entry() -> None:
    from blocklists.parse import _plain_entry

    e = _plain_entry("a.example", 7)
    assert e == Entry("a.example", line=7)
    assert repr(e) == repr(Entry("a.example", line=7))
    assert hash(e) == hash(Entry("a.example", line=7))


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("0.0.0.0 gob.mx\n", "hosts"),
        ("127.0.0.1 ok.example com.vn\n", "hosts"),
        ("co.uk\n", "domains"),
        ("||com.vn^\n", "adblock"),
        ("@@||gouv.fr^\n", "adblock"),
        ("co.uk CNAME .\n*.co.uk CNAME .\n", "rpz"),
        ("address=/co.uk/#\n", "dnsmasq"),
        ('local-zone: "co.uk." always_nxdomain\n', "unbound"),
        ("domain,category,min_age\nbet.br,gambling,18\n", "rating"),
    ],
)
def test_whole_registries_are_rejected_in_every_format(text: str, fmt: str) -> None:
    r = parse(text, fmt)
    assert [e.name for e in r.entries] in ([], ["ok.example"])
    assert r.rejected and all("public suffix" in x.reason for x in r.rejected)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_overlong_lines_are_rejected_unread(fmt: str) -> None:
    text = "a." * 3000 + "\nok.example\n"
    r = parse(text, fmt, categories=CATS)
    assert r.rejected[0].line == 1
    assert r.rejected[0].reason == "line longer than 4096 characters"
    assert len(r.rejected[0].text) == 200


def test_parsers_dict_maps_each_format_to_its_parse_function() -> None:
    assert set(PARSERS) == set(FORMAT_NAMES)
    assert PARSERS["hosts"]("0.0.0.0 a.example\n").entries == [Entry("a.example", line=1)]
    r = PARSERS["rating"]("domain,category,min_age\na.example,x,3\n", categories=["games"])
    assert r.rejected[0].reason == "unknown category 'x'"


def test_results_cross_process_boundaries() -> None:
    """The index is built in a worker process: results must pickle (fast-path entries too)."""
    import pickle

    r = parse("0.0.0.0 a.example\nbad..example\n", "hosts")
    back = pickle.loads(pickle.dumps(r))
    assert back == r
    assert back.entries[0] == Entry("a.example", line=1)
