"""Enforce: ask the policy for a verdict and answer blocks and safe-search rewrites.

The decider is injected: ``decider(profile, qname, qtype, now) -> Verdict`` (canonical qname).
Without one everything is allowed. Blocks are answered from prebuilt record templates (no dnslib
per query, blocks are never cached):

- BlockStyle.DEFAULT: per config `block_answer`: "null" (A 0.0.0.0, AAAA ::, other types
  NODATA), "nxdomain", or "blockpage" (A the web UI's IPv4, AAAA its IPv6 if configured, other
  types NODATA); TTL `block_ttl` (default 10, as AdGuard Home);
- BlockStyle.NXDOMAIN -> NXDOMAIN (bypass canaries); BlockStyle.NODATA -> NODATA (DDR).

With EDNS every local answer carries an Extended DNS Error (RFC 8914): 17 Filtered for the
parent's own rules (parent:*, schedule:*, paused, grants, budget:*), 15 Blocked for lists and
categories; its text is the verdict's reason.

REWRITE (safe search): the query goes on with `resolve_*` set to the target, so Cache and
Forward resolve the target; on the way back the answer becomes CNAME qname -> target plus the
target's records.

CNAME cloaking: every CNAME / HTTPS / SVCB target in an answer (upstream or cache, which
keeps the targets with the entry) is checked too; a blocked target blocks the answer.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from dnslib import CNAME, QTYPE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from policy.memo import Memo
from policy.model import Action, BlockStyle, Profile, Verdict
from resolver import wire
from resolver.pipeline import Query, Reply

log = logging.getLogger(__name__)

Decider = Callable[[Profile, str, int, datetime], Verdict]

_FILTERED_PREFIXES = (
    "parent:", "schedule:", "paused", "grant", "allowlist-mode", "service:", "budget:"
)


@dataclass(frozen=True, slots=True)
class BlockSettings:
    answer: str = "null"  # "null" | "nxdomain" | "blockpage"
    ttl: int = 10
    blockpage_ipv4: str | None = None
    blockpage_ipv6: str | None = None


class WallClock:
    """`now()` as an aware datetime in the household's zone, rebuilt at most once a second."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        self._tz = tz
        self._sec = -1
        self._now = datetime.now(tz)

    def __call__(self) -> datetime:
        t = time.time()
        sec = int(t)
        if sec != self._sec:
            self._sec = sec
            self._now = datetime.fromtimestamp(t, self._tz)
        return self._now


def ede_code(reason: str) -> int:
    return wire.EDE_FILTERED if reason.startswith(_FILTERED_PREFIXES) else wire.EDE_BLOCKED


