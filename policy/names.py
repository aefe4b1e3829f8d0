"""Names: the one place that parses, canonicalises and validates domain names and device
identifiers. Every entry point calls it (list parsers, the config, the store, the web forms and
JSON API, the CLI), so the same text means the same name everywhere.

`canonical_name("Bücher.Example.")` -> "xn--bcher-kva.example" (a name as lists and DNS write it);
`typed_domain("https://www.Straße.de/x")` -> "www.xn--strae-oqa.de" (a site as a person types it);
`device_identifier("AA-BB-CC-DD-EE-0F")` -> "aa:bb:cc:dd:ee:0f". Anything unusable raises
`BadName` (a ValueError) whose text is a short reason a person can read ("IP address", "label
longer than 63 octets", ...); each caller adds where it came from (a list line, a config key, a
form field, a CLI argument).

Domain decisions (lenient like real resolvers, strict where a wrong entry would hurt):
- case is folded and one trailing dot dropped: "Example.COM." is "example.com";
- underscores and leading/trailing hyphens in labels are accepted: real lists hold
  `_dmarc`-style and `foo-.blogspot.com` names, and DNS itself allows any octet;
- `xn--` labels are taken as they are (not decoded): matching is by octets, so an odd A-label
  can only block a name nobody can register;
- Unicode names go through UTS #46 mapping (non-transitional) and IDNA 2008 (the `idna`
  package), as browsers do, not Python's built-in IDNA 2003 codec, which maps `ß` to `ss`:
  `straße.de` is `xn--strae-oqa.de`, the name a browser asks for;
- a single label ("com", "localhost") is rejected: it would block a whole top-level domain;
  `is_public_suffix` extends that to registries like "com.vn" or "gob.mx" (list parsers
  reject those; canonical_name itself accepts them, so "is co.uk blocked?" still works);
- IPv4/IPv6 literals are rejected: an address is not a name (IP lists are a separate job).
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import idna

MAX_NAME = 253
MAX_LABEL = 63

# Fast path: plain lower-case ASCII, at least two labels, each 1..63 of [a-z0-9_-], and a
# top label that is not all digits (so no IPv4 literal). Length <= 253 is checked apart.
_FAST = re.compile(r"(?:[a-z0-9_-]{1,63}\.)+(?![0-9]+\Z)[a-z0-9_-]{1,63}")
fast_match = _FAST.fullmatch  # for parsers' inner loops: fast_match(s) and len(s) <= 253
_LABEL_OK = re.compile(r"[a-z0-9_-]+")
_BAD_CHAR = re.compile(r"[^a-z0-9_-]")
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})  # IDNA label separators


class BadName(ValueError):
    """Not a usable domain name or device identifier; str() is the reason, for people."""

    def __init__(self, reason: str, *, address: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.address = address  # an IP address where a name was wanted


def canonical_name(text: str, *, single_label: bool = False) -> str:
    """The canonical form of a domain name (lists, DNS, config), or BadName(reason).
    `single_label=True` accepts one label ("lan", "localhost"): for LAN suffixes and host
    names in the config, never for blocking rules."""
    if not isinstance(text, str):
        raise BadName("not text")
    name = text.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if _FAST.fullmatch(name) is not None and len(name) <= MAX_NAME:
        return name
    return _slow(name, single_label)


def _reject_numeric(name: str) -> str:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        raise BadName("numeric top-level label (not a name)") from None
    raise BadName("IP address, not a name", address=True)


def _slow(name: str, single_label: bool = False) -> str:
    if not name:
        raise BadName("empty name")
    if len(name) > MAX_NAME and (name.isascii() or len(name) > 4 * MAX_NAME):
        # early, before any per-label work (UTS #46 mapping may shorten a Unicode name)
        raise BadName(f"name longer than {MAX_NAME} characters")
    if "\ufffd" in name:
        raise BadName("not valid UTF-8")
    if ":" in name or "%" in name:
        try:
            ipaddress.ip_address(name.strip("[]").split("%", 1)[0])
        except ValueError:
            pass
        else:
            raise BadName("IP address, not a name", address=True)
    if not name.isascii():
        name = _to_alabels(name)
    if "*" in name:
        raise BadName("wildcard '*' not allowed here")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise BadName("empty label")
        if len(label) > MAX_LABEL:
            raise BadName(f"label longer than {MAX_LABEL} octets")
        if _LABEL_OK.fullmatch(label) is None:
            bad = _BAD_CHAR.search(label)
            char = bad.group() if bad else label
            raise BadName(f"character {char!r} not allowed in a name")
    if len(name) > MAX_NAME:
        raise BadName(f"name longer than {MAX_NAME} characters")
    if len(labels) == 1 and not single_label:
        raise BadName(f"single label {name!r}: too broad (like a whole top-level domain)")
    if labels[-1].isdigit():
        return _reject_numeric(name)
    return name


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def typed_domain(text: str) -> str:
    """A site as a person types it (web form, JSON API, CLI, store) -> canonical name.

    Takes a name, a URL ("https://www.Example.com/x": its host) or a wildcard ("*.example.com":
    rules cover subdomains anyway); the rest is `canonical_name`. BadName otherwise."""
    if not isinstance(text, str):
        raise BadName("not text")
    t = text.strip()
    if _CONTROL.search(t):
        raise BadName("control character in a name")
    if "://" in t:
        try:
            t = urlsplit(t).hostname or ""
        except ValueError:
            raise BadName("not a valid URL") from None
    else:
        t = t.split("/", 1)[0]
    if t.startswith("*."):
        t = t[2:]
    return canonical_name(t)


_MAC_FORMS = (
    re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}"),  # aa:bb:.. or AA-BB-..
    re.compile(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}"),  # aabb.ccdd.eeff
    re.compile(r"[0-9a-f]{12}"),  # aabbccddeeff
)


def device_identifier(text: str) -> str:
    """A device identifier as the store keeps it, from any usual spelling:
    - an IP address in canonical text (IPv6 compressed, lower-case; IPv4-mapped IPv6 as the
      IPv4 address; a zone id such as %eth0 dropped; [brackets] allowed);
    - an IPv6 /64 prefix ("2001:db8:1:2::/64"), which covers a device's privacy addresses;
    - a MAC in lower-case colon form, from aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF,
      aabb.ccdd.eeff or aabbccddeeff.
    BadName otherwise."""
    if not isinstance(text, str):
        raise BadName("not text")
    t = text.strip().strip("[]")
    if not t:
        raise BadName("empty")
    if "/" in t:
        try:
            net = ipaddress.ip_network(t, strict=False)
        except ValueError as e:
            raise BadName(_short(e)) from None
        if net.version != 6 or net.prefixlen != 64:
            raise BadName("only IPv6 /64 prefixes name a device")
        return str(net)
    try:
        addr = ipaddress.ip_address(t.split("%", 1)[0])
    except ValueError:
        pass
    else:
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(addr)
    low = t.lower()
    if any(form.fullmatch(low) for form in _MAC_FORMS):
        digits = re.sub(r"[:.-]", "", low)
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    raise BadName("not an IP or MAC address")


def is_mac(identifier: str) -> bool:
    """True if a `device_identifier` result is a MAC (aa:bb:cc:dd:ee:ff)."""
    return _MAC_FORMS[0].fullmatch(identifier) is not None and ":" in identifier


def _to_alabels(name: str) -> str:
    """Map a name holding non-ASCII labels to A-labels (UTS #46 + IDNA 2008)."""
    name = name.translate(_DOTS)
    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError) as e:
        raise BadName(f"invalid IDN: {_short(e)}") from None
    out = []
    for label in mapped.split("."):
        if label.isascii():
            out.append(label)
            continue
        try:
            out.append(idna.alabel(label).decode("ascii"))
        except (idna.IDNAError, UnicodeError, ValueError) as e:
            raise BadName(f"invalid IDN label {label[:30]!r}: {_short(e)}") from None
    return ".".join(out)


