"""Feed sync: download lists (conditional GET, bounded), check them, keep the last good copy,
rebuild the index in a worker process and hand it over whole.

    sync = FeedSync(feeds, data_dir=..., status_store=store, category_ages=ages,
                    extra_sources=[(SourceInfo("bypass-builtin", "bypass"), path, "domains")])
    live.value = await sync.load_from_disk()          # startup: last good copies, no network
    tg.create_task(sync.run(live, stop=stop))         # background: each feed on its schedule
    sync.trigger()                                    # the UI's "Sync now"

On disk (data_dir/lists/): `<name>.txt` is the last good copy (decompressed text) and
`<name>.json` its sidecar (etag, last_modified, sha256 of the body as served, entries,
fetched, url). A download goes to a temp file beside them and replaces the copy (os.replace)
only once it parsed and passed every check; data_dir/index.bin is the compiled index.

URL rules (blocklists/feed.py): operator YAML feeds are trusted (any scheme incl. local paths).
Feeds added in the web UI/API are checked with `feed_from_dict` when added, and fetched
under `UrlRules()`: https only, every redirect hop checked, and the connection refused when
the host resolves to a loopback, private or link-local address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from blocklists.feed import (
    TRUSTED,
    Feed,
    FeedError,
    UrlRules,
    address_problem,
    check_url,
    make_private_dir,
    private_opener,
)
from blocklists.index import (
    CategoryIndex,
    SourceInfo,
    install,
    pending_path,
    run_in_process,
)
from blocklists.local import LOCAL_FEED
from blocklists.verify import (
    BuildJob,
    BuildResult,
    Candidate,
    SourceJob,
    check_and_build,
    check_sha256,
    fingerprint,
)
from policy.decide import ALLOWLIST_CATEGORIES, GAMES_CATEGORIES
from policy.live import Live
from policy.model import NEVER, SECURITY_CATEGORIES, Index, Match
from policy.names import canonical_name
from policy.store import FeedStatus

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MAX_SIG_BYTES = 4096
RETRY_AFTER = timedelta(minutes=15)  # after a failure, retry sooner than `refresh`
CHUNK = 64 * 1024
USER_AGENT = "nestguard-feed-sync/0.1"


class StatusStore(Protocol):
    """The three Store methods sync uses (policy/store/)."""

    def save_feed_status(self, status: FeedStatus) -> None: ...
    def feed_status(self, name: str) -> FeedStatus | None: ...
    def feed_statuses(self) -> list[FeedStatus]: ...


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default, then drops addresses the rules forbid (DNS rebinding:
    a public-looking name may point at 127.0.0.1 or the router)."""

    def __init__(self, rules: UrlRules) -> None:
        self._rules = rules
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host in self._rules.trusted_hosts or f"{host}:{port}" in self._rules.trusted_hosts:
            return results
        ok = [r for r in results
              if not address_problem(ipaddress.ip_address(r["host"]), self._rules)]
        if not ok:
            problem = address_problem(ipaddress.ip_address(results[0]["host"]), self._rules)
            raise OSError(f"{host} resolves to {results[0]['host']}, {problem}")
        return ok

    async def close(self) -> None:
        await self._inner.close()


# -- downloads -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sidecar:
    etag: str = ""
    last_modified: str = ""
    sha256: str = ""
    entries: int = 0
    rejected: int = 0
    fetched: str = ""
    url: str = ""

    @classmethod
    def read(cls, path: Path) -> Sidecar | None:
        try:
            data = json.loads(path.read_text("utf-8"))
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError):
            return None

    def write(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "w", encoding="utf-8", opener=private_opener) as f:
            f.write(json.dumps({k: getattr(self, k) for k in self.__dataclass_fields__},
                               indent=1))
        os.replace(tmp, path)


