"""One compiled index over every list: `CategoryIndex.lookup(qname)` on the resolver's hot path.

Layout (the same in memory and in the index FILE, which is mmapped so a restart is instant and
the pages are shared with / cached by the OS; no Python set or dict of names is kept):

    magic "NGIDX001" | u32 header length | u32 0 | JSON header | sections, each 8-byte aligned:
    dir    u32[B + 1]   bucket -> first entry; bucket = key >> (32 - bits), B = 2**bits
    keys   u32[n]       crc32 of the entry's name, ascending (so grouped by bucket)
    noff   u32[n + 1]   entry i's name is names[noff[i]:noff[i + 1]]
    src    u16[n]       source (feed) id -> header "sources"
    cat    u16[n]       category id -> header "categories"
    age    u8[n]        minimum age
    flags  u8[n]        1 = exception (allow rule), 2 = subdomains only, 4 = INNER marker
    line   u32[n]       line number in the source list
    names  bytes        the canonical names, concatenated

A lookup hashes the suffixes of the name from the shortest with two labels ('x.a.b.c' ->
'b.c', 'a.b.c', 'x.a.b.c'), reads each one's bucket (about one key), and only on an equal key
compares the stored name. The walk stops at the first suffix that is neither listed nor an
INNER marker (a parent of a listed name, stored as a key without a name), so most names cost
one probe. So a lookup costs a few
hundred nanoseconds per label whatever the list size, and it is EXACT: a crc32 collision costs
one extra compare, never a false match (a plain 64-bit hash would be right "only" with
probability 1 - n/2**64, and crc32 is easy to collide on purpose: an attacker could forge a
name hitting an allow rule). The names blob is read only on hits, so its pages mostly stay on
disk. The file is native byte order (little-endian on every Raspberry Pi); a file of the other
order is refused and rebuilt.

Rebuilds run in a separate process (`rebuild`, `run_in_process`): the event loop only mmaps
the finished file, and the caller swaps `live.value` whole.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import ctypes
import json
import logging
import mmap
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zlib import crc32

from blocklists.feed import FeedError
from blocklists.parse import Entry
from policy.memo import Memo
from policy.model import NEVER, Match

log = logging.getLogger(__name__)

MAGIC = b"NGIDX002"
EXCEPTION = 1
SUBDOMAINS_ONLY = 2
INNER = 4  # not an entry: a parent of deeper entries (the lookup walk goes on below it)
_SECTIONS = ("dir", "keys", "nstart", "nlen", "src", "cat", "age", "flags", "line", "names")
_TYPECODES = {"dir": "I", "keys": "I", "nstart": "I", "nlen": "B", "src": "H", "cat": "H",
              "age": "B", "flags": "B", "line": "I"}
MAX_SOURCES = 65535
MAX_CATEGORIES = 65535
MAX_NAME_BYTES = 2**32 - 1
T = TypeVar("T")
Buffer = bytes | bytearray | memoryview

for _code in ("I", "H"):  # the layout needs these sizes (true on every CPython platform)
    assert array.array(_code).itemsize == {"I": 4, "H": 2}[_code]


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A list's feed-level defaults: an entry's own category/min_age win over these.

    exception=True makes every entry of the source an allow rule (the education allow set).
    """

    name: str
    category: str | None = None
    min_age: int | None = None
    exception: bool = False


@dataclass(frozen=True, slots=True)
class IndexStats:
    entries: int  # entries in the index (after dropping duplicates)
    by_source: Mapping[str, int]  # source name -> entries
    by_category: Mapping[str, int]
    skipped: Mapping[str, int]  # reason -> count ("unknown category: x", "duplicate", ...)
    file_bytes: int  # size of the compiled index
    build_seconds: float
    built_at: float  # UNIX time
    fingerprint: str = ""


