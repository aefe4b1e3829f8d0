"""List parsers (CONTRACT stub: the blocklists helper implements it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # canonical name (see policy/model.py)
    exception: bool = False  # allow rule: @@||x^, rpz-passthru., whitelist
    subdomains_only: bool = False  # RPZ "*.x" without "x": x itself not matched
    category: str | None = None  # per-entry category (rating format)
    min_age: int | None = None  # per-entry minimum age (rating format)
    line: int = 0  # 1-based line number in the source text


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
