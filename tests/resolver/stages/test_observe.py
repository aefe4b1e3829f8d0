"""Observe, the first stage (leave only): every query passes on and its reply comes back
unchanged; it is counted, its lookup queued for the activity log at most once a minute, and the
device's sighting queued."""

from __future__ import annotations

from datetime import date

from policy.model import Action, Child, Device, Profile, Verdict
from resolver.metrics import Metrics
from resolver.observe import BatchQueue, Observe, Sightings
from resolver.pipeline import Query, Reply
from tests.resolver.stages.recorder import Next, query, run

KID = Profile(Child(1, "Lan", date(2015, 5, 1)))
TABLET = Device(10, "tablet", ("192.168.1.20",), owner=1)


class Sink:
    """Where the queued rows land when the queue is flushed (the store, in the server)."""

    def __init__(self) -> None:
        self.queue: BatchQueue = BatchQueue(self._take, lambda row: row)
        self.rows: list[tuple] = []

    async def _take(self, batch: list[tuple]) -> None:
        self.rows.extend(batch)

    async def flushed(self) -> list[tuple]:
        await self.queue.flush()
        return self.rows


def observe(**kw: object) -> tuple[Observe, Metrics, Sink, Sink]:
    metrics = Metrics()
    activity, seen = Sink(), Sink()
    stage = Observe(metrics, activity=activity.queue, sightings=Sightings(seen.queue), **kw)
    return stage, metrics, activity, seen


def from_kid(name: str = "site.example", qtype: str = "A", **kw: object) -> Query:
    q = query(name, qtype, client="192.168.1.20", **kw)
    q.device, q.profile = TABLET, KID
    return q


async def test_every_query_passes_on_and_the_reply_comes_back_unchanged():
    stage, metrics, _, _ = observe()
    nxt = Next()
    assert await run(stage, from_kid(), nxt) is nxt.reply
    assert len(nxt.queries) == 1
    assert metrics.queries == {("answered", 1): 1}
    assert sum(metrics.durations["upstream"]) == 1


async def test_a_lookup_is_logged_once_a_minute_and_a_new_one_at_once():
    stage, _, activity, _ = observe()
    nxt = Next()
    for _ in range(3):
        await run(stage, from_kid(), nxt)
    await run(stage, from_kid(qtype="AAAA"), nxt)
    rows = await activity.flushed()
    assert [(r[1], r[2], r[4], r[5]) for r in rows] == [
        ("192.168.1.20", TABLET, "site.example", 1),
        ("192.168.1.20", TABLET, "site.example", 28),
    ]


async def test_refused_queries_are_counted_but_not_logged():
    stage, metrics, activity, _ = observe()
    refused = Next(lambda q: Reply(b"refused", "local", "ratelimited"))
    await run(stage, from_kid(), refused)
    assert metrics.queries == {("ratelimited", 1): 1}
    assert await activity.flushed() == []


async def test_a_profile_that_logs_nothing_still_logs_security_blocks():
    stage, _, activity, _ = observe()
    quiet = Profile(None, mode="adults", log_queries=False)

    def q(name: str, verdict: Verdict) -> Query:
        query_ = from_kid(name)
        query_.profile, query_.verdict = quiet, verdict
        return query_

    nxt = Next()
    await run(stage, q("site.example", Verdict(Action.ALLOW)), nxt)
    await run(stage, q("malware.example", Verdict(Action.BLOCK, "security:malware")), nxt)
    assert [row[4] for row in await activity.flushed()] == ["malware.example"]


async def test_sightings_once_per_address_and_forwarded_macs_alone():
    stage, _, _, seen = observe()
    nxt = Next()
    for _ in range(2):
        await run(stage, from_kid(), nxt)
    await run(stage, query(client="192.168.1.1", mac="aa:bb:cc:dd:ee:ff", forwarded=True), nxt)
    assert [(ip, mac) for ip, mac, _ in await seen.flushed()] == [
        ("192.168.1.20", None),
        ("", "aa:bb:cc:dd:ee:ff"),  # never paired with the router's address
    ]


async def test_without_log_queries_nothing_is_queued_for_the_log():
    stage, metrics, activity, _ = observe(log_queries=False)
    await run(stage, from_kid(), Next())
    assert await activity.flushed() == [] and metrics.queries == {("answered", 1): 1}
