"""List parsers: text in one of the formats seen in the wild -> canonical entries.

    result = parse_file(path, "hosts")
    result.entries        # Entry(name, exception, subdomains_only, category, min_age, line)
    result.rejected       # first `keep_rejected` rejections: Rejected(line, text, reason)
    result.rejected_count # all rejections (use this for error budgets)
    result.skipped        # comment / blank / header / localhost / cosmetic or URL rule lines
    result.duplicates     # names already seen earlier in the same file (first one kept)

A parse never raises on a bad line: every line is accepted, skipped or
rejected with its 1-based line number, the text cut to 200 characters and a short reason.
Only an unknown format name raises (`ValueError`): that is a programming/config error.

Every entry covers its subdomains (the index matches by suffix), except `subdomains_only`
entries (`*.x` in RPZ and `||*.x^` in adblock), which match below x but not x itself.

Formats (`FORMAT_NAMES`, also the keys of `PARSERS`: name -> parse function for that format;
`blocklists.feed.FORMATS` holds the ones a Feed may name today):
- hosts: `0.0.0.0 a.b`, `127.0.0.1 a b c`, any IPv4/IPv6 address (also `0`), inline `#`
  comments. localhost-style names (localhost, broadcasthost, local, ip6-*, 0.0.0.0) are skipped.
  A line with a bare name and no address is accepted (lenient: many "hosts" feeds mix both).
- domains: one name per line; `#`, `;`, `!` comments and inline ` #` comments; `*.x` -> x
  (hagezi "wildcard" format, which means x and everything below it), `.x` -> x (squid
  dstdomain syntax, seen in UT1 lists); URL lines (a `/` in them, like UT1 `urls` files)
  are rejected with "URL, not a domain"; bare IP addresses with "IP address, not a name".
- wildcard: the same parser as domains (hagezi "wildcard" syntax is `*.x` on each line).
- adblock: `||x^` (block), `@@||x^` (exception), `|x^` (taken as `||x^`: the index has no
  exact-only entries, so it blocks subdomains too), `||*.x^` (subdomains only), bare `x`
  lines and hosts lines; modifiers `$important`, `$all`, `$document`/`$doc` are accepted,
  others (`$dnsrewrite`, `$client`, `$denyallow`, `$badfilter`, ...) rejected with reason.
  Cosmetic rules (`##`, `#@#`, `#$#`, `#?#`, ...) and URL/path rules are valid adblock that
  means nothing to DNS: they are SKIPPED and counted (skipped_by["cosmetic rule"],
  skipped_by["URL rule"]), never rejected, so a browser list does not eat the error budget.
  An unanchored rule without `^` is a domain if it reads as one (`example.com`), else a URL
  substring rule (`-ad-banner.`), skipped. Regex rules (`/.../`) and wildcards inside a
  name (`||ad*.example^`) are rejected.
- rpz: `x CNAME .` (NXDOMAIN), `x CNAME *.` (NODATA), `rpz-drop.`, local-redirect targets and
  A/AAAA/TXT/... local data -> block; Entry.note keeps how ("nodata", "drop",
  "local redirect to t.", "local data (A)"; "" for NXDOMAIN); `CNAME rpz-passthru.`
  -> exception; `*.x` -> subdomains only (merged with `x` when both are listed); `$ORIGIN`,
  `$TTL`, SOA (multi-line in parentheses), NS skipped; `@`, relative and absolute owners
  (names under the zone apex are made relative to it). IP/NSDNAME/client triggers rejected.
- rating (national feeds, native): UTF-8 CSV, header `domain,category,min_age[,note]`
  (BOM tolerated, quoted fields, `#` comment lines). Without the header every line is
  rejected (line 1 says why). With `categories=` an unknown category is rejected by name.
  min_age is an integer 0-99, or empty for the category's default (None). A domain written
  `@@x` is an exception (an allow rule for that category), `*.x` is read as x.
- dnsmasq: `address=/x/[y/]0.0.0.0|#|::|`, `local=/x/`, `server=/x/` (no upstream = local,
  i.e. blocked); `server=/x/1.2.3.4` forwards and is rejected as "forwarding rule".
- unbound: `local-zone: "x." always_nxdomain|refuse|static|deny|always_null|...` -> block,
  `always_transparent` -> exception, `local-data: "x A 0.0.0.0"` -> block; `server:` skipped.

parse_file streams the file (UTF-8; a bad byte becomes U+FFFD and rejects only its line with
"not valid UTF-8"). The cyclic GC is paused while a parse runs (entries make no cycles).

Every format rejects an entry that is a whole registry, an ICANN public suffix ("com.vn",
"gob.mx": `names.is_public_suffix`), like it rejects single labels: one such line in a real
porn/gambling hosts file would block every Mexican government site.

Duplicate names (same name, exception flag and category) keep the first line and are counted
in `duplicates`, not in `skipped`. Counts: entries/duplicates count names, skipped counts
lines; a hosts line `0.0.0.0 a b bad..name` gives two entries and one rejection.
"""

