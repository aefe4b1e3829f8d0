"""The household's own list: a `local` feed in `rating` format that nestguard keeps.

An admin's decision on a reported site ("add to the local list") becomes a line of
`<data_dir>/local-ratings.csv` (`domain,category,min_age,note`), and the feed is synced at once
so the whole house follows it. The same CSV lines are what `nestguard reports export` and the
Reports page's download give a national list maintainer.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from blocklists.feed import Feed
from policy.model import Index, Match

LOCAL_FEED = "local"
FILE_NAME = "local-ratings.csv"
HEADER = ("domain", "category", "min_age", "note")


def rating_csv(rows: Iterable[tuple[str, str, int | None, str]], *, header: bool = True) -> str:
    """Rows (domain, category, min_age, note) as rating CSV text. Notes lose line breaks and
    are quoted when they need to be (the rating parser reads quoted fields)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    if header:
        w.writerow(HEADER)
    for domain, category, min_age, note in rows:
        clean = " ".join(note.split())[:200]
        w.writerow((domain, category, "" if min_age is None else str(min_age), clean))
    return out.getvalue()


class LocalList:
    """The file behind the `local` feed (written whole, then renamed into place)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def feed(self) -> Feed:
        return Feed(LOCAL_FEED, str(self.path), "rating")

    def ensure(self) -> None:
        if not self.path.exists():
            self._write([])

    def entries(self) -> list[tuple[str, str, int | None, str]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        rows = list(csv.reader(io.StringIO(text)))
        out = []
        for row in rows[1:]:
            if len(row) >= 3 and row[0]:
                age = int(row[2]) if row[2].isdigit() else None
                out.append((row[0], row[1], age, row[3] if len(row) > 3 else ""))
        return out

    def add(self, domain: str, category: str, min_age: int | None, note: str) -> None:
        """Add or replace the line for `domain` (a canonical name)."""
        with self._lock:
            rows = [r for r in self.entries() if r[0] != domain]
            rows.append((domain, category, min_age, note))
            self._write(rows)

    def _write(self, rows: list[tuple[str, str, int | None, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(rating_csv(rows), encoding="utf-8")
        os.replace(tmp, self.path)


class LocalOverlay:
    """The index in force plus the local list's lines added since it was built.

    A rebuild of the whole index runs in a fresh worker process (a second or more); the
    overlay puts an admin's decision in force for the house at once, and the background
    sync then folds the same line into the index (a line the index has already is not
    matched twice)."""

    def __init__(self, inner: Index, entries: dict[str, Match]) -> None:
        self.inner = inner
        self.entries = entries

    def lookup(self, qname: str) -> list[Match]:
        found = list(self.inner.lookup(qname))
        extra: list[Match] = []
        name = qname
        while True:
            m = self.entries.get(name)
            if m is not None and not any(
                f.source == LOCAL_FEED and f.rule == m.rule and not f.exception for f in found
            ):
                extra.append(m)
            dot = name.find(".")
            if dot < 0:
                break
            name = name[dot + 1:]
        return extra + found if extra else found

    def __getattr__(self, name: str) -> object:  # anything else the wrapped index offers
        return getattr(self.inner, name)


def local_match(domain: str, category: str, min_age: int) -> Match:
    return Match(category=category, min_age=min_age, source=LOCAL_FEED, rule=domain)