def _short(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def is_public_suffix(name: str) -> bool:
    """True if canonical `name` is an ICANN public suffix ("com.vn", "co.uk", "gob.mx"):
    an entry there would cover a whole registry. Private-section suffixes (github.io,
    duckdns.org) are not included: lists block those on purpose. Uses the Public Suffix List
    snapshot bundled with tldextract (no network)."""
    exact, wild, exceptions = public_suffix_sets()
    if name in exact:
        return True
    dot = name.find(".")
    return dot > 0 and name[dot + 1 :] in wild and name not in exceptions


def _icann_rules() -> list[str]:
    """The ICANN section of the Public Suffix List snapshot that tldextract ships.

    Read straight from the package folder: importing tldextract costs ~0.8 s (it pulls in
    requests), which every list-building worker process would pay. Falls back to its API."""
    spec = importlib.util.find_spec("tldextract")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            text = (Path(folder) / ".tld_set_snapshot").read_text(encoding="utf-8")
        except OSError:
            continue
        begin, end = "// ===BEGIN ICANN DOMAINS===", "// ===END ICANN DOMAINS==="
        if begin in text and end in text:
            section = text.split(begin, 1)[1].split(end, 1)[0]
            return [
                ln.strip() for ln in section.splitlines() if ln.strip() and not ln.startswith("//")
            ]
    import tldextract

    return list(tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None).tlds)


@functools.cache
def public_suffix_sets() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    rules = _icann_rules()
    exact: set[str] = set()
    wild: set[str] = set()
    exceptions: set[str] = set()
    for rule in rules:
        target = exact
        if rule.startswith("*."):
            rule, target = rule[2:], wild
        elif rule.startswith("!"):
            rule, target = rule[1:], exceptions
        try:
            target.add(rule if rule.isascii() else _to_alabels(rule.lower()))
        except ValueError:
            continue  # a rule our IDNA 2008 mapping refuses cannot match a canonical name
    return frozenset(exact), frozenset(wild), frozenset(exceptions)


def labels_of(name: str) -> list[str]:
    """The labels of a canonical name, leftmost first ("a.b.c" -> ["a", "b", "c"])."""
    return name.split(".") if name else []


def is_subdomain(name: str, parent: str) -> bool:
    """True if canonical `name` is `parent` or lies under it (label-wise, not by string)."""
    return name == parent or name.endswith("." + parent)


def suffixes(name: str) -> Iterator[str]:
    """The name and each parent domain, longest first: a.b.c -> a.b.c, b.c, c."""
    while True:
        yield name
        dot = name.find(".")
        if dot < 0:
            return
        name = name[dot + 1 :]


def canonical_from_wire(labels: Iterable[bytes]) -> str:
    """A canonical name from wire-format labels (resolver side): lower-case ASCII letters,
    keep [a-z0-9_-], escape every other octet as \\DDD so one label can never read as two."""
    out = []
    for label in labels:
        low = label.lower()
        if _LABEL_OK.fullmatch(low.decode("latin-1")) is not None:
            out.append(low.decode("ascii"))
        else:
            out.append("".join(chr(b) if chr(b) in _WIRE_OK else f"\\{b:03d}" for b in low))
    return ".".join(out)


_WIRE_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
