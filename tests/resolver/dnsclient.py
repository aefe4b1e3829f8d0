"""Real DNS clients for resolver tests: dig/kdig subprocesses, dnspython, raw sockets."""

from __future__ import annotations

import asyncio
import socket
import time

import dns.asyncquery
import dns.edns
import dns.message
import dns.rdatatype

from tests.support.tools import require

Addr = tuple[str, int]


async def dig(addr: Addr, *args: str, tool: str = "dig", timeout: float = 10.0) -> str:
    """Run dig (or kdig) against addr; return its stdout."""
    host, port = addr
    proc = await asyncio.create_subprocess_exec(
        require(tool),
        f"@{host}",
        "-p",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return out.decode() + err.decode()


async def ask(
    addr: Addr,
    name: str,
    rdtype: str = "A",
    *,
    edns: int | None = 0,
    payload: int = 1232,
    options: list[dns.edns.Option] | None = None,
    want_dnssec: bool = False,
    tcp: bool = False,
    timeout: float = 3.0,
    source: str | None = None,
    ignore_trailing: bool = False,
) -> dns.message.Message:
    """One query with dnspython (UDP unless tcp); edns=None sends no OPT."""
    q = dns.message.make_query(
        name,
        rdtype,
        use_edns=edns if edns is not None else False,
        payload=payload,
        options=options,
        want_dnssec=want_dnssec,
    )
    host, port = addr
    if tcp:
        return await dns.asyncquery.tcp(q, host, port=port, timeout=timeout, source=source)
    return await dns.asyncquery.udp(
        q,
        host,
        port=port,
        timeout=timeout,
        source=source,
        raise_on_truncation=False,
        ignore_trailing=ignore_trailing,
    )


async def raw_udp(addr: Addr, payload: bytes, *, timeout: float = 0.5) -> bytes | None:
    """Send one datagram; the reply bytes, or None after timeout."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, addr)
        await loop.sock_sendall(sock, payload)
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)
        except TimeoutError:
            return None
    finally:
        sock.close()


async def timed_udp(
    addr: Addr, payload: bytes, *, timeout: float = 0.5
) -> tuple[bytes | None, float]:
    start = time.perf_counter()
    got = await raw_udp(addr, payload, timeout=timeout)
    return got, time.perf_counter() - start


def rcode_of(data: bytes) -> int:
    return data[3] & 0x0F


def header(
    qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return b"".join(x.to_bytes(2, "big") for x in (qid, flags, qd, an, ns, ar))


def qname(*labels: bytes) -> bytes:
    return b"".join(bytes((len(x),)) + x for x in labels) + b"\x00"
