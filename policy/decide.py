"""`decide(profile, qname, now, index)` -> Verdict: the whole filtering decision, pure.

No I/O, no clock, no logging: everything comes in as arguments, so it is tested as a table.
`qname` is canonical (policy/model.py). `now` is aware, in the household's zone.

Precedence (first rule that applies wins):

 1. Bypass canaries (when profile.bypass_defence): use-application-dns.net -> BLOCK NXDOMAIN
    "bypass:canary"; mask.icloud.com, mask-h2.icloud.com -> BLOCK NXDOMAIN
    "bypass:private-relay"; _dns.resolver.arpa -> BLOCK NODATA "bypass:ddr".
 2. Pause (paused_until > now) -> BLOCK "paused"; an active bedtime window -> BLOCK
    "schedule:<name>". The profile's always-allowed names (the parent's "always" rules plus
    a few connectivity-check names added by reload) pass both; an active DOMAIN grant passes
    bedtime (the parent just said yes to that site, e.g. an approved request at 21:30) but
    not a pause. The parent's allow list does not pass: "allowed" means "not filtered", not
    "usable at 23:00". Passing names go on to step 3.
 3. The parent's denied domains -> BLOCK "parent:deny" (source "parent").
 4. The parent's allowed domains -> ALLOW "parent:allow"; an active domain grant -> ALLOW
    "grant" (source "parent"). A safe-search front end stays rewritten (step 8's REWRITE)
    even when allowed: safe search is its own switch, not a block to lift.
 5. Security categories (malware, phishing, scam) -> BLOCK "security:<cat>", at every age,
    adults too. Only a list's own exception lifts its security match (see 9); the education
    set or another list's exception never does.
 6. An active school window: matches of its categories -> BLOCK "schedule:<name>:<cat>",
    names of its services -> BLOCK "schedule:<name>:<service>". An active category grant
    lifts the window for that category.
 7. Services the parent blocked (policy/services.py) -> BLOCK "service:<slug>".
7a. Daily time budgets: a service whose budget is spent today (profile.budget_spent, built
    by policy/budgets.py) -> BLOCK "budget:<slug>" until the household's midnight (the slug
    of the spent budget: the service, its category or "overall"). Pause, bedtime and the
    parent's deny, allow and grants come first (steps 2-4); a blocked service or a school
    window names its own reason; safe search never turns a spent YouTube into a front end.
 8. Safe search -> REWRITE "safe-search", target the engine's restricted name
    (profile.safe_search for search engines, profile.youtube for YouTube). In allowlist mode
    only for names the allowlist passes (step 10), so it cannot open Google to an under-6.
 9. List exceptions. An exception match in category "education" (the education allow set;
    "kids" likewise) -> ALLOW "exception:<source>". When the name is also in a games list
    that would block it for this child at step 11 (a "learning game": coolmathgames.com is
    both an allow-set entry and a UT1 games entry), it is a learning site: with
    profile.learning_games on (the default) -> ALLOW "learning:<source>", source
    "<list>:<line> <entry>" (the allow-set entry that matched); off -> that games block
    (step 11's verdict for the games match), so the allow set then only opens names no
    games list carries (encyclopaedias, school tools). Any other exception (`@@` rule,
    rpz-passthru) cancels the blocking matches of its OWN list (adblock/RPZ semantics: a
    list's exception speaks for that list only); if that leaves the name unblocked it is
    allowed at step 12 with reason "exception:<source>". Exceptions never beat steps 1-8.
10. Mode "allowlist" (under-6 default): only names with an "education" or "kids" match
    (allow set or category list) or an always-allowed name go on -> else BLOCK
    "allowlist-mode". Names that go on still face step 11. (Parent allows and grants
    already passed at step 4.)
11. Category matches rated above the child's age, and categories the parent blocked
    (profile.blocked), unless the parent allowed the category (profile.allowed) or a
    category grant is active -> BLOCK "category:<cat>:<age>+" with source "<list>:<line>",
    "parent" (blocked by the parent although the age allows it), or "name-rater: <evidence>".
    Name-rater matches are skipped when profile.rater is False or the category is in
    profile.rater_off (everywhere, steps 5 and 6 too).
    The age: a match's min_age, except that profile.category_ages overrides it for matches
    whose min_age is the catalogue's default for the category (profile.catalogue_ages; when
    that map is empty, category_ages applies to every list match) and for rater matches.
    An entry with an age of its own (a rating feed) keeps it.
12. ALLOW (reason "" or "exception:<source>" after step 9).

Changes from the first draft's order (6 safe search, 7 school, 8 exceptions, 9 services),
each because a parent would notice: a blocked service or school window must not be turned
into a working restricted front end by the safe-search rewrite (YouTube blocked ->
www.youtube.com blocked, not restrictmoderate.youtube.com); an ad list's `@@||youtube.com^`
or the education allow set must not unblock a service the parent blocked, nor skip the
safe-search rewrite; an allowed search engine keeps safe search.

Adults profile (mode "adults", child None): steps 1 (when bypass_defence), 3, 4, 5, 12.
A profile with no child in another mode (only a hand-built default) is treated as age 0.

A parent's yes against the schedules (what "Yes, always" on a request means), one table,
tested as such in tests/policy/test_decide_parent_yes.py:

    the parent's yes for a site     | bedtime | school window | pause | lists, services
    --------------------------------+---------+---------------+-------+----------------
    allow rule ("Yes, always")      | blocks  | passes        | blocks| passes
    grant ("Yes, 30 minutes/1 day") | passes  | passes        | blocks| passes
    "always" rule (passes bedtime)  | passes  | -             | passes| -
    the parent's own deny rule      | a grant does not lift it (step 3 before 4): the UI
                                    | says so; "Yes, always" replaces the deny

"Yes, always" says the site is fine for this child; it does not open the night: bedtime
stays the parent's "no internet now", which a yes for one site at 14:00 must not undo at
23:00. A yes given while bedtime is on is answered by `after_allow`: the UI tells the parent
"bedtime still applies until 06:30" and offers a grant until then (a yes for tonight),
and the child's block page never says "yes" while something still blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache

from policy.memo import Memo
from policy.model import (
    ALLOW,
    SECURITY_CATEGORIES,
    Action,
    BlockStyle,
    Grant,
    Index,
    Match,
    Profile,
    Schedule,
    Verdict,
)
from policy.safesearch import SEARCH_TARGETS, YOUTUBE_NAMES, safe_search_target
from policy.schedule import active_windows
from policy.services import service_domains

RATER = "name-rater"
ALLOWLIST_CATEGORIES = frozenset({"education", "kids"})
GAMES_CATEGORIES = frozenset({"games"})  # an allow-set name also listed here: a learning game
BLOCK = Action.BLOCK

CANARIES: dict[str, Verdict] = {
    "use-application-dns.net": Verdict(
        Action.BLOCK, "bypass:canary", style=BlockStyle.NXDOMAIN
    ),
    "mask.icloud.com": Verdict(
        Action.BLOCK, "bypass:private-relay", style=BlockStyle.NXDOMAIN
    ),
    "mask-h2.icloud.com": Verdict(
        Action.BLOCK, "bypass:private-relay", style=BlockStyle.NXDOMAIN
    ),
    "_dns.resolver.arpa": Verdict(Action.BLOCK, "bypass:ddr", style=BlockStyle.NODATA),
}

PAUSED = Verdict(Action.BLOCK, "paused", source="parent")
PARENT_DENY = Verdict(Action.BLOCK, "parent:deny", source="parent")
PARENT_ALLOW = Verdict(Action.ALLOW, "parent:allow", source="parent")
GRANT = Verdict(Action.ALLOW, "grant", source="parent")
ALLOWLIST_BLOCK = Verdict(Action.BLOCK, "allowlist-mode")

_SERVICES = service_domains()
_FRONT_ENDS = frozenset(SEARCH_TARGETS) | YOUTUBE_NAMES


_SUFFIXES: Memo[str, tuple[str, ...]] = Memo(16384)


def suffixes(qname: str) -> tuple[str, ...]:
    """'a.b.example' -> ('a.b.example', 'b.example', 'example'). Memoised (policy/memo.py):
    popular names repeat; a new name costs one miss and one insert."""
    hit = _SUFFIXES.get(qname)
    if hit is not None:
        return hit
    out = [qname]
    i = qname.find(".")
    while i >= 0:
        i += 1
        out.append(qname[i:])
        i = qname.find(".", i)
    return _SUFFIXES.put(qname, tuple(out))


# Active windows per profile and minute (they only change on whole minutes, see
# policy/schedule.py). Keyed by id(profile); the entry holds the profile itself, so the id
# cannot be reused by another object while the entry exists. Cleared when it grows (old
# snapshots after reloads). The resolver hands out one `now` object per second, so the
# first check (the same `now` object) is nearly free.
_WINDOWS: dict[int, tuple[Profile, datetime, int, object, list[Schedule]]] = {}
_WINDOWS_MAX = 256


def _active_windows(profile: Profile, now: datetime) -> list[Schedule]:
    hit = _WINDOWS.get(id(profile))
    if hit is not None and hit[0] is profile and hit[1] is now:
        return hit[4]
    minute = now.toordinal() * 1440 + now.hour * 60 + now.minute
    tz = now.tzinfo
    if hit is not None and hit[0] is profile and hit[2] == minute and (
        hit[3] is tz or hit[3] == tz
    ):
        windows = hit[4]
    else:
        windows = active_windows(profile, now)
        if len(_WINDOWS) >= _WINDOWS_MAX:
            _WINDOWS.clear()
    _WINDOWS[id(profile)] = (profile, now, minute, tz, windows)
    return windows


_VERDICTS: Memo[tuple[Action, str, str], Verdict] = Memo(8192)
_SET_VERDICT = tuple(
    Verdict.__dict__[f].__set__ for f in ("action", "reason", "target", "source", "style")
)


def _verdict(action: Action, reason: str, source: str) -> Verdict:
    """Shared Verdicts: building a frozen dataclass costs more than the rest of decide.

    A list block's source names its line, so each newly seen listed name brings a new
    Verdict: that one is built without the dataclass __init__ (a third of the cost), and
    the memo forgets its oldest entry per new one (policy/memo.py).
    """
    key = (action, reason, source)
    v = _VERDICTS.get(key)
    if v is not None:
        return v
    v = object.__new__(Verdict)
    sa, sr, st, ss, sy = _SET_VERDICT
    sa(v, action)
    sr(v, reason)
    st(v, None)
    ss(v, source)
    sy(v, BlockStyle.DEFAULT)
    return _VERDICTS.put(key, v)


@lru_cache(maxsize=256)
def _rewrite(target: str) -> Verdict:
    return Verdict(Action.REWRITE, "safe-search", target=target)


def _source(m: Match) -> str:
    if m.source == RATER:  # the rater's evidence, and its confidence when below certain
        sure = f" (confidence {m.confidence:.2f})" if m.confidence < 1.0 else ""
        return f"{RATER}: {m.rule}{sure}" if m.rule else RATER
    return f"{m.source}:{m.line}" if m.line else m.source


def _usable(m: Match, profile: Profile) -> bool:
    """False for a name-rater match this profile ignores."""
    return m.source != RATER or (profile.rater and m.category not in profile.rater_off)


def decide(profile: Profile, qname: str, now: datetime, index: Index, *, qtype: int = 1) -> Verdict:
    """The verdict for `qname` under `profile` at `now` (see the module docstring)."""
    # 1. bypass canaries
    if profile.bypass_defence:
        canary = CANARIES.get(qname)
        if canary is not None:
            return canary
    # suffixes(qname) only where a rule needs them (memoised): most profiles have none
    adults = profile.mode == "adults"

    # 2. pause and bedtime
    windows: list[Schedule] | None = None
    if not adults:
        paused = profile.paused_until is not None and profile.paused_until > now
        if profile.schedules or profile.exceptions:
            windows = _active_windows(profile, now)
        if paused or windows:
            block = PAUSED if paused else None
            if block is None and windows:
                for w in windows:
                    if w.kind == "bedtime":
                        block = _verdict(BLOCK, f"schedule:{w.name}", "parent")
                        break
            if (
                block is not None
                and profile.always_allowed.isdisjoint(suffixes(qname))
                and (block is PAUSED or not _granted_domain(profile, suffixes(qname), now))
            ):
                return block

    # 3. parent deny, 4. parent allow and domain grants
    if profile.deny and not profile.deny.isdisjoint(suffixes(qname)):
        return PARENT_DENY
    granted: set[str] | None = None
    allowed: Verdict | None = None
    if profile.allow and not profile.allow.isdisjoint(suffixes(qname)):
        allowed = PARENT_ALLOW
    elif profile.grants:
        granted = set()
        for g in profile.grants:
            if g.until > now:
                if g.domain is not None:
                    if g.domain in suffixes(qname):
                        allowed = GRANT
                        break
                elif g.category is not None:
                    granted.add(g.category)
    if allowed is not None:
        if not adults:
            rewrite = _safe_search(profile, qname)
            if rewrite is not None:
                return rewrite
        return allowed

    matches: Sequence[Match] = index.lookup(qname)
    # an exception cancels its own list's blocking matches (for every step below, security
    # included: the list itself says the name is fine); afterwards `matches` holds only
    # the blocking matches that stand
    exception: Match | None = None  # the exception to report
    allow_set: Match | None = None  # an education/kids allow-set exception
    cancelled = False
    listed = False  # an education/kids match of any kind (allowlist mode)
    if matches:
        exc_sources: set[str] = set()
        for m in matches:
            if m.category in ALLOWLIST_CATEGORIES:
                listed = True
            if m.exception:
                exc_sources.add(m.source)
                if exception is None:
                    exception = m
                if allow_set is None and m.category in ALLOWLIST_CATEGORIES:
                    allow_set = m
        if exc_sources:
            found = matches
            blocking = [m for m in found if not m.exception]
            matches = [m for m in blocking if m.source not in exc_sources]
            if len(matches) != len(blocking):
                cancelled = True
                # report an exception whose list did cancel something
                lifted = {m.source for m in blocking} & exc_sources
                exception = next(m for m in found if m.exception and m.source in lifted)

    # 5. security
    for m in matches:
        if m.category in SECURITY_CATEGORIES and (m.source != RATER or _usable(m, profile)):
            return _verdict(BLOCK, f"security:{m.category}", _source(m))
    if adults:
        return ALLOW

    # services of the name (6, 7, 7a)
    services: tuple[str, ...] = ()
    if windows or profile.services or profile.budget_spent:
        for n in suffixes(qname):
            hit = _SERVICES.get(n)
            if hit is not None:
                services += hit

    # 6. school windows
    if windows:
        for w in windows:
            if w.kind != "school":
                continue
            for m in matches:
                if (
                    m.category in w.categories
                    and (granted is None or m.category not in granted)
                    and _usable(m, profile)
                ):
                    return _verdict(BLOCK, f"schedule:{w.name}:{m.category}", _source(m))
            for svc in services:
                if svc in w.services:
                    return _verdict(BLOCK, f"schedule:{w.name}:{svc}", "parent")

    # 7. services the parent blocked
    if profile.services:
        for svc in services:
            if svc in profile.services:
                return _verdict(BLOCK, f"service:{svc}", "parent")

    # 7a. daily time budgets spent today
    if profile.budget_spent:
        for svc in services:
            spent = profile.budget_spent.get(svc)
            if spent is not None:
                return _verdict(BLOCK, f"budget:{spent}", "parent")

    passes_allowlist = (
        profile.mode != "allowlist"
        or listed
        or not profile.always_allowed.isdisjoint(suffixes(qname))
    )

    # 8. safe search
    if passes_allowlist and qname in _FRONT_ENDS:
        rewrite = _safe_search(profile, qname)
        if rewrite is not None:
            return rewrite

    # 9. the education (or kids) allow set; a learning game only while the switch is on
    if allow_set is not None:
        game = None
        for m in matches:
            if m.category in GAMES_CATEGORIES:
                game = _age_block(m, profile, _age(profile, now), granted)
                if game is not None:
                    break
        if game is None:
            return _verdict(Action.ALLOW, f"exception:{allow_set.source}", _source(allow_set))
        if not profile.learning_games:
            return game
        return _verdict(
            Action.ALLOW, f"learning:{allow_set.source}", f"{_source(allow_set)} {allow_set.rule}"
        )

    # 10. allowlist mode
    if not passes_allowlist:
        return ALLOWLIST_BLOCK

    # 11. categories by age and the parent's category choices
    if matches:
        age = _age(profile, now)
        for m in matches:
            block = _age_block(m, profile, age, granted)
            if block is not None:
                return block

    # 12. allow
    if exception is not None and cancelled:
        return _verdict(Action.ALLOW, f"exception:{exception.source}", _source(exception))
    return ALLOW


def _age(profile: Profile, now: datetime) -> int:
    child = profile.child
    return child.age_on(now.date()) if child is not None else 0


def _age_block(m: Match, profile: Profile, age: int, granted: set[str] | None) -> Verdict | None:
    """Step 11 for one match: its category block for a child of `age`, or None."""
    if m.source == RATER and not _usable(m, profile):
        return None
    cat = m.category
    if cat in profile.allowed or (granted is not None and cat in granted):
        return None
    limit = m.min_age
    ages = profile.category_ages
    if ages and cat in ages and (
        m.source == RATER or not profile.catalogue_ages or profile.catalogue_ages.get(cat) == limit
    ):
        limit = ages[cat]
    if limit > age:
        return _verdict(BLOCK, f"category:{cat}:{limit}+", _source(m))
    if cat in profile.blocked:
        return _verdict(BLOCK, f"category:{cat}:{limit}+", "parent")
    return None


class _NoLists:
    """An index with no entries: `after_allow` decides before any list is read."""

    def lookup(self, qname: str) -> Sequence[Match]:
        del qname
        return ()


_NO_LISTS = _NoLists()


def after_allow(profile: Profile, qname: str, now: datetime, *, until: datetime | None = None
                ) -> Verdict:
    """The verdict for `qname` once the parent says yes: for good (an allow rule, which
    replaces a deny of the same name) or, with `until`, for a while (a grant, which leaves
    the parent's deny in place). BLOCK says what still applies (a pause, a bedtime window
    for an allow rule, the parent's own deny for a grant, a canary the resolver answers
    itself, a deny of a parent domain); else ALLOW (or safe search's REWRITE). decide()
    itself says so: a yes is answered before any list is read (step 4), so no index."""
    if until is None:
        yes = replace(profile, allow=profile.allow | {qname}, deny=profile.deny - {qname})
    else:
        child_id = profile.child.id if profile.child is not None else 0
        yes = replace(profile, grants=(*profile.grants, Grant(child_id, until, domain=qname)))
    return decide(yes, qname, now, _NO_LISTS)


def _granted_domain(profile: Profile, names: tuple[str, ...], now: datetime) -> bool:
    return any(g.until > now and g.domain in names for g in profile.grants if g.domain)


def _safe_search(profile: Profile, qname: str) -> Verdict | None:
    # The common case (not a front end) costs two set/dict probes, no call.
    if qname not in _FRONT_ENDS:
        return None
    target = safe_search_target(qname, search=profile.safe_search, youtube=profile.youtube)
    if target is None:
        return None
    return _rewrite(target)