from __future__ import annotations

import csv
import gc
import io
import ipaddress
import itertools
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Protocol

from policy.names import (
    MAX_NAME,
    canonical_name,
    fast_match,
    is_public_suffix,
    public_suffix_sets,
)


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # canonical name (see policy/model.py)
    exception: bool = False  # allow rule: @@||x^, rpz-passthru., whitelist
    subdomains_only: bool = False  # RPZ "*.x" without "x": x itself not matched
    category: str | None = None  # per-entry category (rating format)
    min_age: int | None = None  # per-entry minimum age (rating format)
    line: int = 0  # 1-based line number in the source text
    note: str = ""  # how the rule was read when it is not a plain block ("local data (A)")


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    text: str  # the line, cut to 200 characters
    reason: str  # "invalid name: label longer than 63 octets", "IP address", ...


@dataclass(slots=True)
class ParseResult:
    entries: list[Entry] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    skipped: int = 0  # comments, blank lines, localhost lines, cosmetic/URL rules, headers
    duplicates: int = 0  # names seen before in the same file (the first is kept)
    rejected_count: int = 0  # every rejection, also those beyond `keep_rejected`
    lines: int = 0  # lines read
    skipped_by: dict[str, int] = field(default_factory=dict)  # why lines were skipped
    format: str = ""


def _plain_entry_factory() -> Callable[[str, int], Entry]:
    """A faster `Entry(name, line=no)` for the parsers' hot loops.

    The frozen dataclass __init__ calls object.__setattr__ once per field by name; setting the
    slots through their descriptors is about twice as fast, and entry creation is the largest
    cost of a parse. Same object, same fields (tests compare it with Entry(name, line=no))."""
    setters = {f.name: Entry.__dict__[f.name].__set__ for f in fields(Entry)}
    set_name, set_line = setters.pop("name"), setters.pop("line")
    defaults = [(setters[f.name], f.default) for f in fields(Entry) if f.name in setters]
    (s1, v1), (s2, v2), (s3, v3), (s4, v4), (s5, v5) = defaults  # 5 fields with defaults
    new = object.__new__

    def plain_entry(name: str, line: int) -> Entry:
        e = new(Entry)
        set_name(e, name)
        s1(e, v1)
        s2(e, v2)
        s3(e, v3)
        s4(e, v4)
        s5(e, v5)
        set_line(e, line)
        return e

    return plain_entry


_plain_entry = _plain_entry_factory()

MAX_TEXT = 200
MAX_LINE = 4096  # longer lines are rejected unread (a name is at most 253 characters)
KEEP_REJECTED = 10_000

LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)


def _is_local(name: str) -> bool:
    """localhost-style hosts-file names (never list entries): localhost, ip6-*, ..."""
    return name in LOCAL_NAMES or name.startswith("ip6-")