class Enforce:
    """Stage: enter decides and answers blocks; leave does rewrites and CNAME cloaking."""

    def __init__(
        self,
        decider: Decider | None = None,
        *,
        block: BlockSettings | None = None,
        now: Callable[[], datetime] | None = None,
        mode: Callable[[], str] | None = None,
        index: Any = None,
    ) -> None:
        self._decider = decider
        self._index = index  # Live[Index] the decider reads: a new one clears the memo at once
        self._memo_lists: object = index.value if index is not None else None
        self._now = now or WallClock()
        # (id(profile), qname, qtype) -> (profile, verdict, epoch); an entry counts only in the
        # epoch it was made in: a new second or a new index starts a new one (no clear())
        self._memo: Memo[tuple[int, str, int], tuple[Profile, Verdict, object]] = Memo(8192)
        self._epoch: object = object()
        self._memo_now: datetime | None = None
        self._memo_second: datetime | None = None
        b = block or BlockSettings()
        self._block = b
        self._mode_of = mode  # the parents' choice in the web UI, read per block answer
        self._ttl = b.ttl
        self._mode = b.answer
        self._answers = self._templates(b.answer)
        # block answers without their ID and question (see `block`)
        self._blocks: dict[tuple[object, ...], tuple[bytes, bytes, int]] = {}

    def _templates(self, mode: str) -> dict[int, bytes]:
        """Prebuilt A/AAAA block records for a block mode (no dnslib per query)."""
        b = self._block
        if mode == "blockpage" and (b.blockpage_ipv4 or b.blockpage_ipv6):
            a = ipaddress.IPv4Address(b.blockpage_ipv4).packed if b.blockpage_ipv4 else None
            aaaa = ipaddress.IPv6Address(b.blockpage_ipv6).packed if b.blockpage_ipv6 else None
        else:
            a, aaaa = bytes(4), bytes(16)
        answers: dict[int, bytes] = {}
        if a is not None:
            answers[wire.T_A] = wire.rr(wire.T_A, b.ttl, a)
        if aaaa is not None:
            answers[wire.T_AAAA] = wire.rr(wire.T_AAAA, b.ttl, aaaa)
        return answers

    # ------------------------------------------------------------------ hooks

    def enter(self, query: Query) -> Reply | None:
        decider = self._decider
        profile = query.profile
        if decider is None or profile is None:
            return None
        q = query.question
        # self.verdict, inlined for the common case (a memo hit within the same clock tick)
        now = self._now()
        index = self._index
        if now is self._memo_now and (index is None or index.value is self._memo_lists):
            hit = self._memo.get((id(profile), q.name, q.qtype))
            if hit is not None and hit[0] is profile and hit[2] is self._epoch:
                verdict = hit[1]
            else:
                verdict = self.verdict(profile, q.name, q.qtype, now)
        else:
            verdict = self.verdict(profile, q.name, q.qtype, now)
        query.verdict = verdict
        action = verdict.action
        if action is Action.ALLOW:
            return None
        if action is Action.BLOCK:
            return self.block(query, verdict)
        if action is Action.REWRITE and verdict.target:
            target = verdict.target.rstrip(".").lower()
            query.resolve_name = target
            query.resolve_labels = wire.labels_of(target)
        return None

    def leave(self, query: Query, reply: Reply) -> Reply:
        verdict = query.verdict
        if verdict is not None and verdict.action is Action.REWRITE and query.resolve_labels:
            return self._rewrite(query, reply)
        targets = reply.targets
        if not targets or self._decider is None or query.profile is None:
            return reply
        for target in targets:
            v = self.verdict(query.profile, target, query.question.qtype)
            if v.action is Action.BLOCK:
                query.verdict = v
                return self.block(query, v)
        return reply

    def verdict(
        self, profile: Profile, qname: str, qtype: int, now: datetime | None = None
    ) -> Verdict:
        """The decider's verdict, memoised within one second of the household clock.

        A new policy snapshot brings new Profile objects, which miss at once; a new list index
        ends the memo's epoch when the stage knows it (`index`), else counts within a second.
        (The default WallClock returns one object per second, so the check is an identity
        test; other clocks are compared by the second.) Entries of past epochs are not
        cleared but simply miss, and the memo forgets its oldest beyond 8,192
        (policy/memo.py): emptying a second's worth of verdicts at once, ~2,000 under a
        stream of new names, held the loop 1-2 ms every second.
        """
        if now is None:
            now = self._now()
        index = self._index
        if index is not None and index.value is not self._memo_lists:
            self._epoch = object()
            self._memo_lists = index.value
        if now is not self._memo_now:
            second = now.replace(microsecond=0)
            if second != self._memo_second:
                self._epoch = object()
                self._memo_second = second
            self._memo_now = now
        key = (id(profile), qname, qtype)
        hit = self._memo.get(key)
        epoch = self._epoch
        if hit is not None and hit[0] is profile and hit[2] is epoch:
            return hit[1]
        assert self._decider is not None
        verdict = self._decider(profile, qname, qtype, now)
        self._memo.put(key, (profile, verdict, epoch))
        return verdict

    # ------------------------------------------------------------------ answers

    def block(self, query: Query, verdict: Verdict) -> Reply:
        """The block answer: a template per (reason, style, question type/class, flags,
        EDNS) with only the ID and the question bytes spliced in (a new name costs no
        building)."""
        q = query.question
        if self._mode_of is not None:
            mode = self._mode_of()
            if mode != self._mode:
                self._mode, self._answers = mode, self._templates(mode)
                self._blocks.clear()
        edns = q.edns
        key = (verdict.reason, verdict.style, q.qtype, q.qclass, q.flags,
               None if edns is None else edns.do)
        template = self._blocks.get(key)
        if template is None:
            out, rcode = self._build_block(query, verdict)
            if len(self._blocks) >= 1024:
                self._blocks.clear()
            self._blocks[key] = template = (out[2:12], out[q.end :], rcode)
        head, tail, rcode = template
        req = query.request
        query.replay_until = math.inf  # a constant TTL: Replay caps it (replay.py)
        return Reply(req[:2] + head + req[12 : q.end] + tail, "policy", "blocked", rcode=rcode)

    def _build_block(self, query: Query, verdict: Verdict) -> tuple[bytes, int]:
        q = query.question
        style = verdict.style
        ede = (ede_code(verdict.reason), verdict.reason)
        rcode = wire.NOERROR
        answer = b""
        if style is BlockStyle.NXDOMAIN or (
            style is BlockStyle.DEFAULT and self._mode == "nxdomain"
        ):
            rcode = wire.NXDOMAIN
        elif style is BlockStyle.DEFAULT and q.qclass == wire.C_IN:
            answer = self._answers.get(q.qtype, b"")
        out = wire.build_reply(
            q, query.request, rcode=rcode, answer=answer, ancount=1 if answer else 0, ede=ede
        )
        return out, rcode

    def _rewrite(self, query: Query, reply: Reply) -> Reply:
        """CNAME qname -> target, then the target's records (dnslib: rewrites only)."""
        q = query.question
        if reply.wire is None or reply.rcode not in (wire.NOERROR, wire.NXDOMAIN):
            return reply if reply.wire is not None else self._servfail(query)
        target_labels = query.resolve_labels or ()
        try:
            got = DNSRecord.parse(reply.wire)
            out = DNSRecord(
                DNSHeader(
                    id=int.from_bytes(query.request[:2], "big"),
                    qr=1,
                    ra=1,
                    rd=(q.flags >> 8) & 1,
                    rcode=got.header.rcode,
                ),
                q=DNSQuestion(DNSLabel(list(q.labels)), q.qtype, q.qclass),
            )
            out.add_answer(
                RR(
                    DNSLabel(list(q.labels)),
                    QTYPE.CNAME,
                    ttl=self._ttl,
                    rdata=CNAME(DNSLabel(list(target_labels))),
                )
            )
            for rr in got.rr:
                out.add_answer(rr)
            packed = bytes(out.pack())
        except Exception:
            log.exception("cannot build the safe-search answer for %s", q.name)
            return self._servfail(query)
        req = query.request
        opt = wire.opt_for(q)
        ar = 1 if opt else 0
        data = (
            packed[:2]
            + bytes((packed[2] | (req[2] & 0x01), packed[3] | (req[3] & 0x10)))
            + packed[4:10]
            + bytes((0, ar))
            + req[12 : q.end]
            + packed[q.end :]
            + opt
        )
        return Reply(data, "policy", "rewritten", rcode=got.header.rcode)

    def _servfail(self, query: Query) -> Reply:
        return Reply(
            wire.build_reply(query.question, query.request, rcode=wire.SERVFAIL),
            "error",
            "servfail",
            rcode=wire.SERVFAIL,
        )
