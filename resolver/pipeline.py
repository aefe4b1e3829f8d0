"""The query path: `Query`, `Reply`, and `chain()` composing the stages.

A stage is an object with up to two plain (sync) methods:

- ``enter(query) -> Reply | None``: answer now, or return None to pass the query on;
- ``leave(query, reply) -> Reply``: see (and possibly replace) the reply on its way out. Leave
  hooks run, innermost first, for the stages *before* the one that answered.

Only the last stage (Forward) is async. So a cache hit or a block answer runs with no coroutine
at all (`Pipeline.answer_now`); the server awaits `Pipeline.finish` only on the upstream path
(STYLE.md "The hot path").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from policy.model import Device, Profile, Verdict
from resolver.wire import AddressAnswer, Question

if TYPE_CHECKING:
    from dnslib import DNSRecord


@dataclass(slots=True)
class Query:
    """One query on its way through the stages. One writer per field."""

    request: bytes  # the client's packet
    question: Question  # parsed by the server (wire.parse_query)
    client_ip: str
    transport: str  # "udp" | "tcp"
    received_at: float  # time.monotonic() when read
    mac: str | None = None  # EDNS add-mac option (server) or neighbour table (Identify)
    # the MAC came in the query from a trusted forwarder (server): client_ip is the
    # forwarder's address, not the device's
    forwarded: bool = False
    device: Device | None = None  # Identify
    profile: Profile | None = None  # Identify
    verdict: Verdict | None = None  # Enforce
    # What Cache/Forward resolve: the question, or the safe-search target (Enforce writes).
    resolve_labels: tuple[bytes, ...] | None = None
    resolve_name: str | None = None
    stale: Any = None  # an expired cache entry that may be served (Cache writes)
    lan: bool = False  # a LAN name for the home router, never the upstreams (LocalNames writes)
    # until when (cache clock) the answer may be replayed to a repeat of this packet: the stage
    # that answers sets it (Cache: the entry's expiry; Enforce: a block); 0 = never (replay.py)
    replay_until: float = 0.0
    # Cache: the entry a replay of this answer takes its TTLs from at each new second
    replay_entry: Any = None


@dataclass(slots=True)
class Reply:
    """An answer: finished wire bytes, or a dnslib record (upstream) to turn into them.

    source: "policy" | "cache" | "upstream" | "error" | "local".
    outcome: the metrics outcome (answered, cached, blocked, rewritten, refused, servfail, ...).
    targets: canonical CNAME / HTTPS / SVCB targets in the answer (Enforce: CNAME cloaking).
    """

    wire: bytes | None
    source: str
    outcome: str = "answered"
    targets: tuple[str, ...] = ()
    record: DNSRecord | AddressAnswer | None = None  # an upstream's answer (forward.py)
    rcode: int = 0


class Stage(Protocol):
    """Documentation only: stages define `enter` and/or `leave` (both optional)."""

    def enter(self, query: Query) -> Reply | None: ...

    def leave(self, query: Query, reply: Reply) -> Reply: ...


Last = Callable[[Query], Awaitable[Reply]]
Enter = Callable[[Query], "Reply | None"]
Leave = Callable[[Query, Reply], Reply]


class Pipeline:
    """The composed stages. Build with `chain`."""

    __slots__ = ("stages", "_plan", "_leaves", "_last")

    def __init__(self, stages: Sequence[object], last: Last) -> None:
        self.stages = tuple(stages)
        hooks: list[tuple[Enter | None, Leave | None]] = [
            (getattr(s, "enter", None), getattr(s, "leave", None)) for s in self.stages
        ]
        # for each stage with an enter hook: the leave hooks to run if it answers (outer ones,
        # innermost first)
        plan: list[tuple[Enter, tuple[Leave, ...]]] = []
        for i, (enter, _) in enumerate(hooks):
            if enter is not None:
                outer = tuple(leave for _, leave in reversed(hooks[:i]) if leave is not None)
                plan.append((enter, outer))
        self._plan = tuple(plan)
        self._leaves: tuple[Leave, ...] = tuple(
            leave for _, leave in reversed(hooks) if leave is not None
        )
        self._last = last

    def answer_now(self, query: Query) -> Reply | None:
        """Run the enter hooks; if one answers, run the outer leave hooks and return the reply.

        None means every stage passed: call `finish` (the upstream path).
        """
        for enter, outer in self._plan:
            reply = enter(query)
            if reply is not None:
                for leave in outer:
                    reply = leave(query, reply)
                return reply
        return None

    async def finish(self, query: Query) -> Reply:
        """After `answer_now` returned None: await the last stage, then every leave hook."""
        reply = await self._last(query)
        for leave in self._leaves:
            reply = leave(query, reply)
        return reply

    async def __call__(self, query: Query) -> Reply:
        reply = self.answer_now(query)
        if reply is None:
            reply = await self.finish(query)
        return reply


def chain(stages: Sequence[object], *, last: Last) -> Pipeline:
    """Compose stages (order fixed by the caller, resolver/assembly.py) in front of `last`."""
    return Pipeline(stages, last)