class _Builder:
    """Collects entries (with de-duplication) and rejections for one parse."""

    __slots__ = ("result", "seen", "keep")

    def __init__(self, fmt: str, keep_rejected: int) -> None:
        self.result = ParseResult(format=fmt)
        # key -> index in entries; key is the name for plain blocks (the common case)
        self.seen: dict[object, int] = {}
        self.keep = keep_rejected

    def add(self, entry: Entry) -> None:
        if entry.exception or entry.category is not None:
            key: object = (entry.name, entry.exception, entry.category)
        else:
            key = entry.name
        seen = self.seen
        idx = seen.get(key)
        entries = self.result.entries
        if idx is None:
            seen[key] = len(entries)
            entries.append(entry)
            return
        old = entries[idx]
        if old.subdomains_only and not entry.subdomains_only:
            # `*.x` first, then `x`: x now covers itself and everything below
            entries[idx] = Entry(
                old.name,
                old.exception,
                False,
                old.category,
                old.min_age,
                old.line,
                old.note,
            )
        self.result.duplicates += 1

    def name(self, no: int, line: str, text: str, **kw: object) -> bool:
        """Canonicalise `text` and add it (or reject the line). True if accepted."""
        try:
            name = canonical_name(text)
        except ValueError as e:
            self.reject(no, line, f"{e}" if text == line.strip() else f"{text[:60]!r}: {e}")
            return False
        return self.accept(no, line, name, **kw)

    def accept(self, no: int, line: str, name: str, **kw: object) -> bool:
        """Add a canonical name unless it is a whole registry (public suffix)."""
        if is_public_suffix(name):
            self.reject(no, line, f"public suffix {name!r}: too broad (a whole registry)")
            return False
        self.add(Entry(name, line=no, **kw))  # type: ignore[arg-type]
        return True

    def reject(self, no: int, line: str, reason: str) -> None:
        r = self.result
        r.rejected_count += 1
        if len(r.rejected) < self.keep:
            r.rejected.append(Rejected(no, line.strip()[:MAX_TEXT], reason))

    def skip(self, why: str) -> None:
        r = self.result
        r.skipped += 1
        r.skipped_by[why] = r.skipped_by.get(why, 0) + 1

    def trivial(self, no: int, line: str, comments: str = "#") -> bool:
        """Reject a too-long line, skip a blank one or one starting with a `comments` character.

        `line` is stripped. True if the line was handled so (the caller goes on to the next)."""
        if len(line) > MAX_LINE:
            self.reject(no, line, f"line longer than {MAX_LINE} characters")
            return True
        if not line:
            self.skip("blank")
            return True
        if line[0] in comments:
            self.skip("comment")
            return True
        return False

    def plain_adder(self) -> Callable[[str, int], bool]:
        """The parsers' hot path for this parse: `add_plain(name, no)`.

        If `name` is a plain lower-case name (`fast_match`, at most MAX_NAME characters) and no
        public suffix, it is added as `Entry(name, line=no)` (a name seen before counts as a
        duplicate, as `add` would count it) and True is returned; else False, and the caller
        reads the line the slow way. A closure over this parse's state: a call costs less
        than a method reading its attributes, and it runs once per line."""
        seen = self.seen
        entries = self.result.entries
        add = self.add
        psl, psl_wild, _ = public_suffix_sets()

        def add_plain(n: str, no: int) -> bool:
            if (
                len(n) <= MAX_NAME
                and fast_match(n) is not None
                and n not in psl
                and n[n.find(".") + 1 :] not in psl_wild
            ):
                if n in seen:
                    add(Entry(n, line=no))
                else:
                    seen[n] = len(entries)
                    entries.append(_plain_entry(n, no))
                return True
            return False

        return add_plain


Lines = Iterable[tuple[int, str]]  # (1-based line number, line text, maybe with its line end)
LineParser = Callable[[Lines, _Builder], None]


# --------------------------------------------------------------------------- domains


def _parse_domains(lines: Lines, b: _Builder) -> None:
    add_plain = b.plain_adder()
    trivial = b.trivial
    for no, raw in lines:
        line = raw.strip()
        # hot path: a plain lower-case name
        if add_plain(line, no) or trivial(no, line, "#;!"):
            continue
        _domain_slow(no, line, b)


def _domain_slow(no: int, line: str, b: _Builder) -> None:
    text = line
    if "#" in text:
        text = text.split("#", 1)[0].strip()
        if not text:
            b.skip("comment")
            return
    if "://" in text or "/" in text:
        b.reject(no, line, "URL, not a domain")
        return
    if len(text.split()) > 1:
        b.reject(no, line, "more than one field (hosts line? use format 'hosts')")
        return
    if text.startswith("*."):
        text = text[2:]
    elif text.startswith(".") and len(text) > 1 and text[1] != ".":
        text = text[1:]  # squid/UT1 ".example.com": the domain and everything below it
    b.name(no, line, text)


# --------------------------------------------------------------------------- hosts

_ADDR_FAST = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1", "0", "::0", "0:0:0:0:0:0:0:0"})


