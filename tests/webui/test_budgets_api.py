"""/api/v1/children/{id}/budgets through a real HTTP server against a real Store, and the
"more time" answers of /api/v1/requests."""

from __future__ import annotations

from typing import Any

from policy.store import BudgetUsage
from tests.webui.conftest import Harness, years_ago
from tests.webui.test_api import Api, api  # noqa: F401 - the fixture


async def test_budgets_set_list_extra_and_remove(api: Api, harness: Harness) -> None:  # noqa: F811
    store = harness.store
    minh = store.add_child("Minh", years_ago(9))
    lan = store.add_child("Lan", years_ago(14))
    base = f"/api/v1/children/{minh.id}/budgets"
    status, body = await api.call("GET", base)
    assert status == 200 and body["budgets"] == []
    nudges = len(harness.nudges)
    status, body = await api.call("PUT", f"{base}/youtube", {"school_days": 60, "weekends": 120})
    assert status == 200 and body == {"slug": "youtube", "school_days": 60, "weekends": 120}
    assert len(harness.nudges) > nudges  # in force at once
    for slug, data, field in (("tetris", {"school_days": 1, "weekends": 1}, "slug"),
                              ("games", {"school_days": 1}, "weekends"),
                              ("games", {"school_days": -5, "weekends": 1}, "school_days"),
                              ("games", {"school_days": 1, "weekends": 2000}, "weekends")):
        status, err = await api.call("PUT", f"{base}/{slug}", data)
        assert status == 400 and err["field"] == field, (slug, err)
    assert (await api.call("PUT", "/api/v1/children/999/budgets/games",
                           {"school_days": 1, "weekends": 1}))[0] == 404
    today = harness.now().date()
    limit = 120 if today.weekday() >= 5 else 60
    store.save_budget_usage([BudgetUsage(minh.id, today, "youtube", limit - 3)])
    status, body = await api.call("GET", base)
    [b] = body["budgets"]
    assert body["weekend"] == (today.weekday() >= 5)
    assert (b["used"], b["left"], b["warn"], b["spent"]) == (limit - 3, 3, True, False)
    status, body = await api.call("POST", f"{base}/youtube/extra", {"minutes": 15})
    assert status == 200 and body == {"slug": "youtube", "extra": 15}
    status, err = await api.call("POST", f"{base}/youtube/extra", {"minutes": 0})
    assert status == 400 and err["field"] == "minutes"
    assert (await api.call("POST", f"{base}/video/extra", {"minutes": 15}))[0] == 404
    [b] = (await api.call("GET", base))[1]["budgets"]
    assert (b["limit"], b["extra"], b["left"]) == (limit + 15, 15, 18)
    # the sister has nothing
    assert (await api.call("GET", f"/api/v1/children/{lan.id}/budgets"))[1]["budgets"] == []
    # a "more time" request, approved with +30: extra time, not a grant on the site
    req = store.add_request(child_id=minh.id, device_id=None, client="127.0.0.2",
                            domain="www.youtube.com", reason="budget:youtube", message="")
    status, body = await api.call("POST", f"/api/v1/requests/{req.id}/approve", {"minutes": 30})
    assert status == 200 and body["status"] == "approved"
    [b] = (await api.call("GET", base))[1]["budgets"]
    assert b["extra"] == 45 and store.grants() == []
    status, _ = await api.call("DELETE", f"{base}/youtube")
    assert status == 200 and store.budgets() == []
    assert (await api.call("DELETE", f"{base}/youtube"))[0] == 404


async def test_budgets_need_a_signed_in_parent(client: Any, harness: Harness) -> None:
    minh = harness.store.add_child("Minh", years_ago(9))
    r = await client.get(f"/api/v1/children/{minh.id}/budgets")
    assert r.status == 401


async def test_home_and_activity_warn_at_five_minutes_left(api: Api, harness: Harness) -> None:  # noqa: F811
    store = harness.store
    minh = store.add_child("Minh", years_ago(9), lang="en")
    store.set_budget(minh.id, "games", school_days=30, weekends=30)
    today = harness.now().date()
    store.save_budget_usage([BudgetUsage(minh.id, today, "games", 24)])
    await api.client.get("/lang/en")
    home = await (await api.client.get("/")).text()
    assert "24 of 30 min" in home and "6 min left today" in home
    activity = await (await api.client.get("/activity")).text()
    assert "budget-warnings" not in activity  # 6 minutes left: no warning yet
    store.save_budget_usage([BudgetUsage(minh.id, today, "games", 25)])
    home = await (await api.client.get("/")).text()
    assert "Only 5 min left today" in home
    activity = await (await api.client.get("/activity")).text()
    assert "Minh: only 5 min of Games left today" in activity
    store.save_budget_usage([BudgetUsage(minh.id, today, "games", 30)])
    activity = await (await api.client.get(f"/activity?child={minh.id}")).text()
    assert "Minh: time for Games is up for today" in activity
