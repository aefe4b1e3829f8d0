"""What the pages say after a parent acts (issue 14), over real HTTP: an allow that replaces
a block says so, on the Requests page and from Activity."""

from __future__ import annotations

import html as html_lib

from policy.decide import decide
from policy.model import Match, Verdict
from policy.reload import build_policy
from tests.policy.conftest import DictIndex
from tests.webui.conftest import Harness
from tests.webui.test_pages import Page, add_child, page  # noqa: F401 (fixture)


def real_policy(harness: Harness) -> None:
    """Every write rebuilds the policy as the resolver does; the block page asks decide()."""
    index = DictIndex([
        ("casino.example", Match("gambling", 18, "ut1-gambling", line=12)),
        ("dns.google", Match("bypass", 99, "bypass-builtin", line=14)),
    ])

    def nudge() -> None:
        harness.nudges.append(1)
        harness.services.live_policy.value = build_policy(
            harness.store, harness.services.categories, now=harness.now())

    def explain(ip: str, name: str) -> Verdict:
        _, profile = harness.services.live_policy.value.profile_for(ip)
        return decide(profile, name, harness.now(), index)

    harness.services.nudge = nudge
    harness.services.explain = explain
    harness.services.allowed_hosts = ("127.0.0.1",)
    nudge()


async def test_an_allow_replacing_a_block_says_so(page: Page, harness: Harness  # noqa: F811
                                                  ) -> None:
    real_policy(harness)
    cid = await add_child(page)
    harness.store.add_rule(cid, "casino.example", "deny")
    req = harness.store.add_request(child_id=cid, device_id=None, client="127.0.0.2",
                                    domain="casino.example", reason="parent:deny", message="")
    loc = await page.post(f"/requests/{req.id}/approve", {"minutes": "0"}, page="/requests")
    assert loc == f"/requests?yes={req.id}&done=approved_replaced"
    text = html_lib.unescape(await page.get(loc))
    assert "Việc này thay cho lệnh chặn bạn đã đặt cho trang này." in text
    assert [(r.domain, r.kind) for r in harness.store.rules(cid)] == [
        ("casino.example", "allow")]

    harness.store.add_rule(cid, "games.example", "deny")
    loc = await page.post(f"/children/{cid}/allow", {
        "domain": "games.example", "minutes": "0", "back": f"/activity?child={cid}"},
        page="/activity")
    assert loc == f"/activity?child={cid}&done=allowed_replaced"
    # a time-limited yes leaves the block in place, and first: the page says so
    harness.store.add_rule(cid, "quiz.example", "deny")
    loc = await page.post(f"/children/{cid}/allow", {
        "domain": "quiz.example", "minutes": "60", "back": "/activity"}, page="/activity")
    assert loc == "/activity?done=allowed_but_denied"
    assert "quy tắc “Chặn” của bạn cho trang này được ưu tiên" in html_lib.unescape(
        await page.get(loc))
    loc = await page.post(f"/children/{cid}/allow", {
        "domain": "wiki.example", "minutes": "60", "back": "/activity"}, page="/activity")
    assert loc == "/activity?done=allowed"


async def test_a_while_yes_under_the_parents_own_block_says_it_stays_blocked(
    page: Page, harness: Harness  # noqa: F811
) -> None:
    real_policy(harness)
    cid = await add_child(page)
    harness.store.add_rule(cid, "casino.example", "deny")
    req = harness.store.add_request(child_id=cid, device_id=None, client="127.0.0.2",
                                    domain="casino.example", reason="parent:deny", message="")
    loc = await page.post(f"/requests/{req.id}/approve", {"minutes": "30"}, page="/requests")
    text = html_lib.unescape(await page.get(loc))
    assert "casino.example vẫn bị chặn: quy tắc “Chặn” của bạn" in text


async def test_a_strangers_device_is_not_greeted_as_the_strictest_child(
    page: Page, harness: Harness  # noqa: F811
) -> None:
    """An unassigned device is filtered under the youngest child's profile; its block page
    must not say "Hello Na" nor file its request under Na."""
    real_policy(harness)
    await add_child(page, name="Na", age=7)
    harness.store.seen([("127.0.0.1", None, harness.now())])  # the test client's address
    harness.services.nudge()
    casino = {"Host": "casino.example"}
    text = html_lib.unescape(await (await page.client.get("/", headers=casino)).text())
    assert "Trang này đã bị chặn" in text and "Na" not in text
    token = text.split('name="token" value="', 1)[1].split('"', 1)[0]
    await page.client.post("/__nestguard/ask", headers=casino, data={"token": token},
                           allow_redirects=False)
    [req] = harness.store.requests()
    assert req.child_id is None


async def test_activity_pages_with_show_more(page: Page, harness: Harness  # noqa: F811
                                             ) -> None:
    """400 look-ups made a 17,966 px page: it shows 200, then "show more" (filters kept)."""
    from policy.model import QueryEvent
    from webui.views import ACTIVITY_PAGE

    cid = await add_child(page)
    now = harness.now()
    harness.store.log_queries([
        QueryEvent(now, "127.0.0.2", None, cid, f"site{i}.example", "A", "block",
                   "category:gambling:18+") for i in range(ACTIVITY_PAGE + 50)])
    text = await page.get(f"/activity?child={cid}")
    assert text.count('class="site blocked"') == ACTIVITY_PAGE
    more = html_lib.unescape(text.split('class="button" href="', 1)[1].split('"', 1)[0])
    assert more == f"/activity?child={cid}&rows={2 * ACTIVITY_PAGE}"
    text = await page.get(more)
    assert text.count('class="site blocked"') == ACTIVITY_PAGE + 50
    assert "Xem thêm" in await page.get(f"/activity?child={cid}")
    assert "Xem thêm" not in text  # nothing more to show
