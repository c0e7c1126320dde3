"""The dashboard in a real browser: headless Chromium (Playwright) against a live server.

Redis (and memcached) behind it; the live server runs in a thread of this
process, so the `backend` fixture's settings apply to it. Screenshots of every
page go to $KEYEDCACHE_ARTIFACTS (default: artifacts/screenshots/ in the
repository, gitignored); the test prints the folder.

Without playwright or /usr/bin/chromium these tests skip, or fail with
KEYEDCACHE_REQUIRE_SERVERS=1. Never `playwright install`: the Debian chromium is used.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client

import keyedcache
from keyedcache.registry import stats_cache
from keyedcache.reporting import RECORD_ROOT, reporter
from tests.conftest import BackendConfig, unavailable

pytestmark = [
    pytest.mark.browser,
    pytest.mark.urls("tests.urls_dashboard"),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parent.parent
XSS = "<script>alert(1)</script>"
PASSWORD = "correct horse battery staple"
#: Milliseconds Playwright waits for a page or an element.
TIMEOUT_MS = 15_000


def artifacts_dir() -> Path:
    """Where screenshots go: $KEYEDCACHE_ARTIFACTS, else artifacts/screenshots/ of the repo."""
    folder = Path(os.environ.get("KEYEDCACHE_ARTIFACTS") or REPO / "artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A page of a headless Debian Chromium (Playwright); page dialogs are recorded, not run.

    Per test, and set up after the database: Playwright's sync API keeps an
    event loop running in this thread while it lives, and Django's ORM refuses
    to run next to one. The browser is closed before the database is flushed;
    while it lives, DJANGO_ALLOW_ASYNC_UNSAFE tells Django this thread is no
    async code.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            page.dialogs = []
            page.on(
                "dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss())
            )
            yield page
        finally:
            browser.close()


def assert_visible(locator: Any) -> None:
    """Assert `locator` becomes visible, waiting for the page like Playwright's expect does.

    `locator.is_visible()` answers at once, so right after a click that loads
    a new page it can look before the page is there.
    """
    from playwright.sync_api import expect

    expect(locator).to_be_visible()


def assert_count(locator: Any, count: int) -> None:
    """Assert `locator` matches `count` elements, waiting for the page to get there.

    `locator.count()` answers at once: right after a click it may still count
    the previous page, or a page that is not rendered yet.
    """
    from playwright.sync_api import expect

    expect(locator).to_have_count(count)


class Shots:
    """Saves full-page screenshots as test artifacts, named by step."""

    def __init__(self, folder: Path, suffix: str) -> None:
        self.folder = folder
        self.suffix = suffix
        self.saved: list[Path] = []

    def take(self, page: Any, name: str) -> None:
        path = self.folder / f"{name}{self.suffix}.png"
        page.screenshot(path=str(path), full_page=True)
        self.saved.append(path)


@pytest.fixture
def shots(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Iterator[Shots]:
    backend = getattr(getattr(request.node, "callspec", None), "params", {}).get("backend")
    folder = artifacts_dir()
    taker = Shots(folder, f"-{backend}" if backend and backend != "redis" else "")
    yield taker
    if taker.saved:
        with capsys.disabled():
            print(f"\n[dashboard screenshots] {len(taker.saved)} saved in {folder}")


def make_user(username: str, *, staff: bool, can_delete: bool = False) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD)
    user.is_staff = staff
    user.save()
    if can_delete:
        user.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="keyedcache", codename="delete_cache_keys"
            )
        )
    return user


def seed() -> None:
    """Keys in a few branches (one of them the XSS key), and traffic for the stats."""
    for i in range(1, 41):
        keyedcache.cache_set("product", i, value={"id": i, "name": f"Product {i}", "price": i * 3})
    for i in (3, 7):
        keyedcache.cache_set("product", i, "reviews", value=[f"review {n}" for n in range(i)])
        keyedcache.cache_set("product", i, "stock", value=i * 10, length=None)
    for i in range(12):
        keyedcache.cache_set("category", i % 4, "page", i, value=list(range(i)))
    for i in range(1, 6):
        keyedcache.cache_set(f"func::shop.views.price::({i},)", value=9.5 * i)
    keyedcache.cache_set("search", XSS, value=XSS)
    for round_ in range(30):
        for i in range(1, 41):
            keyedcache.cache_get("product", i, default=None)
        keyedcache.cache_get("product", 100 + round_, default=None)
        keyedcache.cache_get("category", round_ % 6, "page", 1, default=None)
        keyedcache.cache_get("search", XSS, default=None)


def other_worker_record() -> None:
    """A second process's stats record with an hour of traffic, as a worker would write it.

    Built from this process's own record, so it follows the record's current shape.
    """
    target = stats_cache()
    assert target is not None
    record = reporter.record()
    now = time.time()
    this_minute = int(now // 60)
    rng = random.Random(1730)
    minutes = {}
    level, rate = 520.0, 0.86
    for back in range(59, -1, -1):
        minute = this_minute - back
        level = min(max(level + rng.uniform(-60, 60) + (35 if 20 <= back <= 26 else 0), 250), 1400)
        rate = min(max(rate + rng.uniform(-0.025, 0.025) - (0.06 if back == 24 else 0), 0.6), 0.97)
        calls = int(level)
        hits = int(calls * rate)
        minutes[str(minute)] = [calls, hits, calls - hits, 0, int(rng.random() < 0.08)]
    totals = {name: 0 for name in record["counters"]}
    totals.update(
        calls=sum(v[0] for v in minutes.values()),
        hits=sum(v[1] for v in minutes.values()),
        misses=sum(v[2] for v in minutes.values()),
        sets=sum(v[2] for v in minutes.values()),
        errors=sum(v[4] for v in minutes.values()),
        executions=sum(v[2] for v in minutes.values()) // 2,
    )
    share = {"product": 0.55, "category": 0.3, "func::shop.views.price": 0.15}
    prefixes = {
        prefix: {name: int(value * part) for name, value in totals.items()}
        for prefix, part in share.items()
    }
    prefixes["category"]["hits"] = int(prefixes["category"]["calls"] * 0.48)
    prefixes["category"]["misses"] = prefixes["category"]["calls"] - prefixes["category"]["hits"]
    record.update(
        id="web-2:4242:feedbeef",
        host="web-2",
        pid=4242,
        started=now - 5400,
        flushed=now - 2,
        counters=totals,
        prefixes=prefixes,
        minutes=minutes,
    )
    record.pop("current", None)
    from keyedcache.entry import make_entry

    key = f"{RECORD_ROOT}::{record['id']}"
    adapter = target.adapter
    adapter.set(key, make_entry(record, 600, key=adapter.key_to_keep(key)).pack(), 600)


def log_in(page: Any, base: str, username: str, next_path: str = "/cache/") -> None:
    page.goto(f"{base}{next_path}")
    assert "/admin/login/" in page.url, page.url
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()


@pytest.mark.backends("redis", "memcached")
def test_staff_browses_opens_a_key_and_deletes_its_subtree(
    backend: BackendConfig, live_server: Any, browser_page: Any, shots: Shots
) -> None:
    page = browser_page
    base = live_server.url
    make_user("editor", staff=True, can_delete=True)
    seed()
    other_worker_record()

    # Log in through the admin login form; land on the stats page.
    log_in(page, base, "editor")
    assert page.url == f"{base}/cache/"
    assert page.locator("h1").inner_text() == "Cache statistics"
    assert_visible(page.get_by_text("Cache Hit Rate").first)
    chart = page.locator("svg.kc-chart")
    assert_visible(chart)
    chart.locator("rect.bar").first.wait_for()
    assert chart.locator("rect.bar").count() >= 50  # the other worker's hour of traffic
    assert "(2 processes)" in page.locator("#kc-counters").text_content()
    page.locator("#kc-prefixes svg.kc-bar").first.wait_for()
    assert page.locator("#kc-prefixes svg.kc-bar").count() >= 3
    backend_text = page.locator("#kc-backend").inner_text()
    assert "responding" in backend_text
    shots.take(page, "01-stats")

    # The admin index links to the dashboard.
    page.goto(f"{base}/admin/")
    link = page.get_by_role("link", name="Cache dashboard", exact=True)
    assert_visible(link)
    shots.take(page, "00-admin-index")
    link.click()
    assert page.url == f"{base}/cache/"

    # The key browser: branches with counts; the XSS key shows as text.
    page.click(".kc-tabs >> text=Keys")
    assert page.locator("h1").inner_text() == "Cache Keys"
    product = page.locator(
        "table.kc-keys tr", has=page.get_by_role("link", name="product", exact=True)
    )
    assert product.locator("td.num").first.inner_text() == "44"
    shots.take(page, "02-keys")

    # Into the "product" branch, then the key product::3 (a key with keys below it).
    page.get_by_role("link", name="product", exact=True).click()
    assert "prefix=product" in page.url
    assert_count(page.locator("table.kc-keys tbody tr"), 40)
    shots.take(page, "03-branch")
    row = page.locator("table.kc-keys tbody tr", has=page.get_by_role("link", name="3", exact=True))
    row.locator("a.kc-also").click()
    assert page.locator("#kc-key").inner_text() == "product::3"
    assert "'name': 'Product 3'" in page.locator("pre.kc-value").inner_text()
    assert "fresh" in page.locator("#kc-entry").inner_text()
    shots.take(page, "04-key")

    # Delete the subtree: back in the branch, with the message, and the keys gone.
    page.click("#kc-delete-subtree")
    page.wait_for_load_state()
    assert "prefix=product" in page.url
    message = page.locator("ul.messagelist li").inner_text()
    assert message == "Deleted 3 keys: “product::3” and every key below it."
    assert_count(page.get_by_role("link", name="3", exact=True), 0)
    assert_count(page.get_by_role("link", name="30", exact=True), 1)
    shots.take(page, "05-after-delete")
    assert not keyedcache.is_cached("product", 3)
    assert list(keyedcache.iter_keys("product::3::*")) == []
    assert keyedcache.is_cached("product", 30) and keyedcache.is_cached("product", 7, "reviews")

    # A search and the delete page; the XSS key's page ran no script.
    page.fill("#kc-q", "product::7*")
    page.click(".kc-toolbar input[type=submit][value=Search]")
    assert_count(page.locator("table.kc-keys tbody tr"), 3)
    shots.take(page, "06-search")
    # The XSS key is text in the branch, on its page and in the stats; no script runs.
    page.goto(f"{base}/cache/view/?prefix=search")
    page.get_by_role("link", name=XSS, exact=True).click()
    assert page.locator("#kc-key").inner_text() == f"search::{XSS}"
    assert page.locator("pre.kc-value").inner_text() == repr(XSS)
    page.click(".kc-tabs >> text=Delete")
    assert_visible(page.get_by_label("Key to delete:"))
    shots.take(page, "07-delete")
    assert page.dialogs == []

    # The admin's dark theme: the dashboard uses its colour variables.
    page.emulate_media(color_scheme="dark")
    page.goto(f"{base}/cache/")
    assert_visible(page.locator("svg.kc-chart"))
    shots.take(page, "10-stats-dark")


@pytest.mark.backends("redis")
def test_non_staff_is_refused(
    backend: BackendConfig, live_server: Any, browser_page: Any, shots: Shots
) -> None:
    page = browser_page
    base = live_server.url
    customer = make_user("customer", staff=False)
    keyedcache.cache_set("secret", "plan", value="do not show")

    # The admin login form does not let a non-staff user in.
    log_in(page, base, "customer")
    assert "/admin/login/" in page.url
    assert "staff account" in page.locator(".errornote").inner_text()
    shots.take(page, "08-refused-login")

    # Logged in elsewhere on the site (a session cookie): still sent to the login page.
    client = Client()
    client.force_login(customer)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": base}]
    )
    for path in ("/cache/", "/cache/view/?prefix=secret", "/cache/view/key/?key=secret::plan"):
        page.goto(f"{base}{path}")
        assert re.search(r"/admin/login/\?next=", page.url), page.url
        assert "do not show" not in page.content()
    assert "not authorized to access this page" in page.locator(".errornote").inner_text()
    shots.take(page, "09-refused-session")


#: What a page's layout looks like to the test: page and body widths against the
#: screen, and every table or chart that sticks out of the screen or of the box
#: that should scroll it (an ancestor with overflow-x auto/scroll).
LAYOUT_PROBE = """() => {
    const width = document.documentElement.clientWidth;
    const clipped = [];
    for (const el of document.querySelectorAll('#content-main table, #content-main svg.kc-chart')) {
        let box = el.parentElement;
        const boxes = ['auto', 'scroll', 'hidden', 'clip'];
        while (box && !boxes.includes(getComputedStyle(box).overflowX)) {
            box = box.parentElement;
        }
        const own = el.getBoundingClientRect();
        const name = el.tagName + '#' + (el.closest('[id]') || {id: '?'}).id;
        if (!box) {
            if (own.right > width + 1) clipped.push(name + ' sticks out of the screen');
            continue;
        }
        const frame = box.getBoundingClientRect();
        if (frame.right > width + 1) clipped.push(name + ' is in a box wider than the screen');
        const scrolls = ['auto', 'scroll'].includes(getComputedStyle(box).overflowX);
        if (!scrolls && own.right > frame.right + 1) clipped.push(name + ' is clipped');
        if (el.tagName.toLowerCase() === 'svg' && own.right > frame.right + 1) {
            clipped.push(name + ' (the chart) does not fit');
        }
    }
    return {
        width: width,
        page: document.documentElement.scrollWidth,
        body: document.body.scrollWidth,
        clipped: clipped,
    };
}"""


@pytest.mark.backends("locmem")
def test_pages_fit_a_phone_screen(
    backend: BackendConfig, live_server: Any, browser_page: Any, shots: Shots
) -> None:
    page = browser_page
    base = live_server.url
    page.set_viewport_size({"width": 375, "height": 812})
    make_user("editor", staff=True, can_delete=True)
    seed()
    other_worker_record()
    wide = "wide::" + "w" * 300  # one unbroken word, wider than any phone
    keyedcache.cache_set(wide, value={"text": "y" * 3000, "n": list(range(200))})
    log_in(page, base, "editor")
    paths = [
        "/cache/",
        "/cache/view/",
        "/cache/view/?prefix=product",
        "/cache/view/?prefix=wide",
        "/cache/view/key/?key=product::3",
        f"/cache/view/key/?key={wide}",
        "/cache/delete/",
    ]
    for number_, path in enumerate(paths):
        page.goto(f"{base}{path}")
        page.wait_for_load_state()
        layout = page.evaluate(LAYOUT_PROBE)
        assert layout["width"] == 375, layout
        assert layout["page"] <= layout["width"], (path, layout)
        assert layout["body"] <= layout["width"], (path, layout)
        assert layout["clipped"] == [], (path, layout)
        shots.take(page, f"20-phone-{number_}")
    # The key table scrolls inside its module rather than being cut off.
    page.goto(f"{base}/cache/view/?prefix=product")
    module = page.locator("#kc-keys")
    assert module.evaluate("el => getComputedStyle(el).overflowX") in ("auto", "scroll")


@pytest.mark.backends("redis")
def test_a_100_kb_key_and_a_match_all_pattern_in_the_browser(
    backend: BackendConfig, live_server: Any, browser_page: Any, shots: Shots
) -> None:
    page = browser_page
    base = live_server.url
    make_user("editor", staff=True, can_delete=True)
    long_key = "long::" + "k" * 100_000
    keyedcache.cache_set(long_key, value={"long": True})
    keyedcache.cache_set("long", "short", value=1)
    keyedcache.cache_set("other", value=2)
    responses: list[Any] = []
    page.on("response", lambda response: responses.append(response))
    log_in(page, base, "editor", "/cache/view/?prefix=long")

    # The long key's row links by reference: opening it is no 414.
    link = page.locator("table.kc-keys a[href*='ref=']").first
    assert len(link.get_attribute("href") or "") < 2000
    link.click()
    page.wait_for_load_state()
    assert "ref=" in page.url and len(page.url) < 2000
    assert page.locator("pre.kc-value").inner_text() == "{'long': True}"
    assert "100,006 characters" in page.locator("#kc-key").inner_text()
    shots.take(page, "21-long-key")
    page.click("#kc-delete-key")
    page.wait_for_load_state()
    assert page.locator("ul.messagelist li").inner_text().startswith("Deleted 1 key: ")
    assert not keyedcache.is_cached(long_key)
    assert keyedcache.is_cached("long", "short")
    assert all(response.status != 414 for response in responses)

    # "?*" matches every key: the page asks for DELETE before deleting anything.
    page.goto(f"{base}/cache/delete/")
    page.fill("#id_pattern_pattern", "?*")
    page.click("#kc-delete-pattern-form input[type=submit]")
    page.wait_for_load_state()
    confirm = page.locator("#kc-pattern-confirm")
    assert_visible(confirm)
    assert "matches every key" in confirm.inner_text()
    assert keyedcache.is_cached("other")
    shots.take(page, "22-pattern-confirm")
    page.fill("#id_pattern_confirm", "DELETE")
    page.click("#kc-delete-pattern-form input[type=submit]")
    page.wait_for_load_state()
    assert page.locator("ul.messagelist li").inner_text().startswith("Deleted 2 keys")
    assert not keyedcache.is_cached("other") and not keyedcache.is_cached("long", "short")
    assert page.dialogs == []
