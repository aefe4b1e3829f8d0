"""The `nestguard` command line: every subcommand (`serve`; children, devices, budgets, explain,
lists, reports). resolver/main.py only calls `main()`.

`serve` opens the household (resolver/root.py) and runs the DNS side in this process
(resolver/assembly.py), or, with `dns.workers` > 1, in worker processes (resolver/workers.py).
Each subcommand takes `--config FILE`. Wrong input (unknown child, bad date, bad address)
exits with status 2 and one clear line on stderr. Writes go to the same SQLite store the running
server reads; it picks them up within a second (its reload loop checks the store's revision).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from blocklists.feed import FeedError
from policy.model import ADULTS, Action, PolicyError
from policy.names import BadName, device_identifier
from policy.store import Store
from resolver.assembly import run
from resolver.config import Config, ConfigError, load_config
from resolver.process import run_loop, setup_logging
from resolver.root import Household, open_household
from resolver.workers import supervise

log = logging.getLogger(__name__)

T = TypeVar("T")
Sub = argparse._SubParsersAction  # type: ignore[type-arg]


class UsageError(Exception):
    """Bad input on the command line: printed as one line, exit status 2."""


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", type=Path, default=None, help="YAML config file")
    return p


def _run(
    fn: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    """Run an async command; turn expected errors into one line and exit status 2."""

    def wrapper(args: argparse.Namespace) -> int:
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


# -- serve ----------------------------------------------------------------------------------
def _serve_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"nestguard: {e}", file=sys.stderr)
        return 2
    setup_logging(config)
    run_loop(serve(config))
    return 0


async def serve(config: Config) -> None:
    """`nestguard serve`: the household behind the resolver, until SIGTERM/SIGINT.
    SIGHUP re-reads the policy at once (systemd's ExecReload). With dns.workers > 1 the DNS
    side runs in worker processes and this one keeps the web UI and the background loops."""
    async with open_household(config) as hh:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, hh.nudge.set)
        try:
            if config.dns.workers > 1:
                await supervise(config, hh.web_app, hh)
            else:
                await run(config, hh.resolver_services())
        finally:
            loop.remove_signal_handler(signal.SIGHUP)


# -- child ----------------------------------------------------------------------------------
async def _child_add(args: argparse.Namespace) -> int:

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

    async with open_household(_config(args), background=False) as hh:
        today = hh.now().date()
        for c in await asyncio.to_thread(_store(hh).children):
            print(f"{c.id}\t{c.name}\tborn {c.born}\t{c.age_on(today)} years")
    return 0


# -- device ---------------------------------------------------------------------------------
async def _device_set(args: argparse.Namespace) -> int:

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

    async with open_household(_config(args), background=False) as hh:
        store = _store(hh)
        names = {c.id: c.name for c in await asyncio.to_thread(store.children)}
        for d in await asyncio.to_thread(store.devices):
            owner = ("adults" if d.owner == ADULTS else names.get(d.owner, "?")
                     if isinstance(d.owner, int) else "unassigned")
            flag = " (new)" if d.new else ""
            print(f"{d.id}\t{d.name or '-'}\t{', '.join(d.identifiers)}\t{owner}{flag}")
    return 0


# -- budget ---------------------------------------------------------------------------------
async def _budget_set(args: argparse.Namespace) -> int:
    from policy.budgets import check_budget

    slug, school, weekends = check_budget(args.slug, args.school_days, args.weekends)
    async with open_household(_config(args), background=False) as hh:
        store = _store(hh)
        child = await asyncio.to_thread(store.child_by_name, args.child)
        await asyncio.to_thread(store.set_budget, child.id, slug, school_days=school,
                                weekends=weekends)
        await asyncio.to_thread(store.audit, "cli", "budget.set",
                                f"{child.name}: {slug} {school}/{weekends} min")
    print(f"{child.name}: {slug} {school} minutes on school days, {weekends} at weekends "
          "and holidays")
    return 0


async def _budget_status(args: argparse.Namespace) -> int:
    from policy.budgets import child_standings

    async with open_household(_config(args), background=False) as hh:
        store = _store(hh)
        policy = hh.live_policy.value
        day = hh.now().date()
        if args.child:
            children = [await asyncio.to_thread(store.child_by_name, args.child)]
        else:
            children = await asyncio.to_thread(store.children)
        for child in children:
            profile = policy.profiles.get(child.id)
            if profile is None:
                continue
            rows = await asyncio.to_thread(child_standings, store, profile, day)
            if not rows:
                print(f"{child.name}: no budgets")
                continue
            kind = "weekend or holiday" if rows[0].weekend else "school day"
            print(f"{child.name} ({day}, {kind}):")
            for st in rows:
                state = "SPENT" if st.spent else ("5 minutes or less left" if st.warn else "")
                extra = f" (+{st.extra} extra)" if st.extra else ""
                print(f"  {st.slug}: {st.used} of {st.limit} minutes{extra}, {st.left} left"
                      + (f"  {state}" if state else ""))
    return 0


async def _budget_add(args: argparse.Namespace) -> int:
    from policy.budgets import check_extra

    minutes = check_extra(args.minutes)
    async with open_household(_config(args), background=False) as hh:
        store = _store(hh)
        child = await asyncio.to_thread(store.child_by_name, args.child)
        total = await asyncio.to_thread(
            store.add_budget_extra, child.id, hh.now().date(), args.slug.strip().lower(),
            minutes, by="cli",
        )
        await asyncio.to_thread(store.audit, "cli", "budget.extra",
                                f"{child.name}: {args.slug} +{minutes} min")
    print(f"{child.name}: {args.slug} +{minutes} minutes until midnight ({total} extra today)")
    return 0


# -- explain --------------------------------------------------------------------------------
async def _explain(args: argparse.Namespace) -> int:

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

    async with open_household(_config(args), background=False) as hh:
        statuses = await hh.sync_feeds(args.names or None, force=True, shrink=args.shrink)
    for line in status_lines(statuses):
        print(line)
    if not statuses:
        print("no feeds configured (add some under `feeds:` in the config)")
    return 1 if any(s.error for s in statuses) else 0


async def _lists_check(args: argparse.Namespace) -> int:
    from blocklists.sync import explain_matches

    async with open_household(_config(args), background=False) as hh:
        lines = explain_matches(hh.live_index.value, args.name)
    if not lines:
        print(f"{args.name}: no list or rating matches")
        return 0
    print(f"{args.name}:")
    for line in lines:
        print(f"  {line}")
    return 0


# -- reports --------------------------------------------------------------------------------
async def _reports_export(args: argparse.Namespace) -> int:
    from webui.reports import export_csv, parse_since

    since = parse_since(args.since or "")
    async with open_household(_config(args), background=False) as hh:
        reports = await asyncio.to_thread(
            _store(hh).reports, status="listed", since=since, limit=1_000_000
        )
    sys.stdout.write(export_csv(reports))
    return 0


async def _report_weekly(args: argparse.Namespace) -> int:
    from datetime import date as date_

    from webui.i18n import Translator
    from webui.weekly import (
        build_week,
        bundled_tld,
        last_week,
        queue_weekly,
        render_text,
        week_start,
    )

    async with open_household(_config(args), background=False) as hh:
        store = _store(hh)
        now = hh.now()
        start = last_week(now)
        if args.week:
            try:
                start = week_start(date_.fromisoformat(args.week), now.tzinfo)
            except ValueError:
                raise UsageError(f"--week {args.week!r}: not a date, use YYYY-MM-DD") from None
        alerts = hh.alerts
        assert alerts is not None  # there is a store
        tld = bundled_tld()
        lang = args.lang or await asyncio.to_thread(alerts.household_lang)
        if not args.send:
            week = await asyncio.to_thread(build_week, store, start, tld)
            t = Translator(lang, alerts.catalogues)
            sys.stdout.write(render_text(week, t, hh.categories))
            return 0
        if alerts.settings.email is None:
            raise UsageError("no e-mail server: set alerts.email in the config or Settings")
        n = await asyncio.to_thread(queue_weekly, store, alerts, start, hh.categories, tld, lang)
        await alerts.deliver_due()
        failed = [r for r in await asyncio.to_thread(store.outbox, limit=n)
                  if r.kind == "weekly" and r.status != "sent"]
    for r in failed:
        print(f"nestguard: to {r.recipient}: {r.last_error or 'not sent yet'}", file=sys.stderr)
    print(f"weekly report sent to {n - len(failed)} of {n} parent(s)")
    return 1 if failed else 0


def _store(hh: Household) -> Store:
    store = hh.store
    if store is None:
        raise UsageError("the database in data_dir cannot be opened (see the log above)")
    return store


# -- registration ---------------------------------------------------------------------------
def add_serve(sub: Sub) -> None:
    p = _with_config(sub.add_parser("serve", help="run the DNS resolver and the web UI"))
    p.set_defaults(func=_serve_command)


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


def add_budget(sub: Sub) -> None:
    p = sub.add_parser("budget", help="daily time budgets: set, status, more time")
    s = p.add_subparsers(dest="budget_command", required=True)
    a = _with_config(s.add_parser("set", help="minutes a day for a service or category"))
    a.add_argument("child", help="the child's name")
    a.add_argument("slug", help="a service (youtube, roblox, ...), games, social, video or overall")
    a.add_argument("--school-days", required=True, help="minutes on school days")
    a.add_argument("--weekends", required=True, help="minutes at weekends and on holidays")
    a.set_defaults(func=_run(_budget_set))
    st = _with_config(s.add_parser("status", help="today's minutes used and left"))
    st.add_argument("child", nargs="?", default=None, help="one child (default: all)")
    st.set_defaults(func=_run(_budget_status))
    ad = _with_config(s.add_parser("add", help="extra minutes today (until midnight)"))
    ad.add_argument("child", help="the child's name")
    ad.add_argument("slug", help="the budget")
    ad.add_argument("minutes", help="minutes to add")
    ad.set_defaults(func=_run(_budget_add))


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


def add_reports(sub: Sub) -> None:
    p = sub.add_parser("reports", help="sites reported by children and parents")
    s = p.add_subparsers(dest="reports_command", required=True)
    ex = _with_config(s.add_parser(
        "export", help="accepted reports as rating CSV (domain,category,min_age,note)"))
    ex.add_argument("--since", default=None, help="decided on or after DATE (YYYY-MM-DD)")
    ex.set_defaults(func=_run(_reports_export))


def add_report(sub: Sub) -> None:
    p = sub.add_parser("report", help="the weekly report")
    s = p.add_subparsers(dest="report_command", required=True)
    w = _with_config(s.add_parser("weekly", help="print last week's report, or --send it"))
    w.add_argument("--send", action="store_true", help="e-mail it to every parent now")
    w.add_argument("--week", default=None, help="a day of the week to report (YYYY-MM-DD)")
    w.add_argument("--lang", choices=("vi", "en"), default=None, help="printed language")
    w.set_defaults(func=_run(_report_weekly))


# One function per subcommand; add new ones to this tuple.
SUBCOMMANDS = (
    add_serve, add_child, add_device, add_budget, add_explain, add_lists, add_reports, add_report
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nestguard", description="parental-filter DNS resolver")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; its exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