@dataclass(slots=True)
class _Fetch:
    """One feed's download: not modified, a candidate body, or an error."""

    feed: Feed
    not_modified: bool = False
    body: Path | None = None
    etag: str = ""
    last_modified: str = ""
    sha256: str = ""
    signature: bytes | None = None
    error: str = ""


@dataclass(slots=True)
class _Prev:
    status: FeedStatus | None
    sidecar: Sidecar | None
    has_copy: bool


class FeedSync:
    """Keeps data_dir/lists/ and the compiled index up to date. See the module docstring.

    url_rules(feed) says what each feed's URL may reach (default: TRUSTED, the operator's
    YAML); the wiring passes `UrlRules()` for feeds added in the web UI/API.
    """

    def __init__(
        self,
        feeds: Sequence[Feed],
        *,
        data_dir: Path,
        status_store: StatusStore,
        category_ages: Mapping[str, int],
        extra_sources: Iterable[tuple[SourceInfo, Path, str]] = (),
        url_rules: Callable[[Feed], UrlRules] | None = None,
        timeout: float = 300.0,
        read_timeout: float = 30.0,
        concurrency: int = 4,
    ) -> None:
        names = [f.name for f in feeds]
        if len(set(names)) != len(names):
            raise FeedError("two feeds have the same name")
        self.feeds = [f for f in feeds if f.enabled]
        self.data_dir = Path(data_dir)
        self.status_store = status_store
        self.category_ages = dict(category_ages)
        self.extra_sources = [(info, Path(p), fmt) for info, p, fmt in extra_sources]
        self.url_rules = url_rules or (lambda feed: TRUSTED)
        self.timeout = timeout
        self.read_timeout = read_timeout
        self.concurrency = concurrency
        self._index = CategoryIndex.empty()
        self._lock = asyncio.Lock()
        self._nudge = asyncio.Event()
        self._nudged: set[str] | None = None
        self._force_all = False
        make_private_dir(self.lists_dir)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def lists_dir(self) -> Path:
        return self.data_dir / "lists"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.bin"

    def list_path(self, name: str) -> Path:
        return self.lists_dir / f"{name}.txt"

    def sidecar_path(self, name: str) -> Path:
        return self.lists_dir / f"{name}.json"

    @property
    def index(self) -> CategoryIndex:
        """The index now in force (swapped whole after each rebuild)."""
        return self._index

    # -- startup -------------------------------------------------------------------------------
    def _disk_sources(self) -> list[SourceJob]:
        jobs = []
        for feed in self.feeds:
            path = self.list_path(feed.name)
            if path.exists():
                jobs.append(SourceJob(_info(feed), feed.format, path))
        jobs += [SourceJob(info, fmt, path) for info, path, fmt in self.extra_sources]
        return jobs

    async def load_from_disk(self) -> CategoryIndex:
        """Startup: the index of the last good copies, without network. Reuses the compiled
        index file when its inputs are unchanged (instant), else rebuilds it in a worker."""
        async with self._lock:
            self._clean_temp_files()
            jobs = self._disk_sources()
            stamp = fingerprint([(j.info, j.fmt, j.path, j.path) for j in jobs if j.path],
                                self.category_ages)
            old: CategoryIndex | None = None
            with contextlib.suppress(FeedError):
                old = CategoryIndex.load(self.index_path)
            if old is not None and old.fingerprint == stamp:
                log.info("index loaded from %s: %d entries", self.index_path, len(old))
                self._index = old
                return old
            try:
                await self._build(jobs)
            except Exception:
                # never run unfiltered: a stale index beats none
                log.exception("cannot rebuild the index from the lists on disk")
                if old is not None:
                    self._index = old
            return self._index

    def _clean_temp_files(self) -> None:
        """Leftovers of a sync that was killed: downloads and candidates (hidden files in
        lists/) and an index a worker built that was never installed (`index.bin.new`)."""
        leftovers = [*self.lists_dir.glob(".*"), *self.lists_dir.glob("*.new")]
        leftovers += [pending_path(self.index_path), *self.data_dir.glob(".index.bin.*.tmp")]
        for p in leftovers:
            with contextlib.suppress(OSError):
                p.unlink()
                log.info("removed %s, left by an interrupted list update", p.name)

    async def _build(self, jobs: Sequence[SourceJob]) -> BuildResult:
        # the worker writes index.bin.new; this process, alive and done waiting, installs it
        job = BuildJob(list(jobs), dict(self.category_ages), pending_path(self.index_path))
        result: BuildResult = await run_in_process(check_and_build, job)
        install(self.index_path)
        self._index = CategoryIndex.load(self.index_path)
        log.info("index built: %d entries from %d sources in %.1f s", result.stats.entries,
                 len(result.stats.by_source), result.stats.build_seconds)
        return result

    async def drop(self, name: str, *, delete: bool) -> None:
        """Stop using feed `name` (removed or turned off in the web UI): rebuild the index
        from the other lists on disk; with `delete`, remove its copy too."""
        async with self._lock:
            self.feeds = [f for f in self.feeds if f.name != name]
            if delete:
                for p in (self.list_path(name), self.sidecar_path(name)):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            await self._build(self._disk_sources())

    async def restore(self, feed: Feed) -> None:
        """Use feed (turned on again) now: its last copy on disk, if any, joins the index."""
        async with self._lock:
            self.feeds = [*(f for f in self.feeds if f.name != feed.name), feed]
            if self.list_path(feed.name).exists():
                await self._build(self._disk_sources())

    # -- sync ----------------------------------------------------------------------------------
    async def sync(
        self,
        names: Collection[str] | None = None,
        *,
        force: bool = False,
        allow_shrink: bool = False,
    ) -> list[FeedStatus]:
        """Download the feeds that are due (or the named ones, or all with force), check them,
        and rebuild the index once if any list changed. Returns the new status of each feed
        tried. A failed feed keeps its last good copy in force; its status says why.

        allow_shrink: accept a copy with under half the entries of the last good one (the
        admin confirmed the feed really shrank; e.g. `nestguard lists sync NAME --shrink`).
        """
        async with self._lock:
            by_name = {f.name: f for f in self.feeds}
            if names is not None:
                unknown = sorted(set(names) - by_name.keys())
                if unknown:
                    raise FeedError(f"unknown feed: {', '.join(unknown)}")
            now = _now()
            prev = {f.name: await self._prev(f) for f in self.feeds}
            if names is not None:
                due = [by_name[n] for n in by_name if n in names]
            else:
                due = [f for f in self.feeds if force or self._due(f, prev[f.name], now)]
            if not due:
                return []
            sem = asyncio.Semaphore(self.concurrency)

            async def one(feed: Feed) -> _Fetch:
                async with sem:
                    return await self._fetch(feed, prev[feed.name])

            fetches = await asyncio.gather(*(one(f) for f in due))
            statuses = await self._apply(fetches, prev, now, allow_shrink=allow_shrink)
            for st in statuses:
                await asyncio.to_thread(self.status_store.save_feed_status, st)
            return statuses

    async def _prev(self, feed: Feed) -> _Prev:
        status = await asyncio.to_thread(self.status_store.feed_status, feed.name)
        return _Prev(status, Sidecar.read(self.sidecar_path(feed.name)),
                     self.list_path(feed.name).exists())

    def _due(self, feed: Feed, prev: _Prev, now: datetime) -> bool:
        st = prev.status
        if st is None or st.last_try is None or not prev.has_copy and not st.error:
            return True
        wait = min(feed.refresh, RETRY_AFTER) if st.error else feed.refresh
        return now - st.last_try >= wait

    def next_due(self, now: datetime | None = None) -> datetime | None:
        """When the next feed falls due (from the status store), None without feeds."""
        now = now or _now()
        times = []
        for feed in self.feeds:
            st = self.status_store.feed_status(feed.name)
            if st is None or st.last_try is None:
                return now
            wait = min(feed.refresh, RETRY_AFTER) if st.error else feed.refresh
            times.append(st.last_try + wait)
        return min(times, default=None)

    async def _apply(
        self, fetches: Sequence[_Fetch], prev: Mapping[str, _Prev], now: datetime, *,
        allow_shrink: bool = False,
    ) -> list[FeedStatus]:
        statuses: dict[str, FeedStatus] = {}
        candidates: dict[str, Candidate] = {}
        for f in fetches:
            p = prev[f.feed.name]
            if f.error:
                log.warning("feed %s: %s (last good copy stays)", f.feed.name, f.error)
                statuses[f.feed.name] = _failed(f.feed.name, p, now, f.error)
            elif f.not_modified:
                statuses[f.feed.name] = _unchanged(f.feed.name, p, now)
            else:
                assert f.body is not None
                candidates[f.feed.name] = Candidate(
                    body=f.body,
                    text=f.body.with_suffix(".new"),
                    final=self.list_path(f.feed.name),
                    signature=f.signature,
                    public_key=f.feed.signature,
                    last_entries=(p.sidecar.entries if p.sidecar and p.has_copy
                                  and p.sidecar.url == f.feed.url and not allow_shrink else 0),
                    max_entries=f.feed.max_entries,
                    max_bytes=f.feed.max_bytes,
                    own=f.feed.name == LOCAL_FEED,
                )
        if not candidates:
            return list(statuses.values())
        jobs = []
        for feed in self.feeds:
            path = self.list_path(feed.name)
            jobs.append(SourceJob(_info(feed), feed.format, path if path.exists() else None,
                                  candidates.get(feed.name)))
        jobs += [SourceJob(info, fmt, path) for info, path, fmt in self.extra_sources]
        fetched = {f.feed.name: f for f in fetches}
        try:
            result = await self._build(jobs)
            for name, cand in candidates.items():
                statuses[name] = self._commit(fetched[name], cand, result, prev[name], now)
        except Exception as e:  # a worker crash must not take the sync loop down
            log.exception("index rebuild failed; the current index stays")
            for name in candidates:
                statuses[name] = _failed(name, prev[name], now, f"index rebuild failed: {e}")
            return list(statuses.values())
        finally:
            for c in candidates.values():
                for leftover in (c.body, c.text):
                    if leftover != c.final:
                        with contextlib.suppress(OSError):
                            leftover.unlink()  # after a commit below, only refused ones remain
        return list(statuses.values())

    def _commit(
        self, f: _Fetch, cand: Candidate, result: BuildResult, p: _Prev, now: datetime
    ) -> FeedStatus:
        """Move an accepted download into place (with its sidecar), or report the refusal."""
        name = f.feed.name
        out = result.outcomes.get(name)
        if out is None or not out.accepted:
            error = out.error if out else "not checked"
            log.warning("feed %s refused: %s (last good copy stays)", name, error)
            return _failed(name, p, now, error)
        os.replace(cand.text, cand.final)
        Sidecar(etag=f.etag, last_modified=f.last_modified, sha256=f.sha256,
                entries=out.entries, rejected=out.rejected, fetched=now.isoformat(),
                url=f.feed.url).write(self.sidecar_path(name))
        log.info("feed %s updated: %d entries, %d lines rejected", name, out.entries,
                 out.rejected)
        return FeedStatus(name, last_try=now, last_success=now, entries=out.entries,
                          rejected=out.rejected, etag=f.etag, last_modified=f.last_modified,
                          sha256=f.sha256)

    async def _fetch(self, feed: Feed, prev: _Prev) -> _Fetch:
        rules = self.url_rules(feed)
        try:
            check_url(feed.url, rules)
            if "://" not in feed.url or feed.url.lower().startswith("file:"):
                return await asyncio.to_thread(self._read_local, feed, prev)
            return await self._fetch_http(feed, prev, rules)
        except FeedError as e:
            return _Fetch(feed, error=str(e))
        except aiohttp.ServerTimeoutError:
            return _Fetch(feed, error=f"download stalled: no data for {self.read_timeout:g} s")
        except TimeoutError:
            return _Fetch(feed, error=f"download timed out after {self.timeout:g} s")
        except aiohttp.ClientPayloadError as e:
            return _Fetch(feed, error=f"truncated download (connection cut): {e}")
        except aiohttp.ClientError as e:
            return _Fetch(feed, error=f"download failed: {e}")
        except OSError as e:
            return _Fetch(feed, error=f"cannot read the list: {e}")

    def _part(self, name: str) -> Path:
        return self.lists_dir / f".{name}.{secrets.token_hex(4)}.part"

    def _read_local(self, feed: Feed, prev: _Prev) -> _Fetch:
        url = feed.url
        src = Path(unquote(urlsplit(url).path)) if url.lower().startswith("file:") else Path(url)
        part = self._part(feed.name)
        h = hashlib.sha256()
        n = 0
        try:
            with open(src, "rb") as fin, open(part, "wb", opener=private_opener) as fout:
                while chunk := fin.read(1 << 20):
                    n += len(chunk)
                    if n > feed.max_bytes:
                        raise FeedError(f"list larger than {feed.max_bytes} bytes")
                    h.update(chunk)
                    fout.write(chunk)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        digest = h.hexdigest()
        if prev.has_copy and prev.sidecar and prev.sidecar.sha256 == digest \
                and prev.sidecar.url == feed.url:
            part.unlink(missing_ok=True)
            return _Fetch(feed, not_modified=True)
        try:
            check_sha256(digest, feed.sha256)
            sig = None
            if feed.signature:
                sig_path = Path(str(src) + ".sig")
                sig = sig_path.read_bytes()[: MAX_SIG_BYTES + 1]
                if len(sig) > MAX_SIG_BYTES:
                    raise FeedError("signature file too large")
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return _Fetch(feed, body=part, sha256=digest, signature=sig)

    def _session(self, rules: UrlRules) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(30, self.timeout),
                                        sock_read=self.read_timeout)
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(rules), limit=4)
        return aiohttp.ClientSession(timeout=timeout, connector=connector,
                                     headers={"User-Agent": USER_AGENT})

    async def _fetch_http(self, feed: Feed, prev: _Prev, rules: UrlRules) -> _Fetch:
        headers = {}
        sc = prev.sidecar
        if prev.has_copy and sc is not None and sc.url == feed.url:
            if sc.etag:
                headers["If-None-Match"] = sc.etag
            if sc.last_modified:
                headers["If-Modified-Since"] = sc.last_modified
        async with self._session(rules) as session:
            part = self._part(feed.name)
            try:
                async with _get(session, feed.url, rules, headers) as resp:
                    if resp.status == 304:
                        if not prev.has_copy:
                            raise FeedError("HTTP 304 but no copy on disk")
                        return _Fetch(feed, not_modified=True)
                    if resp.status != 200:
                        raise FeedError(f"HTTP {resp.status} {resp.reason or ''}".rstrip())
                    digest = await _stream(resp, part, feed.max_bytes)
                    etag = resp.headers.get("ETag", "")
                    last_modified = resp.headers.get("Last-Modified", "")
                check_sha256(digest, feed.sha256)
                sig = None
                if feed.signature:
                    sig = await _small(session, feed.url + ".sig", rules)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
        return _Fetch(feed, body=part, etag=etag, last_modified=last_modified, sha256=digest,
                      signature=sig)

    # -- background ----------------------------------------------------------------------------
    def trigger(self, names: Collection[str] | None = None) -> None:
        """Ask the running loop to sync now: the named feeds, or all of them (forced)."""
        if names is None:
            self._nudged = None
            self._force_all = True
        elif not self._force_all:
            self._nudged = (self._nudged or set()) | set(names)
        self._nudge.set()

    async def run(
        self,
        live: Live[Index],
        *,
        stop: asyncio.Event,
        wrap: Callable[[CategoryIndex], Index] = lambda index: index,
    ) -> None:
        """Background loop: sync feeds as they fall due or on `trigger()`, swapping
        `live.value = wrap(new_index)` after each rebuild. Returns when `stop` is set."""
        current = self._index
        while not stop.is_set():
            force = self._force_all
            names = self._nudged
            self._nudge.clear()
            self._nudged = None
            self._force_all = False
            try:
                await self.sync(names, force=force)
            except FeedError as e:
                log.warning("feed sync: %s", e)
            except Exception:  # the loop must outlive any one bad sync
                log.exception("feed sync failed")
            if self._index is not current:
                current = self._index
                live.value = wrap(current)
            due = await asyncio.to_thread(self.next_due)
            delay = 3600.0 if due is None else max((due - _now()).total_seconds(), 1.0)
            await _wait_any(stop, self._nudge, timeout=delay)


