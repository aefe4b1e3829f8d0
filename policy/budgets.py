"""Daily time budgets: minutes a day per service, category or overall, per child.

A parent sets, for a child, minutes for school days and for weekends and holidays, on a
service of the catalogue (policy/services.py: "youtube"), a category ("games", "social",
"video": every service of that category whose activity names are known), or "overall" (every
service the child's other budgets cover; with no other budget, every service of the budget
categories).

Which day is which: Saturday and Sunday, and days a "suspend" household exception (holidays)
covers for the child, are weekend days; every other day, "replace" exceptions included (an
exam week has its own windows but is a school day), is a school day. Days are the household's
days (the zone schedules use): they start at local midnight, DST included.

Counting (`Meter`, no I/O; the resolver feeds it, resolver/budgets.py persists it):

- A minute counts for a budget when one of the child's devices asks, in that minute, an
  *activity* name of a service the budget covers (services.yaml `activity:`: video, feed and
  game-session hosts) and gets an answer. Background names (push, telemetry, login) never count.
  Minutes are whole minutes of the clock; every device of the child feeds the same count, so two
  devices in the same minute count one minute.
- TTLs bridge silences: a device that got an answer with TTL `t` may stay silent for `t`
  seconds while it goes on using the service (it asks again only when its cache expires, at
  the app's next need). So a silence after an activity query counts in full when the next
  activity query comes within min(t, BRIDGE_CAP) + GRACE seconds of the one before (the
  largest such allowance of the queries since the last counted minute); a longer silence ends
  the stretch, and the next query starts a new one. Answers are never changed: the TTLs are
  read as they come (rewriting TTLs to count time is patented; nestguard does not).
- The unseen end: once a stretch has gone silent for longer than its allowance (+ GRACE), a
  TAIL share of that allowance counts as well (after a 300 s answer, 2 minutes): the device
  held a valid answer and stopped somewhere in it. Credited once, in whole minutes.
- What it cannot see: use that needs no new name (game traffic to addresses, a long download
  on one connection), the real end of a session (short sessions count low, a pause shorter
  than the allowance counts as use), another resolver, a VPN, mobile data. Measured with
  tests/bench/bench_budgets.py; see the README.

Decision (policy/decide.py step 7a): a budget is spent when its minutes reach its limit for
the day plus the day's extra time; then every service it covers is blocked for the child
until midnight with reason "budget:<slug>" (the service's own budget is named first, then a
category's, then "overall").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from policy.model import PolicyError, Profile
from policy.schedule import exceptions_on
from policy.services import BUDGET_CATEGORIES, budget_services, default_services
from policy.store import Budget, BudgetUsage, Store

OVERALL = "overall"
BRIDGE_CAP = 300  # seconds: a longer TTL bridges no more than 5 minutes of silence
GRACE = 120  # seconds: after its cache expires, a device asks at the app's next need
TAIL = 0.5  # the share of a stretch's last TTL allowance counted as its unseen end
MAX_MINUTES = 1440
EXTRA_CHOICES = (15, 30, 60)  # a parent's answers to "more time"
ASK_MINUTES = 15  # what a child asks for
WARN_LEFT = 5  # minutes left at which the UI warns


def check_budget(slug: str, school_days: object, weekends: object) -> tuple[str, int, int]:
    """The one check of a budget, for every entry point (CLI, API, forms).
    PolicyError names the field: "slug: ...", "school_days: ...", "weekends: ..."."""
    slug = str(slug or "").strip().lower()
    if slug not in budget_slugs():
        raise PolicyError(
            f"slug: {slug!r} is not a service with activity names, a category "
            f"({', '.join(BUDGET_CATEGORIES)}) or {OVERALL!r}"
        )
    out = []
    for what, raw in (("school_days", school_days), ("weekends", weekends)):
        try:
            minutes = int(str(raw).strip())
        except ValueError:
            raise PolicyError(f"{what}: {raw!r} is not a number of minutes") from None
        if not 0 <= minutes <= MAX_MINUTES:
            raise PolicyError(f"{what}: {minutes} is not 0..{MAX_MINUTES} minutes")
        out.append(minutes)
    return slug, out[0], out[1]


def check_extra(minutes: object) -> int:
    try:
        n = int(str(minutes).strip())
    except ValueError:
        raise PolicyError(f"minutes: {minutes!r} is not a number of minutes") from None
    if not 0 < n <= MAX_MINUTES:
        raise PolicyError(f"minutes: {n} is not 1..{MAX_MINUTES}")
    return n


def budget_slugs() -> tuple[str, ...]:
    """Every slug a budget may name: services with activity names, categories, overall."""
    services = tuple(s.slug for s in default_services().values() if s.activity)
    return (*services, *BUDGET_CATEGORIES, OVERALL)


def is_weekend(profile: Profile, day: date) -> bool:
    """Weekends and holidays ("suspend" exceptions) use the weekend minutes."""
    if day.weekday() >= 5:
        return True
    return any(e.mode == "suspend" for e in exceptions_on(profile, day))


def covered(slug: str, others: Iterable[str] = ()) -> tuple[str, ...]:
    """The services a budget counts and blocks (`others`: the child's other budget slugs,
    for "overall")."""
    services = default_services()
    if slug in services:
        return (slug,)
    if slug in BUDGET_CATEGORIES:
        return budget_services(slug)
    if slug == OVERALL:
        out: list[str] = []
        for other in others:
            if other != OVERALL:
                out.extend(s for s in covered(other) if s not in out)
        if not out:
            for cat in BUDGET_CATEGORIES:
                out.extend(budget_services(cat))
        return tuple(out)
    return ()


def _order(slug: str) -> int:
    """A service's own budget is named before a category's, a category's before overall."""
    return 2 if slug == OVERALL else 1 if slug in BUDGET_CATEGORIES else 0


