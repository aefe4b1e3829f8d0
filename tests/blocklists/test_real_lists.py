"""Every real domain list in the shared data set parses, with pinned counts.

The counts were pinned after checking the rejects by hand: UT1 `domains` files list bare IPv4
addresses (squidGuard blocks by address; DNS cannot), UT1 `urls` files hold host/path prefixes,
three typos in other lists are single labels ("en", "snapchat-com", "appldnld"), and six
entries are whole registries (ICANN public suffixes): gob.mx in a porn/gambling hosts file
(it would block every Mexican government site), net.id and gouv.fr in allow lists, bet.br,
game.tw and x.se in UT1 lists.
Skips when the data folder is absent (env NESTGUARD_SHARED_DATA, default ../shared/data).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from blocklists.parse import ParseResult, detect_format, parse_file, read_sample
from tests.support.shared_data import DATA, DOMAIN_LIST_FORMATS

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data absent: {DATA}")

FORMATS: list[tuple[str, str]] = [
    *DOMAIN_LIST_FORMATS,
    # URL-prefix lists: parsed as domains on purpose, every line must say "URL, not a domain"
    ("ut1/blacklists/*/urls", "domains"),
]

# Files that are not domain lists, and why.
EXCLUDED: list[tuple[str, str]] = [
    ("README.md", "documentation"),
    ("*/README.md", "documentation"),
    ("*/LICENSE*", "licence text"),
    ("ut1/blacklists/*/expressions", "squidGuard regex list, not names"),
    ("ut1/blacklists/*/very_restrictive_expression", "squidGuard regex list, not names"),
    ("ut1/blacklists/*/usage", "UT1 black/white tag, not names"),
    ("ut1/blacklists/global_usage", "UT1 category descriptions"),
    ("blocklistproject/*.ip", "IP address list (DNS filtering cannot use it)"),
    ("dibdot-doh/doh-ipv4.txt", "IP address list"),
    ("dibdot-doh/doh-ipv6.txt", "IP address list"),
    ("dibdot-doh/doh-domains.json", "JSON (same names as doh-domains.txt)"),
    ("trustpositif-mirror/count-trust.txt", "statistics about the national list"),
    ("popular/cloudflare-radar/data/*/*.csv.gz", "popularity buckets (workloads), not blocklists"),
    ("popular/faf-dns-bench/data/*.csv", "popularity ranking (workloads), not a blocklist"),
]

# path, format, lines, accepted, rejected, skipped, duplicates, reject reasons
EXPECTED: list[tuple[str, str, int, int, int, int, int, dict[str, int]]] = [
    ("blocklistproject/adguard/drugs-ags.txt", "adblock", 26042, 26029, 0, 13, 0, {}),
    ("blocklistproject/adguard/scam-ags.txt", "adblock", 8540, 8527, 0, 13, 0, {}),
    ("blocklistproject/adguard/tiktok-ags.txt", "adblock", 3738, 3725, 0, 13, 0, {}),
    ("blocklistproject/alt-version/drugs-nl.txt", "domains", 26042, 26029, 0, 13, 0, {}),
    ("blocklistproject/alt-version/phishing-nl.txt", "domains", 190228, 190215, 0, 13, 0, {}),
    ("blocklistproject/dnsmasq-version/drugs-dnsmasq.txt", "dnsmasq", 26042, 26029, 0, 13, 0, {}),
    ("blocklistproject/crypto.txt", "hosts", 1278, 1274, 0, 4, 0, {}),
    ("blocklistproject/drugs.txt", "hosts", 26042, 26029, 0, 13, 0, {}),
    ("blocklistproject/facebook.txt", "hosts", 22375, 22362, 0, 13, 0, {}),
    ("blocklistproject/fortnite.txt", "hosts", 18, 5, 0, 13, 0, {}),
    ("blocklistproject/piracy.txt", "hosts", 2167, 2154, 0, 13, 0, {}),
    ("blocklistproject/ransomware.txt", "hosts", 1917, 1904, 0, 13, 0, {}),
    ("blocklistproject/scam.txt", "hosts", 8540, 8527, 0, 13, 0, {}),
    ("blocklistproject/tiktok.txt", "hosts", 3738, 3725, 0, 13, 0, {}),
    ("blocklistproject/torrent.txt", "hosts", 2633, 2620, 0, 13, 0, {}),
    ("blocklistproject/twitter.txt", "hosts", 1206, 1193, 0, 13, 0, {}),
    ("blocklistproject/vaping.txt", "hosts", 121, 108, 0, 13, 0, {}),
    ("blocklistproject/whatsapp.txt", "hosts", 239, 226, 0, 13, 0, {}),
    ("blocklistproject/youtube.txt", "hosts", 24295, 24280, 0, 15, 0, {}),
    ("dibdot-doh/doh-domains.txt", "domains", 1376, 1376, 0, 0, 0, {}),
    ("dibdot-doh/doh-domains_abandoned.txt", "domains", 537, 537, 0, 0, 0, {}),
    ("dibdot-doh/doh-domains_overall.txt", "domains", 1914, 1914, 0, 0, 0, {}),
    ("hagezi-fork-gaby/adblock/doh-vpn-proxy-bypass.txt", "adblock", 1318, 1307, 0, 11, 0, {}),
    ("hagezi-fork-gaby/adblock/doh.txt", "adblock", 288, 276, 0, 12, 0, {}),
    ("hagezi-fork-gaby/dnsmasq/doh-vpn-proxy-bypass.txt", "dnsmasq", 1318, 1307, 0, 11, 0, {}),
    ("hagezi-fork-gaby/domains/doh-vpn-proxy-bypass.txt", "domains", 1436, 1425, 0, 11, 0, {}),
    ("hagezi-fork-gaby/domains/doh.txt", "domains", 376, 364, 0, 12, 0, {}),
    ("hagezi-fork-gaby/hosts/doh-vpn-proxy-bypass.txt", "hosts", 1436, 1425, 0, 11, 0, {}),
    ("hagezi-fork-gaby/rpz/doh-vpn-proxy-bypass.txt", "rpz", 2629, 1307, 0, 15, 1307, {}),
    ("hagezi-fork-gaby/rpz/doh.txt", "rpz", 568, 276, 0, 16, 276, {}),
    ("hagezi-fork-gaby/rpz/dyndns.txt", "rpz", 1596, 791, 0, 14, 791, {}),
    ("hagezi-fork-gaby/rpz/fake.txt", "rpz", 10679, 5332, 0, 15, 5332, {}),
    ("hagezi-fork-gaby/rpz/native.tiktok.txt", "rpz", 519, 252, 0, 15, 252, {}),
    ("hagezi-fork-gaby/rpz/nosafesearch.txt", "rpz", 312, 149, 0, 14, 149, {}),
    (
        "hagezi-fork-gaby/unbound/doh-vpn-proxy-bypass.blacklist.conf",
        "unbound",
        1319,
        1307,
        0,
        12,
        0,
        {},
    ),
    ("hagezi-fork-gaby/wildcard/doh-vpn-proxy-bypass.txt", "wildcard", 1318, 1307, 0, 11, 0, {}),
    ("sinfonietta/gambling-hosts", "hosts", 2642, 2642, 0, 0, 0, {}),
    (
        "sinfonietta/pornography-hosts",
        "hosts",
        61188,
        61157,
        6,
        2,
        24,
        {
            "IP address, not a name": 5,
            "single label 'en': too broad (like a whole top-level domain)": 1,
        },
    ),
    ("sinfonietta/snuff-hosts", "hosts", 25, 23, 0, 2, 0, {}),
    (
        "sinfonietta/social-hosts",
        "hosts",
        3290,
        3244,
        1,
        45,
        0,
        {"single label 'snapchat-com': too broad (like a whole top-level domain)": 1},
    ),
    ("trustpositif-mirror/rpz/blacklist-fg.txt", "rpz", 148352, 72067, 0, 4218, 72067, {}),
    ("trustpositif-mirror/rpz/phishing-filter-rpz.conf", "rpz", 1484, 1473, 0, 11, 0, {}),
    ("trustpositif-mirror/rpz/urlhaus-filter-rpz.conf", "rpz", 3207, 3196, 0, 11, 0, {}),
    ("trustpositif-mirror/fakenews-gambling-only.txt", "hosts", 8669, 8630, 0, 39, 0, {}),
    (
        "trustpositif-mirror/gambling-porn-only.txt",
        "hosts",
        81927,
        81844,
        1,
        82,
        0,
        {"public suffix 'gob.mx': too broad (a whole registry)": 1},
    ),
    ("trustpositif-mirror/gambling-au.txt", "domains", 2433, 2428, 0, 1, 4, {}),
    (
        "trustpositif-mirror/whitelist.txt",
        "domains",
        608,
        606,
        2,
        0,
        0,
        {
            "single label 'appldnld': too broad (like a whole top-level domain)": 1,
            "public suffix 'net.id': too broad (a whole registry)": 1,
        },
    ),
    (
        "ut1/blacklists/agressif/domains",
        "domains",
        360,
        267,
        93,
        0,
        0,
        {"IP address, not a name": 93},
    ),
    ("ut1/blacklists/arjel/domains", "domains", 69, 69, 0, 0, 0, {}),
    ("ut1/blacklists/chat/domains", "domains", 268, 195, 73, 0, 0, {"IP address, not a name": 73}),
    ("ut1/blacklists/child/domains", "domains", 75, 75, 0, 0, 0, {}),
    ("ut1/blacklists/cryptojacking/domains", "domains", 11491, 11491, 0, 0, 0, {}),
    ("ut1/blacklists/dangerous_material/domains", "domains", 35, 35, 0, 0, 0, {}),
    (
        "ut1/blacklists/dating/domains",
        "domains",
        6504,
        6503,
        1,
        0,
        0,
        {"IP address, not a name": 1},
    ),
    ("ut1/blacklists/doh/domains", "domains", 3015, 2996, 19, 0, 0, {"IP address, not a name": 19}),
    (
        "ut1/blacklists/drogue/domains",
        "domains",
        603,
        436,
        167,
        0,
        0,
        {"IP address, not a name": 167},
    ),
    ("ut1/blacklists/dynamic-dns/domains", "domains", 2077, 2077, 0, 0, 0, {}),
    ("ut1/blacklists/educational_games/domains", "domains", 8, 8, 0, 0, 0, {}),
    ("ut1/blacklists/fakenews/domains", "domains", 1118, 1118, 0, 0, 0, {}),
    (
        "ut1/blacklists/filehosting/domains",
        "domains",
        941,
        940,
        1,
        0,
        0,
        {"IP address, not a name": 1},
    ),
    (
        "ut1/blacklists/gambling/domains",
        "domains",
        32247,
        32232,
        15,
        0,
        0,
        {"IP address, not a name": 14, "public suffix 'bet.br': too broad (a whole registry)": 1},
    ),
    (
        "ut1/blacklists/games/domains",
        "domains",
        33741,
        33714,
        27,
        0,
        0,
        {"IP address, not a name": 26, "public suffix 'game.tw': too broad (a whole registry)": 1},
    ),
    (
        "ut1/blacklists/hacking/domains",
        "domains",
        274,
        197,
        77,
        0,
        0,
        {"IP address, not a name": 77},
    ),
    ("ut1/blacklists/lingerie/domains", "domains", 193, 193, 0, 0, 0, {}),
    (
        "ut1/blacklists/liste_blanche/domains",
        "domains",
        268,
        267,
        1,
        0,
        0,
        {"public suffix 'gouv.fr': too broad (a whole registry)": 1},
    ),
    ("ut1/blacklists/mixed_adult/domains", "domains", 149, 149, 0, 0, 0, {}),
    (
        "ut1/blacklists/redirector/domains",
        "domains",
        132323,
        109793,
        22530,
        0,
        0,
        {"IP address, not a name": 22530},
    ),
    ("ut1/blacklists/remote-control/domains", "domains", 170, 170, 0, 0, 0, {}),
    (
        "ut1/blacklists/residential-proxies/domains",
        "domains",
        138,
        120,
        18,
        0,
        0,
        {"IP address, not a name": 18},
    ),
    ("ut1/blacklists/sect/domains", "domains", 144, 143, 1, 0, 0, {"IP address, not a name": 1}),
    ("ut1/blacklists/sexual_education/domains", "domains", 15, 15, 0, 0, 0, {}),
    (
        "ut1/blacklists/shortener/domains",
        "domains",
        4558,
        4557,
        1,
        0,
        0,
        {"public suffix 'x.se': too broad (a whole registry)": 1},
    ),
    ("ut1/blacklists/social_networks/domains", "domains", 715, 715, 0, 0, 0, {}),
    ("ut1/blacklists/special/domains", "domains", 1, 1, 0, 0, 0, {}),
    ("ut1/blacklists/stalkerware/domains", "domains", 525, 525, 0, 0, 0, {}),
    ("ut1/blacklists/vpn/domains", "domains", 6039, 6039, 0, 0, 0, {}),
    (
        "ut1/blacklists/warez/domains",
        "domains",
        1546,
        1524,
        22,
        0,
        0,
        {"IP address, not a name": 22},
    ),
    ("ut1/blacklists/adult/urls", "domains", 1090, 0, 1090, 0, 0, {"URL, not a domain": 1090}),
    ("ut1/blacklists/agressif/urls", "domains", 36, 0, 36, 0, 0, {"URL, not a domain": 36}),
    ("ut1/blacklists/chat/urls", "domains", 17, 0, 17, 0, 0, {"URL, not a domain": 17}),
    ("ut1/blacklists/child/urls", "domains", 2, 0, 2, 0, 0, {"URL, not a domain": 2}),
    (
        "ut1/blacklists/dangerous_material/urls",
        "domains",
        19,
        0,
        19,
        0,
        0,
        {"URL, not a domain": 19},
    ),
    ("ut1/blacklists/dating/urls", "domains", 15, 0, 15, 0, 0, {"URL, not a domain": 15}),
    ("ut1/blacklists/doh/urls", "domains", 1, 0, 1, 0, 0, {"URL, not a domain": 1}),
    ("ut1/blacklists/drogue/urls", "domains", 464, 0, 464, 0, 0, {"URL, not a domain": 464}),
    ("ut1/blacklists/gambling/urls", "domains", 5, 0, 5, 0, 0, {"URL, not a domain": 5}),
    ("ut1/blacklists/malware/urls", "domains", 19226, 0, 19226, 0, 0, {"URL, not a domain": 19226}),
    ("ut1/blacklists/mixed_adult/urls", "domains", 7, 0, 7, 0, 0, {"URL, not a domain": 7}),
    (
        "ut1/blacklists/phishing/urls",
        "domains",
        19460,
        0,
        19460,
        0,
        0,
        {"URL, not a domain": 19460},
    ),
    ("ut1/blacklists/redirector/urls", "domains", 293, 0, 293, 0, 0, {"URL, not a domain": 293}),
    ("ut1/blacklists/social_networks/urls", "domains", 1, 0, 1, 0, 0, {"URL, not a domain": 1}),
]


def format_of(rel: str) -> str | None:
    path = Path(rel)
    return next((fmt for glob, fmt in FORMATS if path.match(glob) and _full(glob, rel)), None)


def _full(glob: str, rel: str) -> bool:
    # Path.match matches from the right; require the whole relative path to match
    return len(Path(glob).parts) == len(Path(rel).parts)


def excluded(rel: str) -> bool:
    return any(Path(rel).match(glob) and _full(glob, rel) for glob, _ in EXCLUDED)


def reason_kinds(result: ParseResult) -> dict[str, int]:
    # hosts lines name the bad field first ("'1.2.3.4': IP address, not a name")
    return dict(
        Counter(
            r.reason.split("': ", 1)[1] if r.reason.startswith("'") else r.reason
            for r in result.rejected
        )
    )


def test_every_file_is_classified() -> None:
    """A new file in the data set must be given a format or an exclusion reason."""
    files = sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file())
    unknown = [f for f in files if format_of(f) is None and not excluded(f)]
    assert unknown == []
    listed = {e[0] for e in EXPECTED}
    parsed = {f for f in files if format_of(f) is not None and not excluded(f)}
    assert parsed == listed


@pytest.mark.parametrize(
    ("rel", "fmt", "lines", "accepted", "rejected", "skipped", "duplicates", "reasons"),
    EXPECTED,
    ids=[e[0] for e in EXPECTED],
)
def test_real_list_counts(
    rel: str,
    fmt: str,
    lines: int,
    accepted: int,
    rejected: int,
    skipped: int,
    duplicates: int,
    reasons: dict[str, int],
) -> None:
    assert format_of(rel) == fmt
    r = parse_file(DATA / rel, fmt, keep_rejected=10**9)
    assert (r.lines, len(r.entries), r.rejected_count, r.skipped, r.duplicates) == (
        lines,
        accepted,
        rejected,
        skipped,
        duplicates,
    )
    assert reason_kinds(r) == reasons
    # the admin UI's "add a feed" guesses the same format from the first 64 KiB
    assert detect_format(read_sample(DATA / rel)) == fmt
    # accounting: every name or line ends up somewhere
    assert len(r.entries) + r.rejected_count + r.skipped + r.duplicates >= lines


SAME_LIST = [
    ("rpz/doh-vpn-proxy-bypass.txt", "rpz"),
    ("adblock/doh-vpn-proxy-bypass.txt", "adblock"),
    ("domains/doh-vpn-proxy-bypass.txt", "domains"),
    ("hosts/doh-vpn-proxy-bypass.txt", "hosts"),
    ("dnsmasq/doh-vpn-proxy-bypass.txt", "dnsmasq"),
    ("unbound/doh-vpn-proxy-bypass.blacklist.conf", "unbound"),
    ("wildcard/doh-vpn-proxy-bypass.txt", "wildcard"),
]


def covering(names: set[str]) -> set[str]:
    """The names not already covered by a parent in the set (what blocks the same queries)."""
    out = set()
    for name in names:
        parts = name.split(".")
        if not any(".".join(parts[i:]) in names for i in range(1, len(parts))):
            out.add(name)
    return out


def test_the_same_list_in_seven_syntaxes_blocks_the_same_names() -> None:
    base = DATA / "hagezi-fork-gaby"
    results = {fmt: parse_file(base / rel, fmt) for rel, fmt in SAME_LIST}
    for fmt, r in results.items():
        assert r.rejected == [], fmt
        assert not any(e.exception or e.subdomains_only for e in r.entries), fmt
    sets = {fmt: {e.name for e in r.entries} for fmt, r in results.items()}
    # the compressed syntaxes list exactly the same 1307 names ...
    for fmt in ("adblock", "dnsmasq", "unbound", "wildcard"):
        assert sets[fmt] == sets["rpz"], fmt
    assert len(sets["rpz"]) == 1307
    # ... hosts and domains also spell out 118 subdomains the others cover by their parent
    assert sets["hosts"] == sets["domains"]
    assert len(sets["hosts"]) == 1425
    assert covering(sets["hosts"]) == sets["rpz"]
