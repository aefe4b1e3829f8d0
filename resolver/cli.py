"""The `nestguard` subcommands besides `serve`: children, devices, explain, lists.

Each takes `--config FILE` as `serve` does. Wrong input (unknown child, bad date, bad address)
exits with status 2 and one clear line on stderr. Writes go to the same SQLite store the running
server reads; it picks them up within a second (its reload loop checks the store's revision).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from policy.model import ADULTS, Action, PolicyError
from policy.names import BadName, device_identifier

if TYPE_CHECKING:
    from policy.store import Store
    from resolver.config import Config
    from resolver.household import Household

T = TypeVar("T")
Sub = argparse._SubParsersAction  # type: ignore[type-arg]


class UsageError(Exception):
    """Bad input on the command line: printed as one line, exit status 2."""


def _config(args: argparse.Namespace) -> Config:
    from resolver.config import load_config

    return load_config(args.config)


def _with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", type=Path, default=None, help="YAML config file")
    return p


def _run(
    fn: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    """Run an async command; turn expected errors into one line and exit status 2."""

    def wrapper(args: argparse.Namespace) -> int:
        from blocklists.feed import FeedError
        from resolver.config import ConfigError

        try:
            return asyncio.run(fn(args))
        except (UsageError, ConfigError, PolicyError, FeedError, ValueError) as e:
            print(f"nestguard: {e}", file=sys.stderr)
            return 2

    return wrapper


def parse_born(text: str) -> date:
    try:
        born = date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--born {text!r}: not a date, use YYYY-MM-DD") from None
    if born > date.today():
        raise UsageError(f"--born {text}: in the future")
    if born.year < date.today().year - 120:
        raise UsageError(f"--born {text}: more than 120 years ago")
    return born


def parse_identifier(text: str) -> str:
    """A device identifier (IP, IPv6 /64, MAC in any usual spelling), by
    policy.names.device_identifier, as the web UI and the store read it."""
    try:
        return device_identifier(text)
    except BadName as e:
        raise UsageError(f"{text!r}: {e}") from None


# -- child ----------------------------------------------------------------------------------
async def _child_add(args: argparse.Namespace) -> int:
    from resolver.household import open_household

    born = parse_born(args.born)
    name = args.name.strip()
    if not name or len(name) > 64 or any(c in name for c in "\r\n\t"):
        raise UsageError("the child's name must be 1 to 64 characters on one line")
    async with open_household(_config(args), background=False) as hh:
        store = _store(hh)
        child = await asyncio.to_thread(store.add_child, name, born, lang=args.lang)
        age = child.age_on(hh.now().date())
    print(f"added {child.name} (born {child.born}, {age} years old), id {child.id}")
    return 0


async def _child_list(args: argparse.Namespace) -> int:
    from resolver.household import open_household

    async with open_household(_config(args), background=False) as hh:
        today = hh.now().date()
        for c in await asyncio.to_thread(_store(hh).children):
            print(f"{c.id}\t{c.name}\tborn {c.born}\t{c.age_on(today)} years")
    return 0


# -- device ---------------------------------------------------------------------------------
async def _device_set(args: argparse.Namespace) -> int:
    from resolver.household import open_household

    identifier = parse_identifier(args.address)
    async with open_household(_config(args), background=False) as hh:
        store = _store(hh)
        owner: int | str
        if args.adults:
            owner = ADULTS
        else:
            owner = (await asyncio.to_thread(store.child_by_name, args.child)).id
        # one transaction: creates the device, or sets its owner (and name) if known
        device = await asyncio.to_thread(
            store.upsert_device, identifier, name=args.name, owner=owner
        )
    whose = "the adults" if owner == ADULTS else args.child
    label = identifier if device.name in ("", identifier) else f"{device.name} ({identifier})"
    print(f"device {label} now belongs to {whose}")
    return 0


async def _device_list(args: argparse.Namespace) -> int:
    from resolver.household import open_household

    async with open_household(_config(args), background=False) as hh:
        store = _store(hh)
        names = {c.id: c.name for c in await asyncio.to_thread(store.children)}
        for d in await asyncio.to_thread(store.devices):
            owner = ("adults" if d.owner == ADULTS else names.get(d.owner, "?")
                     if isinstance(d.owner, int) else "unassigned")
            flag = " (new)" if d.new else ""
            print(f"{d.id}\t{d.name or '-'}\t{', '.join(d.identifiers)}\t{owner}{flag}")
    return 0


# -- explain --------------------------------------------------------------------------------
async def _explain(args: argparse.Namespace) -> int:
    from resolver.household import open_household

    client = parse_identifier(args.client)
    async with open_household(_config(args), background=False) as hh:
        device, profile = hh.live_policy.value.profile_for(client)
        verdict = hh.explain(client, args.name)
        who = "unknown device (default profile)" if device is None else (
            f"device {device.name or client}")
        child = profile.child
        if child is not None:
            who += f", {child.name}, {child.age_on(hh.now().date())}"
        elif profile.mode == "adults":
            who += ", adults"
    line = f"{args.name}: {verdict.action.upper()}"
    if verdict.reason:
        line += f" ({verdict.reason})"
    if verdict.action == Action.REWRITE and verdict.target:
        line += f" -> {verdict.target}"
    print(line)
    print(f"  for {client}: {who}")
    if verdict.source:
        print(f"  rule: {verdict.source}")
    return 0


# -- lists ----------------------------------------------------------------------------------
async def _lists_sync(args: argparse.Namespace) -> int:
    from blocklists.sync import status_lines
    from resolver.household import open_household

    async with open_household(_config(args), background=False) as hh:
        statuses = await hh.sync_feeds(args.names or None, force=True, shrink=args.shrink)
    for line in status_lines(statuses):
        print(line)
    if not statuses:
        print("no feeds configured (add some under `feeds:` in the config)")
    return 1 if any(s.error for s in statuses) else 0


async def _lists_check(args: argparse.Namespace) -> int:
    from blocklists.sync import explain_matches
    from resolver.household import open_household

    async with open_household(_config(args), background=False) as hh:
        lines = explain_matches(hh.live_index.value, args.name)
    if not lines:
        print(f"{args.name}: no list or rating matches")
        return 0
    print(f"{args.name}:")
    for line in lines:
        print(f"  {line}")
    return 0


def _store(hh: Household) -> Store:
    store = hh.store
    if store is None:
        raise UsageError("the database in data_dir cannot be opened (see the log above)")
    return store


# -- registration ---------------------------------------------------------------------------
def add_child(sub: Sub) -> None:
    p = sub.add_parser("child", help="add or list children")
    s = p.add_subparsers(dest="child_command", required=True)
    a = _with_config(s.add_parser("add", help="add a child"))
    a.add_argument("name")
    a.add_argument("--born", required=True, help="birth date, YYYY-MM-DD")
    a.add_argument("--lang", choices=("vi", "en"), default="vi", help="block page language")
    a.set_defaults(func=_run(_child_add))
    ls = _with_config(s.add_parser("list", help="list children"))
    ls.set_defaults(func=_run(_child_list))


def add_device(sub: Sub) -> None:
    p = sub.add_parser("device", help="assign or list devices")
    s = p.add_subparsers(dest="device_command", required=True)
    a = _with_config(s.add_parser("set", help="assign a device (IP or MAC) to a child"))
    a.add_argument("address", help="IPv4/IPv6 address or MAC")
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--child", help="the child's name")
    who.add_argument("--adults", action="store_true", help="an adult's device")
    a.add_argument("--name", default=None, help="a label, e.g. 'Minh's tablet'")
    a.set_defaults(func=_run(_device_set))
    ls = _with_config(s.add_parser("list", help="list devices"))
    ls.set_defaults(func=_run(_device_list))


def add_explain(sub: Sub) -> None:
    p = _with_config(sub.add_parser("explain", help="the verdict for a name, and why"))
    p.add_argument("--client", required=True, help="the device's address")
    p.add_argument("name")
    p.set_defaults(func=_run(_explain))


def add_lists(sub: Sub) -> None:
    p = sub.add_parser("lists", help="sync the feeds now, or check a name")
    s = p.add_subparsers(dest="lists_command", required=True)
    sy = _with_config(s.add_parser("sync", help="download the feeds now"))
    sy.add_argument("names", nargs="*", help="only these feeds")
    sy.add_argument("--shrink", action="store_true",
                    help="accept a list that shrank to under half of its last good copy")
    sy.set_defaults(func=_run(_lists_sync))
    ch = _with_config(s.add_parser("check", help="every list and rating that matches NAME"))
    ch.add_argument("name")
    ch.set_defaults(func=_run(_lists_check))


SUBCOMMANDS = (add_child, add_device, add_explain, add_lists)
