"""A rule typed in the web UI blocks the name a browser asks for: `straße.de` is
`xn--strae-oqa.de` (IDNA 2008 / UTS #46), not `strasse.de` (IDNA 2003)."""

from __future__ import annotations

from typing import Any

import pytest

from policy.decide import decide
from policy.model import Action
from policy.reload import build_policy
from tests.policy.conftest import DictIndex
from tests.webui.conftest import Harness, setup_and_login
from tests.webui.test_api import Api
from tests.webui.test_pages import Page, add_child


@pytest.fixture
async def ui(client: Any) -> Page:
    await setup_and_login(client)
    return Page(client)


def _verdicts(harness: Harness, cid: int, *names: str) -> list[Action]:
    now = harness.now()
    policy = build_policy(harness.store, harness.services.categories, now=now)
    profile = policy.profiles[cid]
    return [decide(profile, name, now, DictIndex()).action for name in names]


async def test_straße_rule_typed_in_the_form_blocks_what_the_browser_asks(
    ui: Page, harness: Harness
) -> None:
    cid = await add_child(ui)
    await ui.post(f"/children/{cid}/rules", {"domain": "Straße.de", "kind": "deny"},
                    page=f"/children/{cid}")
    assert [r.domain for r in harness.store.rules(cid)] == ["xn--strae-oqa.de"]
    html = await ui.get(f"/children/{cid}")
    assert "xn--strae-oqa.de" in html or "straße.de" in html
    blocked, sub, other = _verdicts(
        harness, cid, "xn--strae-oqa.de", "www.xn--strae-oqa.de", "strasse.de"
    )
    assert blocked == Action.BLOCK and sub == Action.BLOCK
    assert other != Action.BLOCK  # strasse.de is another site


async def test_a_label_ending_in_a_hyphen_is_a_rule_like_in_the_lists(
    ui: Page, harness: Harness
) -> None:
    cid = await add_child(ui)
    await ui.post(f"/children/{cid}/rules", {"domain": "foo-.blogspot.com", "kind": "deny"},
                    page=f"/children/{cid}")
    assert _verdicts(harness, cid, "foo-.blogspot.com") == [Action.BLOCK]


async def test_api_and_form_store_the_same_idn_rule(client: Any, harness: Harness) -> None:
    api = Api(client, await setup_and_login(client))
    _, child = await api.call("POST", "/api/v1/children", {"name": "Lan", "born": "2014-03-01"})
    status, rule = await api.call("POST", f"/api/v1/children/{child['id']}/rules",
                                  {"domain": "https://www.STRASSE.de./", "kind": "deny"})
    assert status == 201 and rule["domain"] == "www.strasse.de"
    status, rule = await api.call("POST", f"/api/v1/children/{child['id']}/rules",
                                  {"domain": "straße.de.", "kind": "deny"})
    assert status == 201 and rule["domain"] == "xn--strae-oqa.de"
    # a MAC with dashes names the same device in the UI as on the CLI
    harness.store.upsert_device("aa:bb:cc:dd:ee:0f")
    status, body = await api.call("PUT", "/api/v1/devices/AA-BB-CC-DD-EE-0F", {"name": "Tablet"})
    assert status == 200, body
    assert harness.store.device_by_identifier("aabb.ccdd.ee0f").name == "Tablet"
