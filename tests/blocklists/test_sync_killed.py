"""A `nestguard lists sync` killed with SIGKILL mid-build: its build worker dies with it, the
index in force stays the last one its parent committed, and the leftovers go at the next start."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from blocklists.index import CategoryIndex

NESTGUARD = str(Path(sys.executable).parent / "nestguard")
BIG = 1_500_000  # names: a build of several seconds, long enough to kill it mid-way


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


async def _run(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        NESTGUARD, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
async def test_kill_9_mid_build_leaves_no_worker_and_the_old_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    feed = tmp_path / "adult.txt"
    feed.write_text("first.example\nsecond.example\n")
    cfg = tmp_path / "nestguard.yaml"
    cfg.write_text(
        f"data_dir: {data}\npolicy: {{timezone: UTC}}\n"
        "dns: {upstreams: ['127.0.0.1:5399']}\n"
        "lists: {rater: false, education_set: false}\n"
        f"feeds:\n  - {{name: adult, url: '{feed}', format: domains, category: adult}}\n"
    )
    await _run("lists", "sync", "--config", str(cfg))
    index = data / "index.bin"
    good = index.read_bytes()
    assert CategoryIndex.load(index).lookup("first.example")

    with open(feed, "w") as f:  # the next copy is big: its build takes seconds
        f.writelines(f"n{i}.big.example\n" for i in range(BIG))
    proc = await asyncio.create_subprocess_exec(
        NESTGUARD, "lists", "sync", "--config", str(cfg),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the worker has the candidate: it is building
            workers = [p for p in _children(proc.pid) if "spawn_main" in _cmdline(p)]
            if workers and list((data / "lists").glob(".adult.*.new")):
                break
            await asyncio.sleep(0.05)
        assert workers, "no build worker appeared"
        await asyncio.sleep(0.5)
        helpers = _children(proc.pid)  # the worker and multiprocessing's resource tracker
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in helpers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    left = [f"{p}: {_cmdline(p)}" for p in helpers if _alive(p)]
    for p in helpers:  # never leave them behind for the next test, whatever happened
        if _alive(p):
            os.kill(p, signal.SIGKILL)
    assert not left, f"still running after their parent was killed: {left}"
    # long enough for an orphan to have finished a build: the index in force is the old one
    await asyncio.sleep(3)
    assert index.read_bytes() == good

    # the next start removes what the killed run left, and the old lists are still in force
    await _run("lists", "check", "--config", str(cfg), "first.example")
    assert not list(data.glob("*.new")) and not list((data / "lists").glob("*.new"))
    assert not [p.name for p in (data / "lists").iterdir() if p.name.startswith(".")]
    assert CategoryIndex.load(index).lookup("first.example")


async def test_leftovers_are_removed_at_start(tmp_path: Path) -> None:
    from blocklists.feed import Feed
    from blocklists.sync import FeedSync
    from resolver.root import MemoryStatus

    lists = tmp_path / "lists"
    lists.mkdir()
    (tmp_path / "index.bin.new").write_bytes(b"half an index")
    (lists / ".adult.1234abcd.new").write_text("x.example\n")
    (lists / ".adult.5678abcd.part").write_text("x.example\n")
    fs = FeedSync(
        [Feed("adult", str(tmp_path / "none.txt"), "domains", "adult")],
        data_dir=tmp_path, status_store=MemoryStatus(), category_ages={"adult": 18},
    )
    await fs.load_from_disk()
    assert sorted(p.name for p in lists.iterdir()) == []
    assert not (tmp_path / "index.bin.new").exists()


async def test_lists_folder_is_private(tmp_path: Path) -> None:
    from blocklists.feed import Feed
    from blocklists.sync import FeedSync
    from resolver.root import MemoryStatus

    src = tmp_path / "src.txt"
    src.write_text("x.example\n")
    lists = tmp_path / "lists"
    lists.mkdir(mode=0o755)
    os.chmod(lists, 0o755)
    (lists / "old.txt").write_text("y.example\n")
    os.chmod(lists / "old.txt", 0o644)
    old_umask = os.umask(0o022)
    try:
        fs = FeedSync(
            [Feed("adult", str(src), "domains", "adult")],
            data_dir=tmp_path, status_store=MemoryStatus(), category_ages={"adult": 18},
        )
        await fs.sync(force=True)
    finally:
        os.umask(old_umask)
    assert lists.stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in lists.iterdir()}
    assert modes and set(modes.values()) == {0o600}, modes
    assert (tmp_path / "index.bin").stat().st_mode & 0o777 == 0o600