# -- helpers ---------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(UTC)


def _info(feed: Feed) -> SourceInfo:
    return SourceInfo(feed.name, feed.category, feed.min_age)


def _failed(name: str, p: _Prev, now: datetime, error: str) -> FeedStatus:
    base = p.status or FeedStatus(name)
    sc = p.sidecar if p.has_copy else None
    return replace(base, name=name, last_try=now, error=error,
                   entries=sc.entries if sc else 0, rejected=sc.rejected if sc else 0,
                   etag=sc.etag if sc else "", last_modified=sc.last_modified if sc else "",
                   sha256=sc.sha256 if sc else "")


def _unchanged(name: str, p: _Prev, now: datetime) -> FeedStatus:
    sc = p.sidecar or Sidecar()
    return FeedStatus(name, last_try=now, last_success=now, entries=sc.entries,
                      rejected=sc.rejected, etag=sc.etag, last_modified=sc.last_modified,
                      sha256=sc.sha256)


class _get:
    """GET following redirects by hand: each hop's URL is checked against the rules."""

    def __init__(self, session: aiohttp.ClientSession, url: str, rules: UrlRules,
                 headers: Mapping[str, str]) -> None:
        self._session, self._url, self._rules, self._headers = session, url, rules, headers
        self._resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        url = self._url
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, self._rules)
            if "://" not in url or url.lower().startswith("file:"):
                raise FeedError("redirect to a local file refused")
            resp = await self._session.get(url, headers=self._headers, allow_redirects=False)
            if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                location = resp.headers["Location"]
                resp.release()
                url = urljoin(url, location)
                try:
                    check_url(url, self._rules)
                except FeedError as e:
                    raise FeedError(f"redirect refused: {e}") from None
                continue
            self._resp = resp
            return resp
        raise FeedError(f"more than {MAX_REDIRECTS} redirects")

    async def __aexit__(self, *exc: object) -> None:
        if self._resp is not None:
            self._resp.release()


