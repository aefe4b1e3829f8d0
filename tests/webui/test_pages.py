"""The HTML pages: each works end to end with forms (POST-redirect-GET), shows messages
next to the fields, and both languages are complete."""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from policy.model import QueryEvent
from tests.webui.conftest import CSRF_RE, Harness, setup_and_login, years_ago
from webui.i18n import load_catalogues

PAGES = ["/", "/children", "/devices", "/activity", "/requests", "/lists", "/settings", "/audit",
         "/help"]


class Page:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def get(self, path: str) -> str:
        r = await self.client.get(path)
        assert r.status == 200, (path, r.status)
        return await r.text()

    async def post(self, path: str, data: dict[str, Any], *, status: int = 303,
                   page: str | None = None) -> str:
        html = await self.get(page or path.rsplit("/", 1)[0] or "/")
        token = CSRF_RE.search(html)
        assert token
        r = await self.client.post(path, data={**data, "csrf": token.group(1)},
                                   allow_redirects=False)
        body = await r.text()
        assert r.status == status, (path, r.status, body[:500])
        return r.headers.get("Location", "") if status == 303 else body


@pytest.fixture
async def page(client: Any) -> Page:
    await setup_and_login(client)
    return Page(client)


async def add_child(page: Page, name: str = "Minh", age: int = 9) -> int:
    location = await page.post("/children", {"name": name, "born": years_ago(age).isoformat(),
                                             "lang": "vi"})
    m = re.match(r"/children/(\d+)\?(?:open=[\w-]+&)?done=child_added", location)
    assert m, location
    return int(m.group(1))


def field_error(html: str, form: str, field: str) -> str:
    m = re.search(rf'id="{form}-{field}-err"[^>]*>([^<]+)<', html)
    assert m, f"no message for {form}.{field}"
    return html_lib.unescape(m.group(1))


async def test_add_child_shows_profile_in_plain_words(page: Page, harness: Harness) -> None:
    cid = await add_child(page)
    html = await page.get(f"/children/{cid}?done=child_added")
    text = html_lib.unescape(html)
    assert "Đã thêm con." in text
    assert "Với Minh, 9 tuổi: chặn — Nội dung người lớn" in text
    assert "Mạng xã hội đến 13 tuổi" in text
    # per-category rows show each category's age
    assert re.search(r"Cờ bạc</label>.*?18\+", text, re.S)
    r = await page.client.get(f"/lang/en?next=/children/{cid}", allow_redirects=True)
    text = html_lib.unescape(await r.text())
    words = re.search(r'class="lead words">([^<]+)<', text)
    assert words and words.group(1).startswith("For Minh, 9: blocked — Adult content, ")
    assert "Gambling" in words.group(1) and "Dating" in words.group(1)
    assert "Social networks until 13" in words.group(1)
    assert "Online games until 12" in words.group(1)


async def test_child_form_messages_next_to_fields(page: Page, harness: Harness) -> None:
    html = await page.post("/children", {"name": "", "born": "2030-01-01"}, status=400)
    assert field_error(html, "child-add", "name") == "Vui lòng điền mục này."
    assert field_error(html, "child-add", "born") == "Ngày sinh không thể ở tương lai."
    assert 'aria-invalid="true"' in html
    assert harness.store.children() == []
    cid = await add_child(page)
    html = await page.post(f"/children/{cid}/rules", {"domain": "not a site", "kind": "deny"},
                           status=400, page=f"/children/{cid}")
    assert field_error(html, "rule", "domain") == "Nhập tên trang web, ví dụ example.com."
    assert 'value="not a site"' in html  # what the parent typed stays
    html = await page.post(f"/children/{cid}/schedules", {
        "name": "Ngủ", "kind": "bedtime", "start": "25:00", "end": "06:00"},
        status=400, page=f"/children/{cid}")
    assert field_error(html, "schedule", "start") == "Nhập giờ theo dạng 21:30."
    assert field_error(html, "schedule", "weekdays") == "Chọn ít nhất một ngày."
    assert harness.store.schedules(cid) == []


