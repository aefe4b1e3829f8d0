"""What every per-stage test uses: a query as the server builds it, a fake next stage that
records what reaches it, and `run` to drive one stage in front of it as the chain does."""

from __future__ import annotations

import time
from collections.abc import Callable

import dns.message
import dns.rdatatype

from resolver import wire
from resolver.pipeline import Query, Reply, chain


def query(
    name: str = "www.example",
    qtype: str = "A",
    *,
    client: str = "127.0.0.1",
    edns: int | None = 0,
    mac: str | None = None,
    forwarded: bool = False,
) -> Query:
    """A query for `name` from `client`, parsed as the server parses it (wire.parse_query)."""
    msg = dns.message.make_query(name, dns.rdatatype.from_text(qtype), use_edns=edns)
    data = msg.to_wire()
    return Query(
        data, wire.parse_query(data), client, "udp", time.monotonic(),
        mac=mac, forwarded=forwarded,
    )


class Next:
    """A fake next stage: keeps every query that reaches it and answers with `answer(query)`
    (default: an upstream-looking reply the test can recognise by identity)."""

    def __init__(self, answer: Callable[[Query], Reply] | None = None) -> None:
        self.queries: list[Query] = []
        self._answer = answer
        self.reply = Reply(b"from-next", "upstream", "answered")

    async def __call__(self, q: Query) -> Reply:
        self.queries.append(q)
        return self._answer(q) if self._answer is not None else self.reply

    @property
    def called(self) -> bool:
        return bool(self.queries)


async def run(stage: object, q: Query, nxt: Next) -> Reply:
    """Drive `stage` (its enter and leave hooks) in front of `nxt`, as resolver.pipeline does."""
    return await chain([stage], last=nxt)(q)


def message(reply: Reply) -> dns.message.Message:
    """The reply as a client reads it."""
    assert reply.wire is not None
    return dns.message.from_wire(reply.wire)


def ede(msg: dns.message.Message) -> list[tuple[int, str]]:
    return [(o.code, o.text or "") for o in msg.options if o.otype == 15]