@dataclass(frozen=True, slots=True)
class Standing:
    """One budget today, for the UI and the CLI."""

    slug: str
    school_days: int
    weekends: int
    limit: int  # today's minutes (school day or weekend) plus extra
    extra: int
    used: int
    weekend: bool

    @property
    def left(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def spent(self) -> bool:
        return self.used >= self.limit

    @property
    def warn(self) -> bool:
        return not self.spent and self.left <= WARN_LEFT


def standings(
    profile: Profile,
    budgets: Sequence[Budget],
    used: Mapping[str, int],
    extras: Mapping[str, int],
    day: date,
) -> list[Standing]:
    weekend = is_weekend(profile, day)
    out = []
    for b in sorted(budgets, key=lambda b: (_order(b.slug), b.slug)):
        extra = extras.get(b.slug, 0)
        base = b.weekends if weekend else b.school_days
        out.append(Standing(b.slug, b.school_days, b.weekends, base + extra, extra,
                            used.get(b.slug, 0), weekend))
    return out


def child_standings(store: Store, profile: Profile, day: date) -> list[Standing]:
    """A child's budgets on a household day, from the store (the CLI, the API, the pages).
    Counts reach the store within a few seconds of the queries (resolver/budgets.py)."""
    if profile.child is None:
        return []
    child_id = profile.child.id
    budgets = store.budgets(child_id)
    if not budgets:
        return []
    used = {u.key: u.minutes for u in store.budget_usage(day, child_id)}
    extras = {slug: m for (cid, slug), m in store.budget_extras(day).items() if cid == child_id}
    return standings(profile, budgets, used, extras, day)


def with_budgets(
    profile: Profile,
    budgets: Sequence[Budget],
    used: Mapping[str, int],
    extras: Mapping[str, int],
    day: date,
) -> Profile:
    """The profile with today's budget fields (counting keys, limits, spent services)."""
    if not budgets:
        return profile
    slugs = [b.slug for b in budgets]
    keys: dict[str, tuple[str, ...]] = {}
    limits: dict[str, int] = {}
    spent: dict[str, str] = {}
    for st in standings(profile, budgets, used, extras, day):
        limits[st.slug] = st.limit
        for svc in covered(st.slug, slugs):
            keys[svc] = (*keys.get(svc, ()), st.slug)
            if st.spent and svc not in spent:
                spent[svc] = st.slug
    return replace(profile, budget_keys=keys, budget_limits=limits, budget_spent=spent)


class Meter:
    """Counts minutes per (child, budget) for one household day (module docstring).

    `hit(child_id, keys, limits, at, ttl)` -> the budgets this query spent (reached their
    limit); `close(at, limits_of)` -> ends the stretches whose silence has outlasted their
    TTLs, crediting their tails; `dirty()` -> the rows changed since the last call, to
    persist. No I/O, no clock.
    """

    def __init__(
        self, *, cap: int | None = None, grace: int | None = None, tail: float | None = None
    ) -> None:
        self._cap = BRIDGE_CAP if cap is None else cap
        self._grace = GRACE if grace is None else grace
        self._tail = TAIL if tail is None else tail
        self.day: date | None = None
        # (child, key) -> [minutes, last query (epoch s), minute index, explained until];
        # "explained until" drops to the last query once the stretch is closed (tail credited)
        self._state: dict[tuple[int, str], list[float]] = {}
        self._dirty: set[tuple[int, str]] = set()
        self._told: dict[tuple[int, str], int] = {}  # limit at which "spent" was reported

    def load(self, day: date, rows: Iterable[BudgetUsage]) -> None:
        """Start the day from persisted counts (after a restart)."""
        self.day = day
        self._state.clear()
        self._dirty.clear()
        self._told.clear()
        for u in rows:
            last = u.last_at.timestamp() if u.last_at is not None else 0.0
            self._state[(u.child_id, u.key)] = [
                float(u.minutes), last, float(int(last // 60)), last + u.bridge
            ]

    def minutes(self, child_id: int, key: str) -> int:
        st = self._state.get((child_id, key))
        return int(st[0]) if st is not None else 0

    def hit(
        self,
        child_id: int,
        keys: Sequence[str],
        limits: Mapping[str, int],
        at: datetime,
        ttl: int,
    ) -> list[str]:
        day = at.date()
        if day != self.day:  # the household's midnight: a new day counts from zero
            self.load(day, ())
        t = at.timestamp()
        minute = float(int(t // 60))
        allowance = min(max(ttl, 0), self._cap)
        spent: list[str] = []
        for key in keys:
            k = (child_id, key)
            st = self._state.get(k)
            if st is None:
                st = self._state[k] = [1.0, t, minute, t + allowance]
            elif minute <= st[2]:  # this minute counted already (another device, a repeat)
                st[1] = max(st[1], t)
                st[3] = max(st[3], t + allowance)
                continue
            elif t <= st[3] + self._grace:  # the silence is explained by a TTL: count it
                st[0] += minute - st[2]
                st[1], st[2], st[3] = t, minute, max(st[3], t + allowance)
            else:  # the last stretch ended (its tail counts), a new one starts
                st[0] += self._tail_of(st, minute) + 1
                st[1], st[2], st[3] = t, minute, t + allowance
            self._dirty.add(k)
            limit = limits.get(key)
            if limit is not None and st[0] >= limit and self._told.get(k, -1) < limit:
                self._told[k] = limit
                spent.append(key)
        return spent

    def _tail_of(self, st: list[float], before_minute: float) -> int:
        """The unseen end of a stretch: a share of the silence its TTLs allowed after the
        last query (the device held a valid answer; use stopped somewhere in it), in whole
        minutes after the last counted one and before `before_minute`."""
        tail = int((st[3] - st[1]) * self._tail // 60)
        st[3] = st[1]  # closed: credited once
        return max(0, min(tail, int(before_minute - st[2]) - 1))

    def close(self, at: datetime, limits_of: Callable[[int], Mapping[str, int]]
              ) -> list[tuple[int, str]]:
        """End the stretches silent for longer than their TTLs (+ grace) at `at`, crediting
        their tails; the (child, budget) this spent."""
        if at.date() != self.day:
            return []
        t = at.timestamp()
        spent = []
        for k, st in self._state.items():
            if st[3] > st[1] and t > st[3] + self._grace:
                tail = self._tail_of(st, float(int(t // 60)))
                if tail:
                    st[0] += tail
                    self._dirty.add(k)
                    limit = limits_of(k[0]).get(k[1])
                    if limit is not None and st[0] >= limit and self._told.get(k, -1) < limit:
                        self._told[k] = limit
                        spent.append(k)
        return spent

    def dirty(self) -> list[BudgetUsage]:
        """The rows changed since the last call (and forget them)."""
        if self.day is None:
            return []
        out = []
        for k in sorted(self._dirty):
            st = self._state.get(k)
            if st is None:
                continue
            last = datetime.fromtimestamp(st[1], UTC)
            out.append(BudgetUsage(k[0], self.day, k[1], int(st[0]), last, int(st[3] - st[1])))
        self._dirty.clear()
        return out
