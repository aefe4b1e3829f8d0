"""Checks on a downloaded list before it may replace the last good copy, and the worker job.

- `check_sha256`: a feed's pin (hex digest of the exact body as served).
- `load_public_key`, `decode_signature`, `verify_signature`: Ed25519 (`cryptography`), the
  feed publishing its signature at URL + ".sig" (64 raw bytes, base64 or hex).
- `check_and_build(job)`: runs in a worker process (see `blocklists.index.run_in_process`):
  verifies and parses each new download, judges it against the last good copy, falls back to
  the last good copy when it fails, and compiles the index file from what passed. Only
  stdlib + our parsers are imported here, so the worker starts fast.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import logging
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from blocklists.feed import Feed, FeedError, ed25519_key, private_opener
from blocklists.index import IndexStats, SourceInfo, build_index_file
from blocklists.parse import Entry, ParseResult, parse_file

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
SIGNATURE_SIZE = 64
MAX_REJECTED_SHARE = 0.5  # more rejected than accepted lines: not this format / garbage
MIN_SHARE_OF_LAST = 0.5  # fewer than half the last good copy's entries: refuse


# -- pins and signatures ---------------------------------------------------------------------
def check_sha256(actual_hex: str, pin: str | None) -> None:
    if pin and actual_hex.lower() != pin.strip().lower():
        raise FeedError(f"sha256 mismatch: expected {pin.strip().lower()}, got {actual_hex}")


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key as blocklists.feed.ed25519_key reads it (hex, base64, DER)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(ed25519_key(text)))
    except ValueError as e:
        raise FeedError(f"signature key: {e}") from None


def decode_signature(data: bytes) -> bytes:
    """The 64-byte signature from a .sig file: raw bytes, base64 or hex text."""
    if len(data) == SIGNATURE_SIZE:
        return data
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    raw = _decode(text, SIGNATURE_SIZE) if text else None
    if raw is None:
        raise FeedError(f"signature file: expected {SIGNATURE_SIZE} bytes (raw, base64 or hex),"
                        f" got {len(data)} bytes")
    return raw


def _decode(text: str, size: int) -> bytes | None:
    if len(text) == 2 * size:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
    return raw if len(raw) == size else None


def verify_signature(body: Path, signature: bytes, public_key: str) -> None:
    """Raise FeedError unless `signature` is a valid Ed25519 signature of the file's bytes."""
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(public_key)
    try:
        key.verify(decode_signature(signature), body.read_bytes())
    except InvalidSignature:
        raise FeedError("bad signature: the list does not match the feed's .sig") from None


# -- the worker job --------------------------------------------------------------------------
_FEED = Feed(name="", url="", format="domains")  # a feed's limits, stated once on Feed


@dataclass(frozen=True, slots=True)
class Candidate:
    """A fresh download waiting for checks (all paths in data_dir/lists/)."""

    body: Path  # the exact bytes served (maybe gzip)
    text: Path  # where the checked, decompressed text is written
    final: Path  # where sync moves `text` once accepted (lists/<name>.txt)
    signature: bytes | None = None  # the .sig file's content when the feed is signed
    public_key: str | None = None
    last_entries: int = 0  # entries of the last good copy (0: none)
    max_entries: int = _FEED.max_entries
    max_bytes: int = _FEED.max_bytes
    # a list nestguard writes itself (the `local` list of reported sites): empty or shrunk
    # by an admin's decision is normal, not a broken download
    own: bool = False


@dataclass(frozen=True, slots=True)
class SourceJob:
    info: SourceInfo
    fmt: str
    path: Path | None  # the last good copy (or the always-on file); None: nothing yet
    candidate: Candidate | None = None


@dataclass(frozen=True, slots=True)
class BuildJob:
    sources: Sequence[SourceJob]
    category_ages: Mapping[str, int]
    index_path: Path


@dataclass(slots=True)
class SourceOutcome:
    name: str
    accepted: bool | None = None  # None: no candidate; True/False: the candidate's verdict
    error: str = ""  # why the candidate was refused (or why the source could not be read)
    entries: int = 0  # entries now in force for this source
    rejected: int = 0  # rejected lines of the copy now in force (or of the refused candidate)
    skipped: int = 0


@dataclass(slots=True)
class BuildResult:
    stats: IndexStats
    outcomes: dict[str, SourceOutcome] = field(default_factory=dict)