async def _stream(resp: aiohttp.ClientResponse, part: Path, max_bytes: int) -> str:
    """Body -> part file, at most max_bytes (after any Content-Encoding); returns sha256."""
    h = hashlib.sha256()
    n = 0
    with open(part, "wb", opener=private_opener) as f:
        async for chunk in resp.content.iter_chunked(CHUNK):
            n += len(chunk)
            if n > max_bytes:
                raise FeedError(f"list larger than {max_bytes} bytes: download stopped")
            h.update(chunk)
            f.write(chunk)
    length = resp.content_length
    if length is not None and "Content-Encoding" not in resp.headers and n != length:
        raise FeedError(f"truncated download: {n} of {length} bytes")
    return h.hexdigest()


async def _small(session: aiohttp.ClientSession, url: str, rules: UrlRules) -> bytes:
    async with _get(session, url, rules, {}) as resp:
        if resp.status != 200:
            raise FeedError(f"signature {url}: HTTP {resp.status}")
        data = await resp.content.read(MAX_SIG_BYTES + 1)
        if len(data) > MAX_SIG_BYTES:
            raise FeedError(f"signature {url}: larger than {MAX_SIG_BYTES} bytes")
        return data


async def _wait_any(stop: asyncio.Event, nudge: asyncio.Event, *, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(nudge.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


# -- CLI helpers -----------------------------------------------------------------------------
def explain_matches(index: Index, qname: str) -> list[str]:
    """Human lines for `nestguard lists check NAME`, most specific rule first, e.g.
    'gambling (18+) from feed ut1-gambling line 1234: rule casino.example'."""
    try:
        name = canonical_name(qname)
    except ValueError as e:
        raise FeedError(f"{qname!r}: {e}") from None
    lines = []
    matches = index.lookup(name)
    for m in matches:
        age = "never" if m.min_age >= NEVER else f"{m.min_age}+"
        head = f"allowed by exception: {m.category}" if m.exception else m.category
        where = f"from feed {m.source}" if m.source != "name-rater" else "from the name rater"
        if m.line:
            where += f" line {m.line}"
        tail = f" (confidence {m.confidence:.2f})" if m.confidence < 1.0 else ""
        lines.append(f"{head} ({age}) {where}: rule {m.rule}{tail}")
    lines += _learning_note(matches)
    return lines


def _learning_note(matches: Sequence[Match]) -> list[str]:
    """The summary line when the allow set lets a games-listed name through as a learning
    site (policy/decide.py step 9), naming the allow-set entry."""
    allow = next(
        (m for m in matches if m.exception and m.category in ALLOWLIST_CATEGORIES), None
    )
    game = next(
        (m for m in matches if not m.exception and m.category in GAMES_CATEGORIES), None
    )
    if allow is None or game is None:
        return []
    where = f"{allow.source} line {allow.line}" if allow.line else allow.source
    if any(m.category in SECURITY_CATEGORIES and not m.exception for m in matches):
        return [f"=> a learning site by {where} (entry {allow.rule}), but a security list"
                f" matches: blocked for everyone"]
    return [f"=> let through as a learning site by {where} (entry {allow.rule}) when games are"
            f" blocked, for children whose 'learning games stay open' switch is on (the default)"]


def status_lines(statuses: Iterable[FeedStatus]) -> list[str]:
    """One line per feed for `nestguard lists sync`: entries, or the error in force."""
    out = []
    for st in statuses:
        if st.error:
            out.append(f"{st.name}: FAILED: {st.error} (keeping {st.entries} entries)")
        else:
            out.append(f"{st.name}: ok, {st.entries} entries, {st.rejected} lines rejected")
    return out


async def sync_main(
    feeds: Sequence[Feed],
    *,
    data_dir: Path,
    status_store: StatusStore,
    category_ages: Mapping[str, int],
    extra_sources: Iterable[tuple[SourceInfo, Path, str]] = (),
    names: Collection[str] | None = None,
) -> list[FeedStatus]:
    """`nestguard lists sync [NAME...]`: download now (forced) and rebuild the index file.
    A running server picks the new lists up on its next sync (or restart)."""
    fs = FeedSync(feeds, data_dir=data_dir, status_store=status_store,
                  category_ages=category_ages, extra_sources=extra_sources)
    await fs.load_from_disk()
    return await fs.sync(names, force=True)


async def check_main(
    feeds: Sequence[Feed],
    qname: str,
    *,
    data_dir: Path,
    status_store: StatusStore,
    category_ages: Mapping[str, int],
    extra_sources: Iterable[tuple[SourceInfo, Path, str]] = (),
) -> list[str]:
    """`nestguard lists check NAME`: which lists on disk match NAME (no network)."""
    fs = FeedSync(feeds, data_dir=data_dir, status_store=status_store,
                  category_ages=category_ages, extra_sources=extra_sources)
    return explain_matches(await fs.load_from_disk(), qname)