async def test_child_page_forms_save(page: Page, harness: Harness) -> None:
    cid = await add_child(page)
    loc = await page.post(f"/children/{cid}/settings", {
        "cat_games": "block", "cat_social": "allow", "cat_adult": "age", "youtube": "strict",
        "mode": "auto", "safe_search": "1"}, page=f"/children/{cid}")
    assert loc.endswith("done=saved#sec-cats")  # back to the section that was saved
    s = harness.store.settings(cid)
    assert s.blocked == {"games"} and s.allowed == {"social"} and s.safe_search
    await page.post(f"/children/{cid}/rules", {"domain": "youtube.com", "kind": "deny"},
                    page=f"/children/{cid}")
    await page.post(f"/children/{cid}/schedules", {
        "name": "Giờ ngủ", "kind": "bedtime", "weekdays[]": ["0", "1", "2", "3", "4"],
        "start": "21:00", "end": "06:30"}, page=f"/children/{cid}")
    html = await page.get(f"/children/{cid}")
    assert "youtube.com" in html and "Giờ ngủ" in html and "T2 T3 T4 T5 T6" in html
    rule = harness.store.rules(cid)[0]
    await page.post(f"/children/{cid}/rules/{rule.id}/delete", {}, page=f"/children/{cid}")
    assert harness.store.rules(cid) == []
    await page.post(f"/children/{cid}", {"name": "Minh Anh", "born": years_ago(10).isoformat(),
                                         "lang": "en"}, page=f"/children/{cid}")
    assert harness.store.child(cid).name == "Minh Anh"
    await page.post(f"/children/{cid}/delete", {}, page=f"/children/{cid}")
    assert harness.store.children() == []


async def test_home_pause_and_resume_in_one_tap(page: Page, harness: Harness) -> None:
    cid = await add_child(page)
    harness.store.log_queries([
        QueryEvent(harness.now(), "127.0.0.2", None, cid, "casino.example", "A", "block",
                   "category:gambling:18+"),
        QueryEvent(harness.now(), "127.0.0.2", None, cid, "malware.example", "A", "block",
                   "security:malware"),
    ])
    html = html_lib.unescape(await page.get("/"))
    assert "Minh" in html and "Cờ bạc (1)" in html
    assert "Hôm nay đã chặn 1 trang nguy hiểm" in html
    loc = await page.post(f"/children/{cid}/pause", {"minutes": "0", "back": "/"}, page="/")
    assert loc == "/?done=paused"
    assert harness.store.settings(cid).paused_until is not None
    html = html_lib.unescape(await page.get("/"))
    assert "Internet đang tạm dừng cho đến khi bạn bật lại." in html
    await page.post(f"/children/{cid}/resume", {"back": "/"}, page="/")
    assert harness.store.settings(cid).paused_until is None


async def test_devices_page_flags_new_and_assigns(page: Page, harness: Harness) -> None:
    cid = await add_child(page)
    harness.store.seen([("127.0.0.2", "02:00:00:00:00:02", harness.now()),
                        ("127.0.0.3", None, harness.now())])
    html = await page.get("/")
    assert "2 thiết bị mới trong mạng" in html
    html = await page.get("/devices")
    assert html.count('class="tag new"') == 2 and "02:00:00:00:00:02" in html
    dev = harness.store.device_by_identifier("127.0.0.2")
    assert dev is not None
    await page.post(f"/devices/{dev.id}", {"owner": str(cid), "name": "Điện thoại của Minh"},
                    page="/devices")
    dev = harness.store.device(dev.id)
    assert dev.owner == cid and dev.name == "Điện thoại của Minh" and not dev.new
    html = await page.post(f"/devices/{dev.id}", {"owner": "77", "name": "x"}, status=400,
                           page="/devices")
    assert field_error(html, f"device-{dev.id}", "owner") == "Không có con này."
    other = harness.store.device_by_identifier("127.0.0.3")
    assert other is not None
    await page.post("/devices/merge", {"keep": str(dev.id), "other": str(other.id)},
                    page="/devices")
    assert len(harness.store.devices()) == 1


