"""The stage chain: order pinned, enter/leave semantics, Query/Reply shapes."""

from __future__ import annotations

from dnslib import DNSRecord

from resolver import wire
from resolver.cache import Cache, Forward
from resolver.enforce import Enforce
from resolver.guard import Acl, RateLimit
from resolver.identify import Identify
from resolver.localnames import LocalNames
from resolver.observe import Observe
from resolver.pipeline import Query, Reply, chain


async def test_stage_order_is_pinned(nestguard_server, fake_upstream, make_config):
    running = await nestguard_server(make_config(fake_upstream))
    kinds = [type(s) for s in running.pipeline.stages]
    assert kinds == [Observe, Acl, RateLimit, LocalNames, Identify, Enforce, Cache]
    assert isinstance(running.pipeline._last, Forward)


def _query() -> Query:
    data = bytes(DNSRecord.question("a.example", "A").pack())
    return Query(data, wire.parse_query(data), "127.0.0.1", "udp", 0.0)


class Recorder:
    def __init__(self, log: list[str], name: str, *, answer: bool = False) -> None:
        self.log, self.name, self.answer = log, name, answer

    def enter(self, query: Query) -> Reply | None:
        self.log.append(f"enter {self.name}")
        return Reply(b"x", "local", "local") if self.answer else None

    def leave(self, query: Query, reply: Reply) -> Reply:
        self.log.append(f"leave {self.name}")
        return reply


async def test_answering_stage_stops_the_chain_and_outer_leaves_run():
    log: list[str] = []

    async def last(query: Query) -> Reply:
        raise AssertionError("not reached")

    pipe = chain(
        [Recorder(log, "a"), Recorder(log, "b", answer=True), Recorder(log, "c")], last=last
    )
    reply = pipe.answer_now(_query())
    assert reply is not None and reply.wire == b"x"
    assert log == ["enter a", "enter b", "leave a"]


async def test_upstream_path_runs_every_leave_innermost_first():
    log: list[str] = []

    async def last(query: Query) -> Reply:
        log.append("last")
        return Reply(b"u", "upstream")

    pipe = chain([Recorder(log, "a"), Recorder(log, "b")], last=last)
    query = _query()
    assert pipe.answer_now(query) is None
    reply = await pipe.finish(query)
    assert reply.wire == b"u"
    assert log == ["enter a", "enter b", "last", "leave b", "leave a"]
    log.clear()
    assert (await pipe(_query())).wire == b"u"
    assert log == ["enter a", "enter b", "last", "leave b", "leave a"]
