"""Feed sync against a real loopback HTTP server serving real lists from shared/data.

Every failure keeps the last good copy in force (the same lookups answer the same), keeps it
on disk, and a fresh FeedSync after a "restart" loads it again without network.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from blocklists.feed import Feed, FeedError, validate_feed_url
from blocklists.index import CategoryIndex, SourceInfo
from blocklists.sync import (
    FeedSync,
    GuardedResolver,
    UrlRules,
    explain_matches,
    status_lines,
    sync_main,
)
from policy.live import Live
from policy.model import Index
from policy.store import FeedStatus, Store

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("NESTGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))
GAMBLING = DATA / "ut1" / "blacklists" / "gambling" / "domains"  # 32k names, UT1
URLS = DATA / "ut1" / "blacklists" / "adult" / "urls"  # URL prefixes: garbage as "domains"
AGES = {"gambling": 18, "adult": 18, "bypass": 99, "education": 0}
LOOPBACK = UrlRules(allow_http=True, allow_loopback=True)


@pytest.fixture(scope="module")
def gambling_text() -> bytes:
    if not GAMBLING.exists():
        pytest.skip(f"shared data not found at {DATA} (set NESTGUARD_SHARED_DATA)")
    return GAMBLING.read_bytes()


def sample_names(text: bytes, k: int = 5) -> list[str]:
    """Some listed names, picked across the file."""
    lines = [ln for ln in text.decode().splitlines() if ln and not ln.startswith("#")]
    step = len(lines) // k
    return [lines[i * step].strip(".") for i in range(k)]


# -- the loopback feed server --------------------------------------------------------------
@dataclass
class Route:
    body: bytes = b""
    mode: str = "ok"  # ok | 404 | stall | redirect | gzip-encoded | endless
    location: str = ""


@dataclass
class FeedServer:
    url: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[tuple[str, int]] = field(default_factory=list)  # (path, status)

    def serve(self, path: str, body: bytes, mode: str = "ok", location: str = "") -> str:
        self.routes[path] = Route(body, mode, location)
        return self.url + path

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = self.routes.get(request.path)
        if route is None or route.mode == "404":
            self.hits.append((request.path, 404))
            raise web.HTTPNotFound()
        if route.mode == "redirect":
            self.hits.append((request.path, 302))
            raise web.HTTPFound(route.location)
        etag = '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            self.hits.append((request.path, 304))
            return web.Response(status=304, headers={"ETag": etag})
        self.hits.append((request.path, 200))
        if route.mode == "stall":
            resp = web.StreamResponse(headers={"ETag": etag})
            resp.content_length = len(route.body)
            await resp.prepare(request)
            await resp.write(route.body[: len(route.body) // 2])
            await asyncio.sleep(30)  # the client gives up first (read timeout)
            return resp
        if route.mode == "endless":  # chunked, no length, never ends (bounded for the test)
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(10_000):
                await resp.write(route.body)
            return resp
        resp = web.Response(body=route.body, headers={"ETag": etag})
        if route.mode == "gzip-encoded":
            resp.enable_compression(force=web.ContentCoding.gzip)
        return resp


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    fs = FeedServer()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", fs.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fs.url = f"http://127.0.0.1:{port}"
    yield fs
    await runner.cleanup()


@pytest.fixture
async def truncating_server() -> AsyncIterator[str]:
    """A raw server announcing Content-Length N, sending N/2 bytes, then closing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = GAMBLING.read_bytes()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        writer.write(body[: len(body) // 2])
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/list.txt"
    srv.close()
    await srv.wait_closed()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "nestguard.db")
    yield s
    s.close()


def make_sync(tmp_path: Path, store: Store, *feeds: Feed, **kw: object) -> FeedSync:
    return FeedSync(list(feeds), data_dir=tmp_path / "data", status_store=store,
                    category_ages=AGES, url_rules=lambda f: LOOPBACK,
                    read_timeout=0.5, timeout=20, **kw)  # type: ignore[arg-type]


def answers(index: Index, names: list[str]) -> list[tuple[str, ...]]:
    return [tuple(m.rule for m in index.lookup("www." + n)) for n in names]


async def good_first_sync(
    tmp_path: Path, store: Store, server: FeedServer, text: bytes, **feed_kw: object
) -> tuple[FeedSync, Feed, list[str]]:
    feed = Feed("ut1-gambling", server.serve("/gambling.txt", text), "domains",
                category="gambling", **feed_kw)  # type: ignore[arg-type]
    sync = make_sync(tmp_path, store, feed)
    await sync.load_from_disk()
    [st] = await sync.sync()
    assert st.error == "" and st.entries > 30_000, st
    names = sample_names(text)
    assert all(answers(sync.index, names)), "listed names must be blocked after the sync"
    return sync, feed, names


async def assert_last_good_kept(
    sync: FeedSync, store: Store, tmp_path: Path, feed: Feed, names: list[str], text: bytes,
    error: str,
) -> FeedStatus:
    before = answers(sync.index, names)
    [st] = await sync.sync(force=True)
    assert error in st.error, st.error
    assert st.last_success is not None and st.last_success < st.last_try  # type: ignore[operator]
    assert st.entries > 30_000  # the copy in force
    assert answers(sync.index, names) == before
    assert sync.list_path(feed.name).read_bytes() == text
    assert store.feed_status(feed.name) == st
    assert not [p for p in sync.lists_dir.iterdir() if p.name.startswith(".")], "temp files"
    restarted = make_sync(tmp_path, store, feed)
    assert answers(await restarted.load_from_disk(), names) == before
    return st


# -- the happy paths -----------------------------------------------------------------------
async def test_first_sync_then_304_rewrites_nothing(
    tmp_path: Path, store: Store, server: FeedServer, gambling_text: bytes
) -> None:
    sync, feed, names = await good_first_sync(tmp_path, store, server, gambling_text)
    path = sync.list_path(feed.name)
    assert path.read_bytes() == gambling_text
    stat1, index_stat1 = path.stat(), sync.index_path.stat()
    index1 = sync.index
    m = sync.index.lookup("www." + names[0])[0]
    assert (m.category, m.min_age, m.source) == ("gambling", 18, "ut1-gambling")
    assert m.line > 0

    [st] = await sync.sync(force=True)
    assert server.hits[-1] == ("/gambling.txt", 304)
    assert st.error == "" and st.entries == store.feed_status(feed.name).entries  # type: ignore[union-attr]
    assert path.stat().st_mtime_ns == stat1.st_mtime_ns and path.stat().st_ino == stat1.st_ino
    assert sync.index_path.stat().st_mtime_ns == index_stat1.st_mtime_ns  # no rebuild
    assert sync.index is index1

    # not due yet: no request at all
    hits = len(server.hits)
    assert await sync.sync() == []
    assert len(server.hits) == hits

    # a restart maps the compiled index file as it is: no rebuild, no network
    restarted = make_sync(tmp_path, store, feed)
    loaded = await restarted.load_from_disk()
    assert loaded.path == sync.index_path
    assert sync.index_path.stat().st_mtime_ns == index_stat1.st_mtime_ns
    assert answers(loaded, names) == answers(index1, names)
    assert len(server.hits) == hits


async def test_a_changed_feed_replaces_the_copy_and_the_index(
    tmp_path: Path, store: Store, server: FeedServer, gambling_text: bytes
) -> None:
    sync, feed, names = await good_first_sync(tmp_path, store, server, gambling_text)
    v2 = gambling_text + b"brand-new-casino.example\n"
    server.serve("/gambling.txt", v2)
    old = sync.index
    [st] = await sync.sync(force=True)
    assert st.error == "" and st.entries == old.stats().entries + 1
    assert sync.index is not old
    assert sync.index.lookup("a.brand-new-casino.example")
    assert old.lookup("a.brand-new-casino.example") == ()  # old snapshot unchanged
    assert sync.list_path(feed.name).read_bytes() == v2
    restarted = make_sync(tmp_path, store, feed)
    assert (await restarted.load_from_disk()).lookup("brand-new-casino.example")


async def test_gzip_bodies_by_encoding_and_by_magic_bytes(
    tmp_path: Path, store: Store, server: FeedServer, gambling_text: bytes
) -> None:
    encoded = Feed("enc", server.serve("/enc.txt", gambling_text, "gzip-encoded"), "domains",
                   category="gambling")
    gz = Feed("gz", server.serve("/list.txt.gz", gzip.compress(gambling_text)), "domains",
              category="gambling")
    sync = make_sync(tmp_path, store, encoded, gz)
    statuses = {st.name: st for st in await sync.sync()}
    assert statuses["enc"].error == statuses["gz"].error == ""
    assert statuses["enc"].entries == statuses["gz"].entries > 30_000
    assert sync.list_path("gz").read_bytes() == gambling_text  # kept decompressed
    name = sample_names(gambling_text)[1]
    assert {m.source for m in sync.index.lookup(name)} == {"enc", "gz"}


async def test_local_paths_and_extra_sources(
    tmp_path: Path, store: Store, gambling_text: bytes
) -> None:
    local = tmp_path / "mine.txt"
    local.write_bytes(gambling_text)
    bypass = REPO / "blocklists" / "data" / "bypass-builtin.txt"
    feed = Feed("local", str(local), "domains", category="gambling")
    sync = FeedSync([feed], data_dir=tmp_path / "data", status_store=store, category_ages=AGES,
                    extra_sources=[(SourceInfo("bypass-builtin", "bypass"), bypass, "domains")])
    await sync.load_from_disk()
    assert sync.index.lookup("dns.google"), "always-on sources load without any sync"
    [st] = await sync.sync()
    assert st.error == "" and st.entries > 30_000
    assert {m.source for m in sync.index.lookup("x.dns.google")} == {"bypass-builtin"}
    mtime = sync.list_path("local").stat().st_mtime_ns
    [st] = await sync.sync(force=True)  # same content: not modified, nothing rewritten
    assert st.error == "" and sync.list_path("local").stat().st_mtime_ns == mtime


# -- every failure keeps the last good copy ----------------------------------------------------
async def test_http_404(tmp_path: Path, store: Store, server: FeedServer,
                        gambling_text: bytes) -> None:
    sync, feed, names = await good_first_sync(tmp_path, store, server, gambling_text)
    server.serve("/gambling.txt", b"", "404")
    await assert_last_good_kept(sync, store, tmp_path, feed, names, gambling_text, "HTTP 404")


async def test_truncated_body(tmp_path: Path, store: Store, server: FeedServer,
                              truncating_server: str, gambling_text: bytes) -> None:
    sync, feed, names = await good_first_sync(tmp_path, store, server, gambling_text)
    server.serve("/gambling.txt", b"", "redirect", location=truncating_server)
    await assert_last_good_kept(sync, store, tmp_path, feed, names, gambling_text, "truncated")


async def test_a_stalled_server_times_out(tmp_path: Path, store: Store, server: FeedServer,
                                          gambling_text: bytes) -> None:
    sync, feed, names = await good_first_sync(tmp_path, store, server, gambling_text)
    server.serve("/gambling.txt", gambling_text + b"x.example\n", "stall")
    await assert_last_good_kept(sync, store, tmp_path, feed, names, gambling_text, "stalled")


async def test_garbage(tmp_path: Path, store: Store, server: FeedServer,
                       gambling_text: bytes) -> None:
    if not URLS.exists():
        pytest.skip("shared data incomplete")
    sync, feed, names = await good_first_sync(tmp_path, store, server, gambling_text)
    some = b"".join(gambling_text.splitlines(keepends=True)[:200])
    server.serve("/gambling.txt", some + URLS.read_bytes())  # + UT1 URL prefixes, not domains
    await assert_last_good_kept(sync, store, tmp_path, feed, names, gambling_text,
                                "mostly invalid")
    server.serve("/gambling.txt", bytes(range(256)) * 100)  # binary junk
    await assert_last_good_kept(sync, store, tmp_path, feed, names, gambling_text,
                                "no usable entries")


async def test_under_half_of_the_last_good_copy(
    tmp_path: Path, store: Store, server: FeedServer, gambling_text: bytes
) -> None:
    sync, feed, names = await good_first_sync(tmp_path, store, server, gambling_text)
    lines = gambling_text.splitlines(keepends=True)
    server.serve("/gambling.txt", b"".join(lines[: len(lines) // 3]))
    await assert_last_good_kept(sync, store, tmp_path, feed, names, gambling_text,
                                "under half of the last good copy")
    # the admin confirms the feed really shrank
    [st] = await sync.sync(force=True, allow_shrink=True)
    assert st.error == "" and st.entries < len(lines) // 3 + 1


async def test_size_cap_cuts_an_endless_body(
    tmp_path: Path, store: Store, server: FeedServer, gambling_text: bytes
) -> None:
    sync, feed, names = await good_first_sync(tmp_path, store, server, gambling_text,
                                              max_bytes=len(gambling_text) + 100)
    server.serve("/gambling.txt", gambling_text * 3)
    await assert_last_good_kept(sync, store, tmp_path, feed, names, gambling_text,
                                "larger than")


async def test_an_endless_stream_is_cut_at_the_cap(
    tmp_path: Path, store: Store, server: FeedServer, gambling_text: bytes
) -> None:
    sync, feed, names = await good_first_sync(tmp_path, store, server, gambling_text,
                                              max_bytes=2 * len(gambling_text))
    server.serve("/gambling.txt", gambling_text + b"more.example\n", "endless")
    await assert_last_good_kept(sync, store, tmp_path, feed, names, gambling_text,
                                "larger than")


async def test_wrong_sha256_pin(tmp_path: Path, store: Store, server: FeedServer,
                                gambling_text: bytes) -> None:
    pin = hashlib.sha256(gambling_text).hexdigest()
    sync, feed, names = await good_first_sync(tmp_path, store, server, gambling_text,
                                              sha256=pin)
    server.serve("/gambling.txt", gambling_text + b"evil-but-unpinned.example\n")
    await assert_last_good_kept(sync, store, tmp_path, feed, names, gambling_text,
                                "sha256 mismatch")


@pytest.mark.parametrize("encoding", ["raw", "base64"])
async def test_ed25519_signatures(tmp_path: Path, store: Store, server: FeedServer,
                                  gambling_text: bytes, encoding: str) -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()

    def sig(body: bytes) -> bytes:
        raw = key.sign(body)
        return raw if encoding == "raw" else base64.b64encode(raw) + b"\n"

    server.serve("/gambling.txt.sig", sig(gambling_text))
    sync, feed, names = await good_first_sync(
        tmp_path, store, server, gambling_text,
        signature=public.hex() if encoding == "raw" else base64.b64encode(public).decode())
    tampered = gambling_text + b"tampered.example\n"
    server.serve("/gambling.txt", tampered)  # the .sig still signs the old body
    await assert_last_good_kept(sync, store, tmp_path, feed, names, gambling_text,
                                "bad signature")
    server.serve("/gambling.txt.sig", sig(tampered))  # properly re-signed: accepted
    [st] = await sync.sync(force=True)
    assert st.error == "" and sync.index.lookup("tampered.example")


# -- URL rules -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "kw", "error"),
    [
        ("file:///etc/passwd", {}, "local files"),
        ("/etc/passwd", {}, "local files"),
        ("http://lists.example/a.txt", {}, "http:// is not allowed"),
        ("ftp://lists.example/a.txt", {}, "scheme 'ftp'"),
        ("gopher://lists.example/", {"allow_http": True}, "scheme 'gopher'"),
        ("https://127.0.0.1/a.txt", {}, "loopback"),
        ("https://localhost/a.txt", {}, "loopback"),
        ("https://[::1]/a.txt", {}, "loopback"),
        ("https://[::ffff:127.0.0.1]/a.txt", {}, "loopback"),
        ("https://192.168.1.1/a.txt", {"allow_loopback": True}, "private"),
        ("https://10.0.0.8/a.txt", {}, "private"),
        ("https://169.254.169.254/latest", {"allow_loopback": True}, "link-local"),
        ("https://user:pw@lists.example/a.txt", {}, "passwords"),
        ("https://lists.example/a\n.txt", {}, "control characters"),
        ("https:///a.txt", {}, "no host"),
    ],
)
def test_validate_feed_url_refuses(url: str, kw: dict[str, bool], error: str) -> None:
    with pytest.raises(FeedError, match=error):
        validate_feed_url(url, **kw)


@pytest.mark.parametrize(
    ("url", "kw"),
    [
        ("https://raw.githubusercontent.com/x/y/main/list.txt", {}),
        ("http://lists.example/a.txt", {"allow_http": True}),
        ("http://127.0.0.1:8080/a.txt", {"allow_http": True, "allow_loopback": True}),
    ],
)
def test_validate_feed_url_accepts(url: str, kw: dict[str, bool]) -> None:
    validate_feed_url(url, **kw)


@pytest.mark.parametrize("target", ["{other}",  # another server on 127.0.0.1
                                    "http://localhost:{port}/real.txt",
                                    "file:///etc/passwd",
                                    "http://169.254.169.254/latest/meta-data"])
async def test_redirects_into_local_targets_are_refused(
    tmp_path: Path, store: Store, server: FeedServer, gambling_text: bytes, target: str,
    truncating_server: str,
) -> None:
    port = server.url.rsplit(":", 1)[1]
    server.serve("/real.txt", gambling_text)
    location = target.format(port=port, other=truncating_server)
    url = server.serve("/feed.txt", b"", "redirect", location=location)
    # a web UI feed: only this exact test server is trusted, nothing it redirects to
    rules = UrlRules(allow_http=True, trusted_hosts=frozenset({f"127.0.0.1:{port}"}))
    feed = Feed("web-added", url, "domains", category="gambling")
    sync = FeedSync([feed], data_dir=tmp_path / "data", status_store=store, category_ages=AGES,
                    url_rules=lambda f: rules)
    [st] = await sync.sync()
    assert "redirect refused" in st.error, st.error
    assert ("/real.txt", 200) not in server.hits
    assert not sync.list_path("web-added").exists()


async def test_redirect_to_an_allowed_target_is_followed(
    tmp_path: Path, store: Store, server: FeedServer, gambling_text: bytes
) -> None:
    server.serve("/real.txt", gambling_text)
    feed = Feed("moved", server.serve("/old.txt", b"", "redirect", location="/real.txt"),
                "domains", category="gambling")
    sync = make_sync(tmp_path, store, feed)
    [st] = await sync.sync()
    assert st.error == "" and st.entries > 30_000


# -- background loop, trigger and CLI helpers --------------------------------------------------
async def test_run_swaps_the_live_index_and_syncs_on_trigger(
    tmp_path: Path, store: Store, server: FeedServer, gambling_text: bytes
) -> None:
    feed = Feed("ut1-gambling", server.serve("/gambling.txt", gambling_text), "domains",
                category="gambling", refresh=timedelta(hours=6))
    sync = make_sync(tmp_path, store, feed)
    live: Live[Index] = Live(await sync.load_from_disk())
    assert live.value.lookup("www." + sample_names(gambling_text)[0]) == ()
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(live, stop=stop))
    name = sample_names(gambling_text)[0]
    async with asyncio.timeout(30):
        while not live.value.lookup("www." + name):
            await asyncio.sleep(0.05)
    server.serve("/gambling.txt", gambling_text + b"now-listed.example\n")
    sync.trigger()  # "Sync now"
    async with asyncio.timeout(30):
        while not live.value.lookup("now-listed.example"):
            await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_cli_helpers(tmp_path: Path, store: Store, server: FeedServer,
                           gambling_text: bytes) -> None:
    feed = Feed("ut1-gambling", server.serve("/gambling.txt", gambling_text), "domains",
                category="gambling")
    statuses = await sync_main([feed], data_dir=tmp_path / "data", status_store=store,
                               category_ages=AGES)
    assert status_lines(statuses)[0].startswith("ut1-gambling: ok, ")
    with pytest.raises(FeedError, match="unknown feed: nope"):
        await make_sync(tmp_path, store, feed).sync(["nope"])
    idx = CategoryIndex.load(tmp_path / "data" / "index.bin")
    name = sample_names(gambling_text)[2]
    line_no = gambling_text.decode().splitlines().index(name) + 1
    assert explain_matches(idx, "WWW." + name.upper()) == [
        f"gambling (18+) from feed ut1-gambling line {line_no}: rule {name}"]
    assert explain_matches(idx, "not-listed.example") == []


async def test_guarded_resolver_refuses_names_pointing_home() -> None:
    """DNS rebinding: a host name that passed validation may later resolve to loopback."""
    resolver = GuardedResolver(UrlRules())
    try:
        with pytest.raises(OSError, match="resolves to .*loopback"):
            await resolver.resolve("localhost", 443)
        allowed = GuardedResolver(UrlRules(allow_loopback=True))
        assert await allowed.resolve("localhost", 443)
        await allowed.close()
    finally:
        await resolver.close()