async def test_activity_groups_by_site_and_allows(page: Page, harness: Harness) -> None:
    cid = await add_child(page)
    now = harness.now()
    harness.store.log_queries([
        QueryEvent(now - timedelta(seconds=i), "127.0.0.2", None, cid, name, "A", action,
                   reason)
        for i, (name, action, reason) in enumerate([
            ("img.casino.co.uk", "block", "category:gambling:18+"),
            ("www.casino.co.uk", "block", "category:gambling:18+"),
            ("en.wikipedia.org", "allow", ""),
        ])
    ])
    html = html_lib.unescape(await page.get(f"/activity?child={cid}"))
    assert html.count('class="site blocked"') == 1
    assert "casino.co.uk" in html and "img.casino.co.uk" in html
    assert "Lý do: Cờ bạc (từ 18 tuổi)" in html
    assert "Cho Minh vào trang này" in html
    html = await page.get(f"/activity?child={cid}&blocked=1")
    assert "wikipedia" not in html
    loc = await page.post(f"/children/{cid}/allow", {
        "domain": "casino.co.uk", "minutes": "0", "back": f"/activity?child={cid}"},
        page="/activity")
    assert loc == f"/activity?child={cid}&done=allowed"  # the filter survives
    rules = harness.store.rules(cid)
    assert [(r.domain, r.kind) for r in rules] == [("casino.co.uk", "allow")]
    audit = harness.store.audit_log()
    assert audit[0].who == "mai" and audit[0].action == "site.allow"
    html = html_lib.unescape(await page.get("/audit"))
    assert "bỏ chặn một trang" in html and "casino.co.uk" in html


async def test_activity_says_which_words_made_a_rater_block(page: Page, harness: Harness) -> None:
    """A block by the name rater shows the parent the words of the name and their weights."""
    cid = await add_child(page)
    source = "name-rater: name contains 'escort' 0.8 + 'cams' 0.6 (learned) (confidence 0.86)"
    harness.store.log_queries([
        QueryEvent(harness.now(), "127.0.0.2", None, cid, "topescortcams.example", "A", "block",
                   "category:adult:18+", source=source),
    ])
    html = html_lib.unescape(await page.get(f"/activity?child={cid}"))
    assert "các từ trong tên trang: 'escort' 0.8 + 'cams' 0.6, độ tin cậy 0.86" in html


async def test_requests_page(page: Page, harness: Harness) -> None:
    cid = await add_child(page)
    req = harness.store.add_request(child_id=cid, device_id=None, client="127.0.0.2",
                                    domain="roblox.com", reason="category:games:12+",
                                    message="Con làm bài xong rồi")
    html = html_lib.unescape(await page.get("/requests"))
    assert "roblox.com" in html and "Con làm bài xong rồi" in html
    assert "Trò chơi" in html or "games" in html
    assert "1 yêu cầu đang chờ bạn" in html
    await page.post(f"/requests/{req.id}/approve", {"minutes": "1440"}, page="/requests")
    assert harness.store.request(req.id).status == "approved"
    loc = await page.post(f"/requests/{req.id}/decline", {}, page="/requests")
    assert loc.endswith("done=already")


async def test_settings_page_token_shown_once(page: Page, harness: Harness) -> None:
    html = await page.post("/settings/tokens", {"name": "nhà thông minh"}, status=200,
                           page="/settings")
    m = re.search(r'<code class="token">(ng_[^<]+)</code>', html)
    assert m
    html = await page.get("/settings")
    assert m.group(1) not in html and "nhà thông minh" in html
    html = await page.post("/settings/password", {"old": "x", "new": "short"}, status=400,
                           page="/settings")
    assert field_error(html, "password", "new").startswith("Ít nhất 12 ký tự")
    html = await page.post("/settings", {"block_answer": "nope", "retention_days": "abc",
                                         "lang": "vi"}, status=400, page="/settings")
    assert field_error(html, "household", "retention_days") == "Nhập một số nguyên."
    assert field_error(html, "household", "block_answer")