def _is_address(token: str) -> bool:
    if token in _ADDR_FAST:
        return True
    if not token or not (token[0].isdigit() or token[0] == ":" or ":" in token):
        return False
    try:
        ipaddress.ip_address(token.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _parse_hosts(lines: Lines, b: _Builder) -> None:
    seen = b.seen
    add_plain = b.plain_adder()
    trivial = b.trivial
    for no, raw in lines:
        line = raw.strip()
        # hot path: "0.0.0.0 name" / "127.0.0.1 name", a plain name seen for the first time
        # (a name seen before takes the slow path, which skips an ip6-* name as localhost)
        if line.startswith("0.0.0.0 ") or line.startswith("127.0.0.1 "):
            n = line[line.index(" ") + 1 :]
            if (
                n not in seen
                and n != "localhost.localdomain"  # the one local name with a dot
                and add_plain(n, no)
            ):
                continue
        if trivial(no, line):
            continue
        text = line.split("#", 1)[0] if "#" in line else line
        fields = text.split()
        if not fields:
            b.skip("comment")
            continue
        if _is_address(fields[0]):
            names = fields[1:]
            if not names:
                b.reject(no, line, "address without a name")
                continue
        elif len(fields) == 1:
            names = fields  # lenient: a bare name in a hosts file
            if "/" in fields[0]:
                b.reject(no, line, "URL, not a domain")
                continue
        else:
            b.reject(no, line, f"expected an address first, got {fields[0][:40]!r}")
            continue
        if len(names) == 1:
            n = names[0]
            if _is_local(n):
                b.skip("localhost")
                continue
            try:
                name = canonical_name(n)
            except ValueError as e:
                b.reject(no, line, str(e) if len(fields) == 1 else f"{n[:60]!r}: {e}")
            else:
                b.accept(no, line, name)
            continue
        real = [n for n in names if not _is_local(n)]
        if not real:
            b.skip("localhost")
            continue
        for n in real:
            if n in seen:  # a plain name already taken: a duplicate, nothing else to check
                b.result.duplicates += 1
            else:
                b.name(no, line, n)


# --------------------------------------------------------------------------- adblock

_COSMETIC = re.compile(r"#[@$?%]*#|#@?[$?]#|\$\$|#%#")
_ADB_OK_MODIFIERS = frozenset({"important", "all", "document", "doc"})


def _parse_adblock(lines: Lines, b: _Builder) -> None:
    add_plain = b.plain_adder()
    trivial = b.trivial
    for no, raw in lines:
        line = raw.strip()
        # hot path: "||name^" with a plain lower-case name
        if line.startswith("||") and line.endswith("^") and add_plain(line[2:-1], no):
            continue
        if trivial(no, line, "!"):
            continue
        c = line[0]
        if c == "#" and not line.startswith("##") and not line.startswith("#@#"):
            b.skip("comment")
            continue
        if c == "[":
            b.skip("header")
            continue
        # the common case: ||name^
        if c == "|" and line.endswith("^") and line.startswith("||"):
            body = line[2:-1]
            try:
                name = canonical_name(body)
            except ValueError:
                pass
            else:
                b.accept(no, line, name)
                continue
        _adblock_rule(no, line, b)


def _adblock_rule(no: int, line: str, b: _Builder) -> None:
    if _COSMETIC.search(line):
        b.skip("cosmetic rule")
        return
    rule = line
    exception = False
    if rule.startswith("@@"):
        exception = True
        rule = rule[2:]
    if len(rule) > 1 and rule.startswith("/") and rule.endswith("/"):
        b.reject(no, line, "regex rule not supported")
        return
    modifiers = ""
    if "$" in rule:
        rule, modifiers = rule.split("$", 1)
    if modifiers:
        for mod in modifiers.split(","):
            m = mod.strip().lower()
            if m.lstrip("~") not in _ADB_OK_MODIFIERS:
                b.reject(no, line, f"modifier ${m.split('=', 1)[0][:30]} not supported")
                return
    anchored = False
    if rule.startswith("||"):
        anchored = True
        rule = rule[2:]
    elif rule.startswith("|"):
        anchored = True
        rule = rule[1:]
    if rule.endswith("|"):
        rule = rule[:-1]
    caret = rule.endswith("^")
    if caret:
        rule = rule[:-1]
    elif not anchored:
        # hosts syntax or a bare domain (AdGuard DNS accepts both)
        fields = rule.split()
        if len(fields) >= 2 and _is_address(fields[0]):
            real = [n for n in fields[1:] if not _is_local(n)]
            if not real:
                b.skip("localhost")
            for n in real:
                if not exception and n in b.seen:  # already taken: a duplicate
                    b.result.duplicates += 1
                else:
                    b.name(no, line, n, exception=exception)
            return
    if "/" in rule or "?" in rule or "=" in rule or ":" in rule and not _is_address(rule):
        b.skip("URL rule")
        return
    if "^" in rule:
        b.skip("URL rule")
        return
    subdomains_only = False
    if rule.startswith("*."):
        subdomains_only = True
        rule = rule[2:]
    if "*" in rule:
        b.reject(no, line, "wildcard inside a name not supported by DNS filtering")
        return
    if not rule:
        b.reject(no, line, "empty rule")
        return
    if not anchored and not caret:
        # a bare "example.com" line is a domain (AdGuard DNS reads it so); anything else
        # unanchored without ^ ("-ad-banner.", "&ad_type=") matches inside URLs only
        try:
            name = canonical_name(rule)
        except ValueError:
            b.skip("URL rule")
            return
        b.accept(no, line, name, exception=exception, subdomains_only=subdomains_only)
        return
    b.name(no, line, rule, exception=exception, subdomains_only=subdomains_only)


# --------------------------------------------------------------------------- rpz

_CLASSES = frozenset({"in", "ch", "hs", "cs"})
_RPZ_TRIGGERS = ("rpz-ip", "rpz-nsdname", "rpz-nsip", "rpz-client-ip")
_BLOCK_TARGETS = {"": "", "*": "nodata", "rpz-drop": "drop"}  # targets without the final dot


def _parse_rpz(lines: Lines, b: _Builder) -> None:
    origin = ""  # current $ORIGIN without the trailing dot, "" when none
    apex: str | None = None  # the zone apex (SOA owner), without the trailing dot
    last_owner = ""
    pending: list[str] = []  # a record spread over lines in parentheses
    pending_no = 0
    seen = b.seen
    entries = b.result.entries
    add_plain = b.plain_adder()
    for no, raw in lines:
        raw = raw.rstrip()  # trailing blanks and the line end mean nothing here
        # hot path: "name CNAME ." in a zone without $ORIGIN (hagezi, malware-filter, ...)
        if not origin and not apex and not pending and raw.endswith(" CNAME ."):
            n = raw[:-8]
            if n.startswith("*."):
                # "*.x CNAME ." right after "x CNAME .": already covered by x
                idx = seen.get(n[2:])
                if idx is not None and not entries[idx].subdomains_only:
                    b.result.duplicates += 1
                    continue
            if "rpz-" not in n and add_plain(n, no):
                continue
        line = raw
        if len(line) > MAX_LINE:
            b.reject(no, line, f"line longer than {MAX_LINE} characters")
            continue
        if ";" in line:
            line = line.split(";", 1)[0]
        if pending:
            pending.append(line)
            if ")" in line:
                joined = " ".join(pending).replace("(", " ").replace(")", " ")
                pending = []
                last_owner, origin, apex = _rpz_record(
                    pending_no, joined, raw, b, last_owner, origin, apex
                )
            else:
                b.skip("record continued")
            continue
        if not line.strip():
            b.skip("comment" if raw.strip() else "blank")
            continue
        if "(" in line and ")" not in line:
            pending = [line]
            pending_no = no
            b.skip("record continued")
            continue
        if "(" in line:
            line = line.replace("(", " ").replace(")", " ")
        last_owner, origin, apex = _rpz_record(no, line, raw, b, last_owner, origin, apex)
    if pending:
        b.reject(pending_no, pending[0], "unclosed '(' at end of file")


def _rpz_record(
    no: int, line: str, raw: str, b: _Builder, last_owner: str, origin: str, apex: str | None
) -> tuple[str, str, str | None]:
    fields = line.split()
    if not fields:
        b.skip("blank")
        return last_owner, origin, apex
    head = fields[0]
    if head[0] == "$":
        d = head.upper()
        if d == "$ORIGIN" and len(fields) >= 2:
            o = fields[1].lower()
            origin = "" if o == "." else _absolute(o, origin)
            if apex is None and origin:
                apex = origin
            b.skip("directive")
        elif d == "$TTL":
            b.skip("directive")
        else:
            b.reject(no, raw, f"directive {head[:20]} not supported")
        return last_owner, origin, apex
    if line[0] in " \t":
        owner = last_owner
        rest = fields
    else:
        owner = head
        rest = fields[1:]
    i = 0
    while i < len(rest) and (rest[i].isdigit() or rest[i].lower() in _CLASSES):
        i += 1
    if i >= len(rest):
        b.reject(no, raw, "record without a type")
        return owner, origin, apex
    rtype = rest[i].upper()
    rdata = rest[i + 1 :]
    if rtype == "SOA":
        full = _absolute(owner.lower(), origin)
        apex = full
        b.skip("SOA/NS")
        return owner, origin, apex
    if rtype == "NS":
        b.skip("SOA/NS")
        return owner, origin, apex
    name = _rpz_trigger(owner, origin, apex)
    if name is None:
        b.skip("SOA/NS")  # a record at the apex itself
        return owner, origin, apex
    if any(t in name.split(".") for t in _RPZ_TRIGGERS):
        b.reject(no, raw, "RPZ IP/NSDNAME/client triggers not supported")
        return owner, origin, apex
    subdomains_only = False
    if name.startswith("*."):
        subdomains_only = True
        name = name[2:]
    exception = False
    note = ""
    if rtype == "CNAME":
        if not rdata:
            b.reject(no, raw, "CNAME without a target")
            return owner, origin, apex
        target = rdata[0].lower()
        bare = target[:-1] if target.endswith(".") else target  # rpz-passthru, relative or not
        if bare in _BLOCK_TARGETS:
            note = _BLOCK_TARGETS[bare]
        elif bare == "rpz-passthru":
            exception = True
        elif bare == "rpz-tcp-only":
            b.reject(no, raw, "rpz-tcp-only is not a filtering action")
            return owner, origin, apex
        else:
            note = f"local redirect to {target[:60]}"
    elif rtype in ("A", "AAAA", "TXT", "MX", "HTTPS", "SVCB", "PTR", "SRV", "DNAME"):
        note = f"local data ({rtype})"
    else:
        b.reject(no, raw, f"record type {rtype[:20]} not supported")
        return owner, origin, apex
    b.name(no, raw, name, exception=exception, subdomains_only=subdomains_only, note=note)
    return owner, origin, apex


def _absolute(name: str, origin: str) -> str:
    """A zone-file name made absolute (no trailing dot)."""
    if name == "@":
        return origin
    if name.endswith("."):
        return name[:-1]
    return f"{name}.{origin}" if origin else name


def _rpz_trigger(owner: str, origin: str, apex: str | None) -> str | None:
    """The policy trigger for an owner name: relative to the zone apex. None at the apex."""
    o = owner.lower()
    if o == "@":
        return None if apex is None or origin == apex or not origin else _strip(origin, apex)
    full = _absolute(o, origin)
    if apex:
        if full == apex:
            return None
        return _strip(full, apex)
    return full


def _strip(full: str, apex: str) -> str:
    suffix = "." + apex
    return full[: -len(suffix)] if full.endswith(suffix) else full


# --------------------------------------------------------------------------- rating

RATING_HEADER = ("domain", "category", "min_age")


def _parse_rating(lines: Lines, b: _Builder, categories: Collection[str] | None) -> None:
    header_seen = False
    has_note = False
    wanted = None if categories is None else frozenset(c.lower() for c in categories)
    for no, raw in lines:
        line = raw.strip()
        if no == 1 and line.startswith("\ufeff"):
            line = line[1:].strip()
        if b.trivial(no, line):
            continue
        if '"' in line:
            try:
                row = next(csv.reader([line], strict=True))
            except (csv.Error, StopIteration) as e:
                b.reject(no, raw, f"bad CSV: {e}")
                continue
        else:
            row = line.split(",")  # what the csv module reads from a line without quotes
        row = [f.strip() for f in row]
        if not header_seen:
            low = tuple(f.lower() for f in row)
            if low[:3] == RATING_HEADER and len(low) <= 4 and (len(low) == 3 or low[3] == "note"):
                header_seen = True
                has_note = len(low) == 4
                b.skip("header")
                continue
            if no == 1 or not b.result.rejected_count:
                b.reject(no, raw, "missing header: the first line must be domain,category,min_age")
            else:
                b.reject(no, raw, "no header line, so the columns are unknown")
            continue
        if len(row) < 3 or len(row) > (4 if has_note else 3):
            b.reject(no, raw, f"expected {4 if has_note else 3} fields, got {len(row)}")
            continue
        domain, category, age_text = row[0], row[1].lower(), row[2]
        if not category:
            b.reject(no, raw, "empty category")
            continue
        if wanted is not None and category not in wanted:
            b.reject(no, raw, f"unknown category {category[:40]!r}")
            continue
        min_age: int | None = None
        if age_text:
            if not age_text.isascii() or not age_text.isdigit() or int(age_text) > 99:
                b.reject(no, raw, f"min_age must be a whole number 0-99, got {age_text[:20]!r}")
                continue
            min_age = int(age_text)
        exception = False
        if domain.startswith("@@"):
            exception = True
            domain = domain[2:]
        if domain.startswith("*."):
            domain = domain[2:]
        if "/" in domain:
            b.reject(no, raw, "URL, not a domain")
            continue
        b.name(no, raw, domain, category=category, min_age=min_age, exception=exception)


# --------------------------------------------------------------------------- dnsmasq

_DNSMASQ = re.compile(r"(address|local|server)=/(.*)/([^/]*)")


_DNSMASQ_FAST = re.compile(r"(?:address=/([^/]+)/(?:#|0\.0\.0\.0|::|)|(?:local|server)=/([^/]+)/)")


def _parse_dnsmasq(lines: Lines, b: _Builder) -> None:
    add_plain = b.plain_adder()
    trivial = b.trivial
    for no, raw in lines:
        line = raw.strip()
        # hot path: one plain name blocked
        f = _DNSMASQ_FAST.fullmatch(line)
        if f is not None and add_plain(f.group(1) or f.group(2), no):
            continue
        if trivial(no, line):
            continue
        m = _DNSMASQ.fullmatch(line)
        if m is None:
            b.reject(no, line, "not an address=/…/, local=/…/ or server=/…/ line")
            continue
        kind, domains, value = m.groups()
        if kind == "server" and value and value != "#":
            b.reject(no, line, "forwarding rule, not a block")
            continue
        if kind == "server" and value == "#":
            b.reject(no, line, "server=/…/# uses the normal upstreams, not a block")
            continue
        for d in domains.split("/"):
            if d in ("", "#"):
                b.reject(no, line, "matches every domain: too broad")
                continue
            b.name(no, line, d[2:] if d.startswith("*.") else d[1:] if d[0] == "." else d)


# --------------------------------------------------------------------------- unbound

_UNBOUND_BLOCK = frozenset(
    {
        "always_nxdomain",
        "always_refuse",
        "always_null",
        "always_nodata",
        "always_deny",
        "refuse",
        "static",
        "deny",
        "redirect",
        "inform_deny",
        "nodefault_nxdomain",
    }
)
_UNBOUND_ZONE = re.compile(r'local-zone:\s*"?([^"\s]+)"?\s+(\S+)')
_UNBOUND_DATA = re.compile(r'local-data:\s*"([^"]+)"')


_UNBOUND_FAST = re.compile(r'local-zone: "([^"]+)\." always_nxdomain')


def _parse_unbound(lines: Lines, b: _Builder) -> None:
    add_plain = b.plain_adder()
    trivial = b.trivial
    for no, raw in lines:
        line = raw.strip()
        # hot path: `local-zone: "name." always_nxdomain` with a plain name
        f = _UNBOUND_FAST.fullmatch(line)
        if f is not None and add_plain(f.group(1), no):
            continue
        if trivial(no, line):
            continue
        if line in ("server:", "server: "):
            b.skip("header")
            continue
        m = _UNBOUND_ZONE.match(line)
        if m is not None:
            name, kind = m.group(1), m.group(2).lower()
            if kind in _UNBOUND_BLOCK:
                b.name(no, line, name)
            elif kind == "always_transparent":
                b.name(no, line, name, exception=True)
            else:
                b.reject(no, line, f"local-zone type {kind[:30]} does not block")
            continue
        m = _UNBOUND_DATA.match(line)
        if m is not None:
            parts = m.group(1).split()
            rtype = next(
                (
                    p.upper()
                    for p in parts[1:]
                    if p.isalpha() and p.upper() not in ("IN", "CH", "HS")
                ),
                "?",
            )
            b.name(no, line, parts[0], note=f"local data ({rtype[:10]})")
            continue
        b.reject(no, line, "not a local-zone: or local-data: line")


# --------------------------------------------------------------------------- public API

_LINE_PARSERS: dict[str, LineParser] = {
    "hosts": _parse_hosts,
    "domains": _parse_domains,
    "wildcard": _parse_domains,
    "adblock": _parse_adblock,
    "rpz": _parse_rpz,
    "dnsmasq": _parse_dnsmasq,
    "unbound": _parse_unbound,
}
# "rating" takes an extra argument (categories); parse() dispatches it.
FORMAT_NAMES: tuple[str, ...] = (*_LINE_PARSERS, "rating")


def _lines(text: str | Iterable[str]) -> Iterator[str]:
    """The lines of a text (split on \\n only, so numbers match `wc -l`), BOM removed.

    A str is split at once; any other iterable (an open file) is streamed line by line."""
    if isinstance(text, str):
        parts = text.split("\n")
        if parts[-1] == "":
            parts.pop()  # the final line end terminates the last line
        it: Iterator[str] = iter(parts)
    else:
        it = iter(text)
    first = next(it, None)
    if first is None:
        return iter(())
    if first.startswith("\ufeff"):
        first = first[1:]
    return itertools.chain((first,), it)


def parse(
    text: str | Iterable[str],
    fmt: str,
    *,
    categories: Collection[str] | None = None,
    keep_rejected: int = KEEP_REJECTED,
) -> ParseResult:
    """Parse a whole list. `text` is the file's text or any iterable of its lines.

    categories: for "rating", the known category slugs (unknown ones are rejected).
    keep_rejected: how many Rejected rows to keep (rejected_count counts all of them).
    Raises ValueError only for an unknown format.
    """
    if fmt not in FORMAT_NAMES:
        raise ValueError(f"unknown list format {fmt!r} (known: {', '.join(FORMAT_NAMES)})")
    b = _Builder(fmt, keep_rejected)
    counter = itertools.count(1)
    # zip is C-level like enumerate; the counter runs one past the last line
    numbered = zip(counter, _lines(text), strict=False)
    with _gc_paused():
        if fmt == "rating":
            _parse_rating(numbered, b, categories)
        else:
            _LINE_PARSERS[fmt](numbered, b)
    b.result.lines = next(counter) - 2
    return b.result


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building: the entries make no cycles, and with ~1M new
    objects the collector's passes cost about a third of the parse time (measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_file(
    path: Path,
    fmt: str,
    *,
    categories: Collection[str] | None = None,
    keep_rejected: int = KEEP_REJECTED,
) -> ParseResult:
    """Parse a list file: UTF-8, a bad byte rejects only its line ("not valid UTF-8").

    OSError (missing/unreadable file) propagates: the caller (sync) keeps the last good list.
    """
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        return parse(f, fmt, categories=categories, keep_rejected=keep_rejected)


