"""Canonical names from list text (see the canonical-name rules in policy/model.py).

`canonical_name("Bücher.Example.")` -> "xn--bcher-kva.example". Anything that is not a usable
domain name raises `ValueError` with a short reason a person can read ("IP address",
"label longer than 63 octets", ...); list parsers turn that into a `Rejected` line.

Decisions (lenient like real resolvers, strict where a wrong entry would hurt):
- underscores and leading/trailing hyphens in labels are accepted: real lists hold
  `_dmarc`-style and `foo-.blogspot.com` names, and DNS itself allows any octet;
- `xn--` labels are taken as they are (not decoded): matching is by octets, so an odd A-label
  can only block a name nobody can register;
- Unicode names go through UTS #46 mapping and IDNA 2008 (the `idna` package), not Python's
  built-in IDNA 2003 codec, which maps `ß` to `ss` and accepts symbols IDNA 2008 forbids;
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


def canonical_name(text: str) -> str:
    """The canonical form of a domain name written in a list, or ValueError(reason)."""
    name = text.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if _FAST.fullmatch(name) is not None and len(name) <= MAX_NAME:
        return name
    return _slow(name)


def _reject_numeric(name: str) -> str:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        raise ValueError("numeric top-level label (not a name)") from None
    raise ValueError("IP address, not a name")


def _slow(name: str) -> str:
    if not name:
        raise ValueError("empty name")
    if len(name) > MAX_NAME and (name.isascii() or len(name) > 4 * MAX_NAME):
        # early, before any per-label work (UTS #46 mapping may shorten a Unicode name)
        raise ValueError(f"name longer than {MAX_NAME} characters")
    if "\ufffd" in name:
        raise ValueError("not valid UTF-8")
    if ":" in name or "%" in name:
        try:
            ipaddress.ip_address(name.strip("[]").split("%", 1)[0])
        except ValueError:
            pass
        else:
            raise ValueError("IP address, not a name")
    if not name.isascii():
        name = _to_alabels(name)
    if "*" in name:
        raise ValueError("wildcard '*' not allowed here")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise ValueError("empty label")
        if len(label) > MAX_LABEL:
            raise ValueError(f"label longer than {MAX_LABEL} octets")
        if _LABEL_OK.fullmatch(label) is None:
            bad = _BAD_CHAR.search(label)
            char = bad.group() if bad else label
            raise ValueError(f"character {char!r} not allowed in a name")
    if len(name) > MAX_NAME:
        raise ValueError(f"name longer than {MAX_NAME} characters")
    if len(labels) == 1:
        raise ValueError(f"single label {name!r}: too broad (like a whole top-level domain)")
    if labels[-1].isdigit():
        return _reject_numeric(name)
    return name


def _to_alabels(name: str) -> str:
    """Map a name holding non-ASCII labels to A-labels (UTS #46 + IDNA 2008)."""
    name = name.translate(_DOTS)
    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError) as e:
        raise ValueError(f"invalid IDN: {_short(e)}") from None
    out = []
    for label in mapped.split("."):
        if label.isascii():
            out.append(label)
            continue
        try:
            out.append(idna.alabel(label).decode("ascii"))
        except (idna.IDNAError, UnicodeError, ValueError) as e:
            raise ValueError(f"invalid IDN label {label[:30]!r}: {_short(e)}") from None
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