async def test_exceptions_on_children_page(page: Page, harness: Harness) -> None:
    cid = await add_child(page)
    await page.post("/exceptions", {"name": "Nghỉ Tết", "first_day": "2027-02-05",
                                    "last_day": "2027-02-12", "children[]": [str(cid)]},
                    page="/children")
    html = await page.get("/children")
    assert "Nghỉ Tết" in html and "05/02/2027" in html
    html = await page.post("/exceptions", {"name": "", "first_day": "2027-02-12",
                                           "last_day": "2027-02-05"}, status=400,
                           page="/children")
    assert field_error(html, "exception", "name")
    assert field_error(html, "exception", "last_day")


async def test_error_pages_are_translated(page: Page) -> None:
    r = await page.client.get("/children/999")
    assert r.status == 404
    assert "Trang này không tồn tại." in await r.text()


# i18n ----------------------------------------------------------------------------------


def test_both_catalogues_have_every_key() -> None:
    cats = load_catalogues()
    assert set(cats["vi"]) == set(cats["en"])
    for key in cats["vi"]:
        en_params = set(re.findall(r"\{(\w+)\}", cats["en"][key]))
        vi_params = set(re.findall(r"\{(\w+)\}", cats["vi"][key]))
        assert en_params == vi_params, key


def test_every_key_used_in_code_exists() -> None:
    from pathlib import Path

    import webui

    root = Path(webui.__file__).parent
    cats = load_catalogues()
    used: set[str] = set()
    for path in list(root.glob("*.py")) + list((root / "templates").glob("*.html")):
        text = path.read_text()
        used |= set(re.findall(r"""\bt\(\s*['"]([a-z_]+(?:\.[a-z_0-9]+)+)['"]""", text))
        used |= set(re.findall(r"""['"]((?:err|why|done|error|profile)\.[a-z_0-9]+)['"]""",
                               text))
    used.discard("error.html")
    missing = sorted(k for k in used if k not in cats["en"])
    assert not missing


