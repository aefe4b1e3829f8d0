"""A whole household behind a running resolver: store, policy, lists, rater (no web listener).

    hh, addr = await household_server(feeds=[...])

Devices are simulated by source addresses 127.0.0.2, 127.0.0.3, … (dig -b / dnspython source).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from resolver.assembly import open_resolver
from resolver.config import Config, ListsConfig
from resolver.root import Household, open_household
from tests.conftest import build_config
from tests.support.upstream import FakeUpstream

Addr = tuple[str, int]


@pytest.fixture
async def household_server(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> AsyncIterator[Callable[..., Awaitable[tuple[Household, Addr]]]]:
    async with AsyncExitStack() as stack:

        async def start(
            *, feeds: tuple[Any, ...] = (), policy: dict[str, Any] | None = None,
            lists: ListsConfig | None = None, config: Config | None = None,
        ) -> tuple[Household, Addr]:
            cfg = config or build_config(fake_upstream, policy=policy)
            cfg = dataclasses.replace(
                cfg, data_dir=tmp_path / "data", feeds=tuple(feeds),
                lists=lists or cfg.lists,
            )
            hh = await stack.enter_async_context(open_household(cfg))
            if feeds:
                await hh.sync_feeds()  # the first sync, done before any query
            services = hh.resolver_services()
            services.arp_path = None  # type: ignore[attr-defined]
            # same stack, entered after the household: the resolver stops (and flushes its
            # activity queue into the store) before the store closes
            running = await stack.enter_async_context(open_resolver(cfg, services))
            return hh, running.addresses[0]

        yield start