def judge(result: ParseResult, cand: Candidate) -> str:
    """Why a freshly parsed list must not replace the last good copy ('' if it may)."""
    n = len(result.entries)
    bad = result.rejected_count
    if n == 0 and not (cand.own and bad == 0):
        why = f"; {bad} lines rejected" if bad else ""
        return f"no usable entries (wrong format or garbage){why}"
    if bad > n * MAX_REJECTED_SHARE / (1 - MAX_REJECTED_SHARE):
        first = result.rejected[0] if result.rejected else None
        example = f" (line {first.line}: {first.reason})" if first else ""
        return f"mostly invalid: {bad} lines rejected, {n} accepted{example}"
    if n > cand.max_entries:
        return f"too many entries: {n} (limit {cand.max_entries})"
    if cand.last_entries and not cand.own and n < cand.last_entries * MIN_SHARE_OF_LAST:
        return (f"only {n} entries, under half of the last good copy's {cand.last_entries}"
                " (truncated upstream?)")
    return ""


def gunzip_to(src: Path, dst: Path, max_bytes: int) -> None:
    """Decompress a gzip body into dst, refusing more than max_bytes of output (gzip bombs)."""
    written = 0
    try:
        with gzip.open(src, "rb") as fin, open(dst, "wb", opener=private_opener) as fout:
            while chunk := fin.read(1 << 20):
                written += len(chunk)
                if written > max_bytes:
                    raise FeedError(f"list larger than {max_bytes} bytes once decompressed")
                fout.write(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise FeedError(f"bad gzip body: {e}") from e


def _candidate_text(cand: Candidate) -> None:
    if cand.signature is not None:
        if not cand.public_key:
            raise FeedError("signature given without a public key")
        verify_signature(cand.body, cand.signature, cand.public_key)
    with open(cand.body, "rb") as f:
        magic = f.read(2)
    if magic == GZIP_MAGIC:
        gunzip_to(cand.body, cand.text, cand.max_bytes)
    elif cand.body != cand.text:
        os.replace(cand.body, cand.text)


def _parse(path: Path, fmt: str, ages: Mapping[str, int]) -> ParseResult:
    if fmt == "rating":
        return parse_file(path, fmt, categories=ages.keys())
    return parse_file(path, fmt)


def check_and_build(job: BuildJob) -> BuildResult:
    """Worker body: judge candidates, fall back to last good copies, write the index file."""
    outcomes: dict[str, SourceOutcome] = {}
    used: list[tuple[SourceInfo, str, Path, Path]] = []  # info, fmt, final path, file read

    def sources() -> Iterator[tuple[SourceInfo, list[Entry]]]:
        for sj in job.sources:
            out = outcomes[sj.info.name] = SourceOutcome(sj.info.name)
            result: ParseResult | None = None
            if sj.candidate is not None:
                try:
                    _candidate_text(sj.candidate)
                    result = _parse(sj.candidate.text, sj.fmt, job.category_ages)
                    out.error = judge(result, sj.candidate)
                except (FeedError, OSError, ValueError) as e:
                    out.error = str(e)
                out.accepted = not out.error
                if not out.accepted:
                    if result is not None:
                        out.rejected = result.rejected_count
                    result = None
            if result is not None and sj.candidate is not None:
                used.append((sj.info, sj.fmt, sj.candidate.final, sj.candidate.text))
            if result is None and sj.path is not None:
                try:
                    result = _parse(sj.path, sj.fmt, job.category_ages)
                except (OSError, ValueError) as e:
                    log.warning("list %s: cannot read %s: %s", sj.info.name, sj.path, e)
                    out.error = out.error or f"cannot read {sj.path}: {e}"
                else:
                    used.append((sj.info, sj.fmt, sj.path, sj.path))
            if result is None:
                continue
            out.entries = len(result.entries)
            out.rejected = result.rejected_count
            out.skipped = result.skipped
            yield sj.info, result.entries

    def stamp() -> str:
        return fingerprint([(i, f, final, read) for i, f, final, read in used],
                           job.category_ages)

    stats = build_index_file(sources(), job.index_path, category_ages=job.category_ages,
                             fingerprint=stamp)
    return BuildResult(stats, outcomes)


def fingerprint(
    used: Sequence[tuple[SourceInfo, str, Path, Path]], category_ages: Mapping[str, int]
) -> str:
    """Identifies an index's inputs: sources, formats, files (path, size, mtime) and ages.

    `used` holds (source, format, final path, file actually read); a file keeps its size and
    mtime when sync renames it into place, so the stamp matches the files on disk afterwards.
    """
    h = hashlib.sha256(f"v1 {sorted(category_ages.items())!r}".encode())
    for info, fmt, final, read in used:
        try:
            st = os.stat(read)
            ident = f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"
        except OSError:
            ident = "missing"
        h.update(f"\n{info!r} {fmt} {final} {ident}".encode())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
