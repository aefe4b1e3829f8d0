"""Which weekly windows are active now.

`active_windows(profile, now)` returns the profile's windows in force at `now`.

- `now` is an aware datetime already in the household's zone (the resolver converts); only its
  wall-clock date and time are used.
- A window runs from `start` (inclusive) to `end` (exclusive) on each of its weekdays. If
  `end <= start` it runs overnight and ends on the next day: a Friday 21:00-07:00 window is
  active on Saturday at 03:00 (it belongs to Friday), and a Sunday window spills into Monday.
  `start == end` means 24 hours. Windows switch on whole minutes: the time of day is taken
  to the minute (seconds dropped) before comparing, so a result holds for the whole minute.
- Household exceptions are looked up by the date the window STARTS on, for the children they
  list (an empty list means every child): a "replace" exception swaps in its own windows for
  those dates; otherwise a "suspend" exception removes every window on those dates. When both
  kinds cover a date, replace wins (the parent set explicit windows for those days).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from policy.model import HouseholdException, Profile, Schedule

_DAY = timedelta(days=1)


def exceptions_on(profile: Profile, day: date) -> list[HouseholdException]:
    """The household exceptions that cover `day` for the profile's child."""
    child_id = profile.child.id if profile.child is not None else None
    return [
        e
        for e in profile.exceptions
        if e.first_day <= day <= e.last_day and (not e.child_ids or child_id in e.child_ids)
    ]


def windows_for(profile: Profile, day: date) -> tuple[Schedule, ...]:
    """The weekly windows that apply to windows starting on `day` (exceptions applied)."""
    if not profile.exceptions:
        return profile.schedules
    found = exceptions_on(profile, day)
    if not found:
        return profile.schedules
    replacing = [e for e in found if e.mode == "replace"]
    if replacing:
        return tuple(s for e in replacing for s in e.schedules)
    return ()


def _started_today(w: Schedule, t: time) -> bool:
    if w.end <= w.start:  # overnight: from start until midnight
        return t >= w.start
    return w.start <= t < w.end


def active_windows(profile: Profile, now: datetime) -> list[Schedule]:
    """The windows in force at `now` (see the module docstring for the rules)."""
    if not profile.schedules and not profile.exceptions:
        return []
    today = now.date()
    t = time(now.hour, now.minute)
    out: list[Schedule] = []
    weekday = today.weekday()
    for w in windows_for(profile, today):
        if weekday in w.weekdays and _started_today(w, t):
            out.append(w)
    yesterday = today - _DAY
    weekday = yesterday.weekday()
    for w in windows_for(profile, yesterday):
        if weekday in w.weekdays and w.end <= w.start and t < w.end and w not in out:
            out.append(w)
    return out


def window_end(w: Schedule, now: datetime) -> datetime:
    """When window `w`, in force at `now`, ends ("Bedtime until 06:30")."""
    end = datetime.combine(now.date(), w.end, now.tzinfo)
    if w.end <= w.start and time(now.hour, now.minute) >= w.start:  # overnight, before 0:00
        end += _DAY
    return end


def next_change(profile: Profile, now: datetime) -> datetime | None:
    """The next time (after `now`, within 8 days) a window starts or ends, or None.

    Used by reload to know when the snapshot's windows change; `decide` itself evaluates
    windows at every query, so this is informational (UI: "bedtime starts at 21:00")."""
    best: datetime | None = None
    for offset in range(-1, 8):
        day = now.date() + timedelta(days=offset)
        for w in windows_for(profile, day):
            if day.weekday() not in w.weekdays:
                continue
            start = datetime.combine(day, w.start, now.tzinfo)
            end_day = day + _DAY if w.end <= w.start else day
            end = datetime.combine(end_day, w.end, now.tzinfo)
            for edge in (start, end):
                if edge > now and (best is None or edge < best):
                    best = edge
    return best