class _FormatParser(Protocol):
    def __call__(
        self,
        text: str | Iterable[str],
        *,
        categories: Collection[str] | None = None,
        keep_rejected: int = KEEP_REJECTED,
    ) -> ParseResult: ...


# format name -> parse function for that format: PARSERS["hosts"](text) == parse(text, "hosts")
PARSERS: dict[str, _FormatParser] = {name: partial(parse, fmt=name) for name in FORMAT_NAMES}


# --------------------------------------------------------------------------- detection

_DETECT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("adblock", re.compile(r"^(?:@@)?\|\|?[^\s|]+\^|^\[Adblock|^!")),
    ("rpz", re.compile(r"\sCNAME\s|^\$TTL|^\$ORIGIN|\sSOA\s", re.IGNORECASE)),
    ("dnsmasq", re.compile(r"^(?:address|local|server)=/")),
    ("unbound", re.compile(r"^(?:local-zone|local-data):|^server:")),
    ("hosts", re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f:]*::[0-9a-f:]*|0)\s+\S")),
    ("wildcard", re.compile(r"^\*\.[^\s/]+$")),
    ("domains", re.compile(r"^[^\s/#;!]+\.[^\s/]+$")),
)


def detect_format(sample: str) -> str:
    """Best guess of a list's format from its first lines (for the admin UI's "add a feed").

    Returns a PARSERS key; "domains" when nothing stands out.
    """
    lines = sample.lstrip("\ufeff").split("\n")[:500]
    first = next((ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")), "")
    if first.lower().replace(" ", "").startswith("domain,category,min_age"):
        return "rating"
    scores = dict.fromkeys((n for n, _ in _DETECT_RULES), 0)
    for ln in lines:
        s = ln.rstrip()
        if not s or s.startswith("#") and not s.startswith("##"):
            continue
        for name, rx in _DETECT_RULES:
            if rx.search(s):
                scores[name] += 1
                break
    best = max(scores, key=lambda n: scores[n])
    if scores[best] == 0:
        return "domains"
    if best == "wildcard":
        return "wildcard"
    return best


def read_sample(path: Path, size: int = 64 * 1024) -> str:
    """The first `size` bytes of a file as text, for detect_format."""
    with open(path, "rb") as f:
        data = f.read(size)
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace").read()