class TextOnly(HTMLParser):
    """Visible text and the attributes people read (labels, placeholders, titles)."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "code", "title"):
            self._skip += 1
        for name, value in attrs:
            if name in ("aria-label", "placeholder", "title", "data-confirm") and value:
                self.chunks.append(value)
            if tag == "option" or (tag == "input" and name == "value"):
                pass

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "code", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


# English strings that are also correct Vietnamese UI (product and brand names).
SAME_IN_BOTH = {"YouTube", "English", "nestguard"}
ENGLISH_WORDS = {
    "the", "and", "of", "to", "for", "you", "your", "this", "is", "are", "with", "not", "all",
    "add", "save", "remove", "delete", "block", "blocked", "allow", "edit", "name", "password",
    "settings", "device", "devices", "child", "children", "today", "never", "always", "home",
    "log", "login", "logout", "requests", "activity", "lists", "search", "new", "from", "until",
}


async def test_vietnamese_pages_have_no_english_ui_strings(page: Page, harness: Harness
                                                            ) -> None:
    cats = load_catalogues()
    english = {v for k, v in cats["en"].items() if v != cats["vi"][k]}
    english = {re.sub(r"\{\w+\}", "", v).strip(" .:") for v in english}
    english = {v for v in english if len(v) >= 4 and v not in SAME_IN_BOTH}
    cid = await add_child(page)
    harness.store.seen([("127.0.0.2", None, harness.now())])
    harness.store.log_queries([QueryEvent(harness.now(), "127.0.0.2", None, cid,
                                          "casino.example", "A", "block",
                                          "category:gambling:18+")])
    harness.store.add_request(child_id=cid, device_id=None, client="127.0.0.2",
                              domain="casino.example", reason="", message="")
    for path in PAGES + [f"/children/{cid}", "/nope", "block page"]:
        if path == "block page":
            r = await page.client.get("/", headers={"Host": "casino.example"})
        else:
            r = await page.client.get(path)
        parser = TextOnly()
        parser.feed(await r.text())
        text = " ".join(" ".join(parser.chunks).split())
        leaks = sorted(e for e in english if re.search(rf"(?<!\w){re.escape(e)}(?!\w)", text))
        assert not leaks, (path, leaks)
        # and nothing hard-coded in English outside the catalogues either
        words = {w.lower() for w in re.findall(r"\w+", text) if w.isascii()}
        assert not words & ENGLISH_WORDS, (path, words & ENGLISH_WORDS)
        assert 'lang="vi"' in await r.text()


async def test_english_pages_are_english(page: Page) -> None:
    r = await page.client.get("/lang/en?next=/children")
    html = await r.text()
    assert '<html lang="en">' in html and "Add a child" in html and "Thêm con" not in html
    r = await page.client.get("/lang/xx?next=/")
    assert r.status == 404


async def test_request_from_an_unassigned_device_says_what_to_do(page: Page,
                                                                 harness: Harness) -> None:
    req = harness.store.add_request(child_id=None, device_id=None, client="127.0.0.9",
                                    domain="roblox.com", reason="", message="")
    loc = await page.post(f"/requests/{req.id}/approve", {"minutes": "30"}, page="/requests")
    assert loc.endswith("done=no_child")
    html = await page.get(loc)
    assert "hãy gán ở trang Thiết bị trước" in html
    assert harness.store.request(req.id).status == "pending"


async def test_security_hits_offer_no_allow_button(page: Page, harness: Harness) -> None:
    cid = await add_child(page)
    harness.store.log_queries([QueryEvent(harness.now(), "127.0.0.2", None, cid,
                                          "login-bank.example", "A", "block",
                                          "security:phishing")])
    html = html_lib.unescape(await page.get("/activity"))
    assert "Trang nguy hiểm" in html and "/allow" not in html


class Fields(HTMLParser):
    """Every form control and how it is labelled."""

    def __init__(self) -> None:
        super().__init__()
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, dict[str, str | None], bool]] = []
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label":
            self._in_label += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        elif tag in ("input", "select", "textarea"):
            if a.get("type") in ("hidden", "submit", "button"):
                return
            self.controls.append((tag, a, self._in_label > 0))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1


async def test_every_field_has_a_label(page: Page, harness: Harness) -> None:
    cid = await add_child(page)
    harness.store.seen([("127.0.0.2", None, harness.now()), ("127.0.0.3", None, harness.now())])
    harness.store.log_queries([QueryEvent(harness.now(), "127.0.0.2", None, cid,
                                          "casino.example", "A", "block",
                                          "category:gambling:18+")])
    for path in PAGES + [f"/children/{cid}", "/activity?blocked=1"]:
        parser = Fields()
        parser.feed(await page.get(path))
        for tag, attrs, wrapped in parser.controls:
            labelled = wrapped or attrs.get("id") in parser.label_for or attrs.get("aria-label")
            assert labelled, (path, tag, attrs)


async def test_history_older_than_the_retention_setting_is_deleted(aiohttp_client: Any,
                                                                    harness: Harness) -> None:
    import asyncio

    from webui.app import create_app

    now = harness.now()
    harness.store.set_setting("retention_days", 2)
    harness.store.log_queries([
        QueryEvent(now - timedelta(days=3), "127.0.0.2", None, None, "old.example", "A",
                   "allow", ""),
        QueryEvent(now - timedelta(hours=1), "127.0.0.2", None, None, "new.example", "A",
                   "allow", ""),
    ])
    await aiohttp_client(create_app(harness.services))  # starts the app's background tasks
    for _ in range(100):
        names = {r.event.qname for r in harness.store.activity()}
        if names == {"new.example"}:
            break
        await asyncio.sleep(0.02)
    assert names == {"new.example"}
