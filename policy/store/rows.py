"""Row conversion (SQLite rows <-> records, times as integer microseconds) and the checks
every write applies to names, domains, identifiers and settings."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from policy.model import Child, Schedule
from policy.names import BadName, device_identifier, typed_domain
from policy.store.records import (
    AccessRequest,
    Account,
    ApiToken,
    ChildSettings,
    FeedStatus,
    NotFound,
    OutboxRow,
    Report,
    StoreError,
)

_Row = Any  # a sqlite3 result row

# -- conversions and checks ------------------------------------------------------------------



def _by_id(c: sqlite3.Connection, select: str, row_id: int, *, what: str) -> _Row:
    """The row `select` finds with this id, or NotFound("no {what} with id {row_id}")."""
    row = c.execute(select + " WHERE id = ?", (row_id,)).fetchone()
    if row is None:
        raise NotFound(f"no {what} with id {row_id}")
    return row


def _where(sql: str, condition: str, value: object) -> tuple[str, tuple[object, ...]]:
    """`sql` filtered by `condition` (one `?`) on `value`, or not filtered when value is None."""
    if value is None:
        return sql, ()
    return f"{sql} WHERE {condition}", (value,)


def _lastrowid(cur: sqlite3.Cursor) -> int:
    rowid = cur.lastrowid
    if rowid is None:  # pragma: no cover - sqlite always sets it after INSERT
        raise StoreError("insert returned no row id")
    return int(rowid)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC; everything comes back as aware UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _ts_req(dt: datetime) -> int:
    """Microseconds since the epoch (exact, ordered). Far-future values ("paused until
    resumed" as 9999-12-31 in a zone west of UTC) are clamped to datetime.max UTC."""
    if not isinstance(dt, datetime):
        raise StoreError(f"{dt!r} is not a datetime")
    delta = (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)) - _EPOCH
    return min(
        (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds, _MAX_TS
    )


def _ts(dt: datetime | None) -> int | None:
    return None if dt is None else _ts_req(dt)


def _dt_req(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def _dt(value: int | None) -> datetime | None:
    return None if value is None else _dt_req(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_name(name: str, what: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise StoreError(f"{what} is empty")
    if len(name) > 64:
        raise StoreError(f"{what} {name[:20]!r}… is longer than 64 characters")
    if _CONTROL.search(name):
        raise StoreError(f"{what} {name!r} contains control characters")
    return name


def _check_lang(lang: str) -> str:
    if lang not in ("vi", "en"):
        raise StoreError(f"language {lang!r} is not 'vi' or 'en'")
    return lang


def _check_child(name: str, born: date, lang: str) -> tuple[str, date, str]:
    """A child's name, birth date and language checked (StoreError) and normalised."""
    name, lang = _check_name(name, "child name"), _check_lang(lang)
    return name, _check_born(born), lang


def _check_born(born: date) -> date:
    if isinstance(born, datetime) or not isinstance(born, date):
        raise StoreError(f"birth date {born!r} is not a date")
    if born.year < 1900:
        raise StoreError(f"birth date {born} is before 1900")
    return born


def _domain(domain: str) -> str:
    """policy.names.typed_domain, its BadName as a StoreError naming the input."""
    try:
        return typed_domain(domain)
    except BadName as e:
        raise StoreError(f"domain {domain!r}: {e}") from None


def _identifier(identifier: str) -> str:
    """policy.names.device_identifier, its BadName as a StoreError naming the input."""
    try:
        return device_identifier(identifier)
    except BadName as e:
        raise StoreError(f"device identifier {identifier!r}: {e}") from None


def _check_settings(s: ChildSettings) -> None:
    if s.youtube not in ("off", "moderate", "strict"):
        raise StoreError(f"youtube mode {s.youtube!r} is not off/moderate/strict")
    if s.mode not in ("auto", "normal", "allowlist"):
        raise StoreError(f"mode {s.mode!r} is not auto/normal/allowlist")
    for slug, age in s.category_ages.items():
        if not isinstance(age, int) or isinstance(age, bool) or not 0 <= age <= 99:
            raise StoreError(f"category age for {slug!r} must be a whole number 0-99")


def _settings_to(s: ChildSettings) -> dict[str, object]:
    return {
        "blocked": sorted(s.blocked),
        "allowed": sorted(s.allowed),
        "safe_search": s.safe_search,
        "youtube": s.youtube,
        "bypass_defence": s.bypass_defence,
        "rater": s.rater,
        "rater_off": sorted(s.rater_off),
        "services": sorted(s.services),
        "mode": s.mode,
        "category_ages": dict(sorted(s.category_ages.items())),
        "learning_games": s.learning_games,
    }


def _settings_from(d: dict[str, object], paused_until: datetime | None) -> ChildSettings:
    base = ChildSettings()

    def strs(key: str, default: frozenset[str]) -> frozenset[str]:
        v = d.get(key)
        return frozenset(str(x) for x in v) if isinstance(v, list) else default

    raw_ages = d.get("category_ages")
    ages = (
        {str(k): int(v) for k, v in raw_ages.items()} if isinstance(raw_ages, dict) else {}
    )
    return ChildSettings(
        blocked=strs("blocked", base.blocked),
        allowed=strs("allowed", base.allowed),
        safe_search=bool(d.get("safe_search", base.safe_search)),
        youtube=str(d.get("youtube", base.youtube)),
        bypass_defence=bool(d.get("bypass_defence", base.bypass_defence)),
        rater=bool(d.get("rater", base.rater)),
        rater_off=strs("rater_off", base.rater_off),
        services=strs("services", base.services),
        mode=str(d.get("mode", base.mode)),
        paused_until=paused_until,
        category_ages=ages,
        learning_games=bool(d.get("learning_games", base.learning_games)),
    )


def _check_schedule(s: Schedule) -> None:
    if not s.name.strip():
        raise StoreError("schedule name is empty")
    if s.kind not in ("bedtime", "school"):
        raise StoreError(f"schedule {s.name!r}: kind {s.kind!r} is not bedtime/school")
    if not s.weekdays or not all(isinstance(d, int) and 0 <= d <= 6 for d in s.weekdays):
        raise StoreError(f"schedule {s.name!r}: weekdays must be a non-empty subset of 0..6")


def _schedule_row(s: Schedule) -> tuple[object, ...]:
    return (
        s.name.strip(),
        s.kind,
        ",".join(str(d) for d in sorted(s.weekdays)),
        s.start.isoformat(),
        s.end.isoformat(),
        json.dumps(sorted(s.categories)),
        json.dumps(sorted(s.services)),
    )


def _schedule(r: _Row) -> Schedule:
    return Schedule(
        name=str(r[1]),
        kind=str(r[2]),
        weekdays=frozenset(int(d) for d in str(r[3]).split(",") if d),
        start=time.fromisoformat(str(r[4])),
        end=time.fromisoformat(str(r[5])),
        categories=frozenset(json.loads(str(r[6]))),
        services=frozenset(json.loads(str(r[7]))),
        id=int(r[0]),
    )


def _schedule_json(s: Schedule) -> dict[str, object]:
    name, kind, weekdays, start, end, cats, services = _schedule_row(s)
    return {
        "name": name, "kind": kind, "weekdays": weekdays, "start": start, "end": end,
        "categories": cats, "services": services,
    }


def _schedule_from_json(d: dict[str, object]) -> Schedule:
    return _schedule(
        (0, d["name"], d["kind"], d["weekdays"], d["start"], d["end"], d["categories"],
         d["services"])
    )


def _child(r: _Row) -> Child:
    return Child(int(r[0]), str(r[1]), date.fromisoformat(str(r[2])), str(r[3]))


def _account(r: _Row) -> Account:
    return Account(
        int(r[0]), str(r[1]), str(r[2]), str(r[3]), _dt_req(r[4]), _dt_req(r[5])
    )


def _token(r: _Row) -> ApiToken:
    return ApiToken(int(r[0]), int(r[1]), str(r[2]), str(r[3]), _dt_req(r[4]))


def _request(r: _Row) -> AccessRequest:
    return AccessRequest(
        id=int(r[0]),
        child_id=None if r[1] is None else int(r[1]),
        device_id=None if r[2] is None else int(r[2]),
        client=str(r[3]),
        domain=str(r[4]),
        reason=str(r[5]),
        message=str(r[6]),
        created=_dt_req(r[7]),
        status=str(r[8]),
        answered_by=str(r[9]),
        answered_at=_dt(r[10]),
        minutes=None if r[11] is None else int(r[11]),
    )


def _feed(r: _Row) -> FeedStatus:
    return FeedStatus(
        name=str(r[0]),
        last_try=_dt(r[1]),
        last_success=_dt(r[2]),
        entries=int(r[3]),
        rejected=int(r[4]),
        error=str(r[5]),
        etag=str(r[6]),
        last_modified=str(r[7]),
        sha256=str(r[8]),
    )


def _outbox(r: _Row) -> OutboxRow:
    return OutboxRow(
        id=int(r[0]), channel=str(r[1]), recipient=str(r[2]), kind=str(r[3]),
        payload=json.loads(r[4]), created=_dt_req(r[5]), next_try=_dt_req(r[6]),
        attempts=int(r[7]), status=str(r[8]), last_error=str(r[9]),
    )


def _report(r: _Row) -> Report:
    return Report(
        id=int(r[0]), created=_dt_req(r[1]), kind=str(r[2]), domain=str(r[3]),
        source=str(r[4]), reporter=str(r[5]), category=str(r[6]), note=str(r[7]),
        child_id=r[8], device_id=r[9], status=str(r[10]), decided_by=str(r[11]),
        decided_at=_dt(r[12]), min_age=r[13],
    )