_EMPTY: tuple[Match, ...] = ()
MATCH_CACHE = 16384
MEMO_SIZE = 16384
_SET_MATCH = tuple(
    Match.__dict__[f].__set__
    for f in ("category", "min_age", "source", "exception", "rule", "line", "confidence")
)


def _new_match(
    category: str, min_age: int, source: str, exception: bool, rule: str, line: int
) -> Match:
    """Match(...) without the frozen dataclass __init__ (half the cost on the hot path)."""
    m = object.__new__(Match)
    sc, sa, ss, se, sr, sl, sf = _SET_MATCH
    sc(m, category)
    sa(m, min_age)
    ss(m, source)
    se(m, exception)
    sr(m, rule)
    sl(m, line)
    sf(m, 1.0)
    return m


class CategoryIndex:
    """Immutable; build with `build_index`, `CategoryIndex.load(path)` or `empty()`."""

    __slots__ = ("_buf", "_header", "_dir", "_keys", "_nstart", "_nlen", "_src", "_cat", "_age",
                 "_flags", "_line", "_names_at", "_shift", "_n", "_sources", "_categories",
                 "_path", "_matches", "_memo", "_entries")
    _buf: bytes | mmap.mmap
    _header: dict[str, Any]
    _dir: memoryview
    _keys: memoryview
    _nstart: memoryview
    _nlen: memoryview
    _src: memoryview
    _cat: memoryview
    _age: memoryview
    _flags: memoryview
    _line: memoryview

    def __init__(self, buf: bytes | mmap.mmap, *, path: Path | None = None) -> None:
        """Wrap a serialized index (bytes, or an mmap of an index file). Raises FeedError."""
        where = str(path) if path else "index buffer"
        if len(buf) < 16 or buf[:8] != MAGIC:
            raise FeedError(f"{where}: not a nestguard index file (bad magic)")
        hlen = int.from_bytes(buf[8:12], "little")
        try:
            header = json.loads(bytes(buf[16 : 16 + hlen]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise FeedError(f"{where}: unreadable header: {e}") from e
        if header.get("byteorder") != sys.byteorder:
            raise FeedError(f"{where}: built for {header.get('byteorder')}-endian machines")
        view = memoryview(buf)
        sections: dict[str, list[int]] = header["sections"]
        try:
            for name, code in _TYPECODES.items():
                off, size = sections[name]
                if off + size > len(buf) or off % 8:
                    raise FeedError(f"{where}: section {name} out of bounds (truncated file?)")
                setattr(self, "_" + name, view[off : off + size].cast(code))  # type: ignore[call-overload]
            noff, nsize = sections["names"]
            if noff + nsize > len(buf):
                raise FeedError(f"{where}: names out of bounds (truncated file?)")
        except (KeyError, TypeError, ValueError) as e:
            raise FeedError(f"{where}: bad section table: {e}") from e
        self._buf = buf
        self._header = header
        self._names_at = noff
        self._n = int(header["n"])  # entries + INNER markers
        self._entries = int(header["entries"])
        self._shift = 32 - int(header["bits"])
        self._sources: tuple[str, ...] = tuple(header["sources"])
        self._categories: tuple[str, ...] = tuple(header["categories"])
        self._path = path
        # entry -> its Match (blocked sites repeat); qname -> result (policy/memo.py)
        self._matches: Memo[int, Match] = Memo(MATCH_CACHE)
        self._memo: Memo[str, tuple[Match, ...]] = Memo(MEMO_SIZE)
        if len(self._keys) != self._n or len(self._dir) != (1 << header["bits"]) + 1 \
                or self._dir[0] != 0 or self._dir[-1] != self._n:
            raise FeedError(f"{where}: section sizes do not match the header")

    # -- construction --------------------------------------------------------------------
    @classmethod
    def empty(cls) -> CategoryIndex:
        return cls(_serialize(_Builder().finish(fingerprint="")))

    @classmethod
    def load(cls, path: Path) -> CategoryIndex:
        """mmap a compiled index file (read-only). Raises FeedError if missing or bad."""
        try:
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:  # ValueError: empty file
            raise FeedError(f"cannot open index {path}: {e}") from e
        return cls(mm, path=path)

    def save(self, path: Path) -> None:
        """Write the index to `path` atomically (temp file in the same folder + os.replace)."""
        _atomic_write(path, [memoryview(self._buf)])

    # -- queries ---------------------------------------------------------------------------
    def lookup(self, qname: str) -> tuple[Match, ...]:
        """Every entry matching the name or one of its parent domains, most specific first.

        Single-label suffixes ("com") are never listed: the builder skips them.
        """
        memo = self._memo
        hit = memo.get(qname)
        if hit is not None:
            return hit
        return memo.put(qname, self._lookup(qname))  # real DNS traffic repeats the same names

    def _lookup(self, qname: str) -> tuple[Match, ...]:
        # Walk from the shortest suffix with two labels towards the whole name, and stop at
        # the first suffix that is neither listed nor the parent of a listed name (an INNER
        # marker): most names cost one probe, whatever their number of labels.
        b = qname.lower().encode("utf-8", "surrogatepass")
        if b[-1:] == b".":
            b = b[:-1]
        labels = b.split(b".")
        k = len(labels) - 2
        if k < 0:
            return _EMPTY
        pos = len(b) - len(labels[-1]) - len(labels[-2]) - 1
        dir_ = self._dir
        shift = self._shift
        found: list[Match] | None = None
        while True:
            s = b[pos:] if pos else b
            h = crc32(s)
            x = h >> shift
            i = dir_[x]
            end = dir_[x + 1]
            if i == end:
                break
            ms, deeper = self._scan(i, end, h, s, not pos)
            if ms is not None:
                found = ms if found is None else ms + found  # most specific first
            if not deeper or not pos:
                break
            k -= 1
            pos -= len(labels[k]) + 1
        return tuple(found) if found else _EMPTY

    def _scan(
        self, i: int, end: int, h: int, s: bytes, whole: bool
    ) -> tuple[list[Match] | None, bool]:
        """The matches for suffix s in a non-empty bucket (ascending keys), and whether
        listed names lie below s."""
        keys = self._keys
        found: list[Match] | None = None
        deeper = False
        while i < end:
            k = keys[i]
            if k == h:
                flags = self._flags[i]
                if flags & INNER:
                    deeper = True  # a crc32 collision here only costs one more probe
                elif self._nlen[i] == len(s):  # else a crc32 collision with another name
                    start = self._names_at + self._nstart[i]
                    if self._buf[start : start + len(s)] == s and not (
                            flags & SUBDOMAINS_ONLY and whole):
                        m = self._matches.get(i) or self._match(i, s, flags)
                        if found is None:
                            found = [m]
                        else:
                            found.append(m)
            elif k > h:
                break
            i += 1
        return found, deeper

    def _match(self, i: int, s: bytes, flags: int) -> Match:
        return self._matches.put(i, _new_match(
            self._categories[self._cat[i]],
            self._age[i],
            self._sources[self._src[i]],
            bool(flags & EXCEPTION),
            s.decode("utf-8", "surrogateescape"),
            self._line[i],
        ))

    def __len__(self) -> int:
        return self._entries

    def __repr__(self) -> str:
        return f"<CategoryIndex {self._n} entries from {len(self._sources)} sources>"

    @property
    def path(self) -> Path | None:
        """The file this index is mapped from (None when built in memory)."""
        return self._path

    @property
    def fingerprint(self) -> str:
        """An opaque string the builder stored (sync uses it to detect stale index files)."""
        return str(self._header.get("fingerprint", ""))

    def stats(self) -> IndexStats:
        h = self._header
        return IndexStats(
            entries=self._entries,
            by_source=dict(h["by_source"]),
            by_category=dict(h["by_category"]),
            skipped=dict(h["skipped"]),
            file_bytes=len(self._buf),
            build_seconds=float(h["build_seconds"]),
            built_at=float(h["built_at"]),
            fingerprint=self.fingerprint,
        )


# -- building -------------------------------------------------------------------------------
@dataclass(slots=True)
class _Built:
    header: dict[str, Any]
    sections: dict[str, Buffer] = field(default_factory=dict)


class _Builder:
    """Accumulates entries in compact arrays (no per-name Python objects), then sorts."""

    def __init__(self) -> None:
        self.names = bytearray()
        self.noff = array.array("I", [0])
        self.keys = array.array("I")
        self.src = array.array("H")
        self.cat = array.array("H")
        self.age = array.array("B")
        self.flags = array.array("B")
        self.line = array.array("I")
        self.sources: list[str] = []
        self.categories: list[str] = []
        self.cat_ids: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.inner = array.array("I")  # crc32 of the parents (2+ labels) of listed names
        self.started = time.monotonic()

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def add_source(
        self, info: SourceInfo, entries: Iterable[Entry], category_ages: Mapping[str, int]
    ) -> int:
        if info.name in self.sources:
            raise FeedError(f"source {info.name!r} given twice")
        if len(self.sources) >= MAX_SOURCES:
            raise FeedError(f"too many sources (max {MAX_SOURCES})")
        sid = len(self.sources)
        self.sources.append(info.name)
        names, noff, keys = self.names, self.noff, self.keys
        src, cat, age, flags, line = self.src, self.cat, self.age, self.flags, self.line
        # per-source memo: category -> (id, default age) or None when unknown
        memo: dict[str | None, tuple[int, int] | None] = {}
        all_exceptions = info.exception
        inner = self.inner
        added = 0
        for e in entries:
            c = e.category or info.category
            if c in memo:
                known = memo[c]
            else:
                known = memo[c] = self._category(c, category_ages)
            if known is None:
                self.skip(f"unknown category: {c}" if c else "no category")
                continue
            cid, default_age = known
            a = e.min_age if e.min_age is not None else (
                info.min_age if info.min_age is not None else default_age)
            b = e.name.encode("utf-8", "surrogatepass")
            if len(b) > 255 or b"." not in b:
                self.skip("bad name" if len(b) > 255 else "single label")
                continue
            names += b
            noff.append(len(names))
            keys.append(crc32(b))
            src.append(sid)
            cat.append(cid)
            age.append(a if 0 <= a <= NEVER else NEVER)
            flags.append((EXCEPTION if e.exception or all_exceptions else 0)
                         | (SUBDOMAINS_ONLY if e.subdomains_only else 0))
            line.append(e.line if 0 <= e.line < 2**32 else 0)
            added += 1
            dots = b.count(b".")
            if dots > 1:
                pos = b.find(b".") + 1
                while dots > 1:
                    inner.append(crc32(b[pos:]))
                    pos = b.find(b".", pos) + 1
                    dots -= 1
        if len(names) > MAX_NAME_BYTES:
            raise FeedError("index too large (over 4 GiB of names)")
        return added

    def _category(self, c: str | None, ages: Mapping[str, int]) -> tuple[int, int] | None:
        if c is None or c not in ages:
            return None
        cid = self.cat_ids.get(c)
        if cid is None:
            if len(self.categories) >= MAX_CATEGORIES:
                raise FeedError(f"too many categories (max {MAX_CATEGORIES})")
            cid = self.cat_ids[c] = len(self.categories)
            self.categories.append(c)
        return cid, ages[c]

    def finish(self, *, fingerprint: str) -> _Built:
        if not self.keys:
            return self._finish_empty(fingerprint)
        import numpy as np  # build side only: the serving process never imports numpy

        keys = np.frombuffer(self.keys, dtype=np.uint32)
        order = np.argsort(keys, kind="stable")  # stable: the first line of a name stays first
        same = np.flatnonzero(np.diff(keys[order]) == 0) + 1
        drop = self._duplicates(order, same)
        if drop:
            self.skip("duplicate", len(drop))
            mask = np.ones(len(order), dtype=bool)
            mask[np.fromiter(drop, dtype=np.int64, count=len(drop))] = False
            order = order[mask]
        entries = len(order)
        # INNER markers (parents of listed names) go after the entries; one stable sort by
        # key then puts each marker after the entries that share its key
        marker_keys = np.unique(np.frombuffer(self.inner, dtype=np.uint32))
        m = len(marker_keys)
        all_keys = np.concatenate([keys[order], marker_keys])
        final = np.argsort(all_keys, kind="stable")

        def column(data: array.array[int], dtype: Any, fill: int) -> Any:
            col = np.frombuffer(data, dtype=dtype)[order]
            return np.concatenate([col, np.full(m, fill, dtype=dtype)])[final]

        noff = np.frombuffer(self.noff, dtype=np.uint32)
        starts = np.concatenate([noff[:-1][order], np.zeros(m, np.uint32)])[final]
        lengths = np.concatenate([(noff[1:] - noff[:-1])[order].astype(np.uint8),
                                  np.zeros(m, np.uint8)])[final]
        sorted_keys = all_keys[final]
        n = len(sorted_keys)
        # 2n..4n buckets: most probes of a missing suffix find an empty bucket (one compare);
        # costs 8-16 bytes per entry, which beats a Python set by an order of magnitude
        bits = min(max(n.bit_length() + 1, 4), 30)
        counts = np.bincount(sorted_keys >> (32 - bits), minlength=1 << bits)
        dir_ = np.zeros((1 << bits) + 1, dtype=np.uint32)
        np.cumsum(counts, out=dir_[1:])
        real_src = np.frombuffer(self.src, dtype=np.uint16)[order]
        real_cat = np.frombuffer(self.cat, dtype=np.uint16)[order]
        by_source = np.bincount(real_src, minlength=len(self.sources)).tolist()
        by_cat = np.bincount(real_cat, minlength=len(self.categories)).tolist()
        sections: dict[str, Buffer] = {
            "dir": dir_.tobytes(),
            "keys": sorted_keys.tobytes(),
            "nstart": starts.tobytes(),
            "nlen": lengths.tobytes(),
            "src": column(self.src, np.uint16, 0).tobytes(),
            "cat": column(self.cat, np.uint16, 0).tobytes(),
            "age": column(self.age, np.uint8, 0).tobytes(),
            "flags": column(self.flags, np.uint8, INNER).tobytes(),
            "line": column(self.line, np.uint32, 0).tobytes(),
            "names": self.names,
        }
        header = self._header(n, bits, by_source, by_cat, fingerprint)
        header["entries"] = entries
        return _Built(header, sections)

    def _finish_empty(self, fingerprint: str) -> _Built:
        bits = 4
        sections: dict[str, Buffer] = {name: b"" for name in _SECTIONS}
        sections["dir"] = bytes(4 * ((1 << bits) + 1))
        return _Built(self._header(0, bits, [0] * len(self.sources), [], fingerprint), sections)

    def _header(self, n: int, bits: int, by_source: list[int], by_cat: list[int],
                fingerprint: str) -> dict[str, Any]:
        return {
            "version": 2,
            "byteorder": sys.byteorder,
            "n": n,
            "entries": n,
            "bits": bits,
            "sources": self.sources,
            "categories": self.categories,
            "by_source": dict(zip(self.sources, by_source, strict=True)),
            "by_category": dict(zip(self.categories, by_cat, strict=True)),
            "skipped": self.skipped,
            "build_seconds": round(time.monotonic() - self.started, 3),
            "built_at": time.time(),
            "fingerprint": fingerprint,
        }

    def _duplicates(self, order: Any, same: Any) -> list[int]:
        """Positions (in `order`) of exact repeats: same name, source, category, age, flags.

        `same` lists the positions whose key equals the previous one; only those runs (shared
        names across lists, repeats within one, rare crc32 collisions) are compared in Python.
        """
        names, noff = self.names, self.noff
        src, cat, age, flags = self.src, self.cat, self.age, self.flags
        drop: list[int] = []
        seen: set[tuple[bytes, int, int, int, int]] = set()
        prev = -2
        for p in same.tolist():
            if p != prev + 1:  # a new run starts at p - 1
                seen.clear()
                j = int(order[p - 1])
                seen.add((bytes(names[noff[j] : noff[j + 1]]), src[j], cat[j], age[j], flags[j]))
            prev = p
            i = int(order[p])
            sig = (bytes(names[noff[i] : noff[i + 1]]), src[i], cat[i], age[i], flags[i])
            if sig in seen:
                drop.append(p)
            else:
                seen.add(sig)
        return drop


def _layout(built: _Built) -> list[bytes | bytearray | memoryview]:
    """The file's pieces in order: prefix + header + padded sections."""
    header = dict(built.header)
    sizes = {name: len(memoryview(built.sections[name]).cast("B")) for name in _SECTIONS}
    # the header holds the section offsets, which depend on the header's own length:
    # reserve room by formatting twice with fixed-width numbers
    header["sections"] = {name: [0, 0] for name in _SECTIONS}
    for _ in range(2):
        blob = json.dumps(header, separators=(",", ":")).encode()
        pos = _align(16 + len(blob) + 64)
        table = {}
        for name in _SECTIONS:
            table[name] = [pos, sizes[name]]
            pos = _align(pos + sizes[name])
        header["sections"] = table
    blob = json.dumps(header, separators=(",", ":")).encode()
    start = table[_SECTIONS[0]][0]
    if 16 + len(blob) > start:
        raise AssertionError("index header grew past its reserved room")
    pieces: list[bytes | bytearray | memoryview] = [
        MAGIC, len(blob).to_bytes(4, "little"), bytes(4), blob, bytes(start - 16 - len(blob))]
    pos = start
    for name in _SECTIONS:
        data = memoryview(built.sections[name]).cast("B")
        pieces.append(data)
        pos += len(data)
        pad = _align(pos) - pos
        if pad:
            pieces.append(bytes(pad))
            pos += pad
    return pieces


def _align(n: int) -> int:
    return (n + 7) & ~7


def _serialize(built: _Built) -> bytes:
    return b"".join(_layout(built))


def _atomic_write(path: Path, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for p in pieces:
                f.write(p)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _build(
    sources: Iterable[tuple[SourceInfo, Iterable[Entry]]],
    category_ages: Mapping[str, int],
    fingerprint: str | Callable[[], str],
) -> _Built:
    b = _Builder()
    for info, entries in sources:
        b.add_source(info, entries, category_ages)
    return b.finish(fingerprint=fingerprint if isinstance(fingerprint, str) else fingerprint())


def build_index(
    sources: Iterable[tuple[SourceInfo, Iterable[Entry]]],
    *,
    category_ages: Mapping[str, int],
    fingerprint: str = "",
) -> CategoryIndex:
    """Compile entries into an in-memory index (use `build_index_file` for big lists).

    An entry's category is entry.category or the source's; its min_age is entry.min_age, else
    the source's, else category_ages[category]. Entries whose category is not in
    category_ages are skipped and counted in stats().skipped.
    """
    return CategoryIndex(_serialize(_build(sources, category_ages, fingerprint)))


def build_index_file(
    sources: Iterable[tuple[SourceInfo, Iterable[Entry]]],
    path: Path,
    *,
    category_ages: Mapping[str, int],
    fingerprint: str | Callable[[], str] = "",
) -> IndexStats:
    """Compile entries straight into an index file (atomic replace); returns its stats.

    fingerprint may be a function, called once every source has been read.
    """
    built = _build(sources, category_ages, fingerprint)
    _atomic_write(path, _layout(built))
    h = built.header
    return IndexStats(
        entries=h["entries"], by_source=h["by_source"], by_category=h["by_category"],
        skipped=h["skipped"], file_bytes=Path(path).stat().st_size,
        build_seconds=h["build_seconds"], built_at=h["built_at"], fingerprint=h["fingerprint"])


# -- building from list files, in another process ---------------------------------------------
def iter_file_sources(
    sources: Iterable[tuple[SourceInfo, Path, str]],
) -> Iterator[tuple[SourceInfo, Iterable[Entry]]]:
    """Parse list files one at a time (only one file's entries are alive at once)."""
    from blocklists.parse import parse_file  # the parsers' module; imported where it runs

    for info, path, fmt in sources:
        try:
            result = parse_file(Path(path), fmt)
        except (OSError, ValueError) as e:
            log.warning("list %s (%s) skipped: %s", info.name, path, e)
            continue
        yield info, result.entries


def build_file_from_lists(
    sources: Sequence[tuple[SourceInfo, Path, str]],
    path: Path,
    category_ages: Mapping[str, int],
    fingerprint: str = "",
) -> IndexStats:
    """Worker body: parse the list files and write the index file."""
    return build_index_file(iter_file_sources(sources), path, category_ages=dict(category_ages),
                            fingerprint=fingerprint)


def _mp_context() -> multiprocessing.context.BaseContext:
    # spawn: never fork a process that runs an event loop and threads, and unlike forkserver
    # leave no idle server process holding tens of MB between rebuilds (hours apart on a Pi)
    return multiprocessing.get_context("spawn")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the process that started it dies (kill -9
    of `nestguard lists sync` or of the server during "Sync now"), so no orphan keeps
    building. Linux: the kernel sends SIGKILL (prctl PR_SET_PDEATHSIG); everywhere, a
    watcher thread checks the parent every 0.2 s (also covers a parent that died before
    prctl ran)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


async def run_in_process(fn: Callable[..., T], *args: Any) -> T:
    """Run fn(*args) in a fresh worker process (spawn/forkserver), then let it exit.

    The event loop only awaits a future; the CPU work never holds its GIL. One short-lived
    process per job, so no idle worker keeps list-sized memory on a small board. The worker
    dies with this process (`_die_with_parent`).
    """
    loop = asyncio.get_running_loop()
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=_mp_context(),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        result = await loop.run_in_executor(pool, fn, *args)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    # joining the worker waits for its interpreter to tear down (~0.1 s after a big build):
    # off the event loop
    await asyncio.to_thread(pool.shutdown)
    return result


def pending_path(path: Path) -> Path:
    """Where a worker writes the index it builds for `path`. Only the parent, once the worker
    has finished, renames it into place (`install`): a worker whose parent died never
    replaces the index in force. Leftovers are removed at start."""
    path = Path(path)
    return path.with_name(path.name + ".new")


def install(path: Path) -> None:
    """The parent's commit: put the worker's finished index in place (atomic rename)."""
    os.replace(pending_path(path), path)


async def rebuild(
    sources: Sequence[tuple[SourceInfo, Path, str]],
    *,
    category_ages: Mapping[str, int],
    path: Path,
    fingerprint: str = "",
) -> CategoryIndex:
    """Parse and compile in a worker process into `path`, then mmap the result.

    The caller swaps it in (`live.value = await rebuild(...)`): queries see the old index
    or the new one, never a mix and never a pause. On failure the old file stays in place.
    """
    srcs = [(info, Path(p), fmt) for info, p, fmt in sources]
    stats = await run_in_process(
        build_file_from_lists, srcs, pending_path(path), dict(category_ages), fingerprint)
    install(path)
    log.info("index rebuilt: %d entries in %.1f s", stats.entries, stats.build_seconds)
    return CategoryIndex.load(Path(path))
