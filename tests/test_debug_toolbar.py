"""KeyedCachePanel: a request's keyed calls in django-debug-toolbar (test client and Chromium).

The toolbar is switched on by this file's own settings overrides (tests/settings.py
stays toolbar-free). The browser test saves the panel's screenshot to
$KEYEDCACHE_ARTIFACTS (default: artifacts/screenshots/), and with
KEYEDCACHE_DOCS_IMG=1 also to docs/img/debug-toolbar-panel.png, the picture
docs/integrations.md shows.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler as _StaticFilesHandler
from django.core import checks
from django.test import Client
from django.test.testcases import LiveServerThread
from django.test.utils import override_settings

from keyedcache import cache_get, signals

pytest.importorskip("debug_toolbar")
from keyedcache.contrib.debug_toolbar.panel import KeyedCachePanel
from tests.conftest import unavailable

PANEL = "keyedcache.contrib.debug_toolbar.panel.KeyedCachePanel"
#: The key part tests/urls_debug_toolbar.py puts markup in (that module imports the
#: toolbar, which needs its app installed: it is imported only under the overrides).
HOSTILE = "<script>alert(1)</script>"
CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
DOCS_SCREENSHOT = REPO / "docs" / "img" / "debug-toolbar-panel.png"


def toolbar_settings() -> dict[str, Any]:
    return {
        "INSTALLED_APPS": [
            *settings.INSTALLED_APPS,
            "debug_toolbar",
            "keyedcache.contrib.debug_toolbar",
        ],
        "MIDDLEWARE": ["debug_toolbar.middleware.DebugToolbarMiddleware", *settings.MIDDLEWARE],
        "ROOT_URLCONF": "tests.urls_debug_toolbar",
        "DEBUG_TOOLBAR_PANELS": [PANEL],
        "DEBUG_TOOLBAR_CONFIG": {
            "SHOW_TOOLBAR_CALLBACK": "tests.urls_debug_toolbar.show_toolbar",
            "IS_RUNNING_TESTS": False,
        },
    }


@pytest.fixture
def toolbar() -> Iterator[None]:
    with override_settings(**toolbar_settings()):
        yield


def panel_html(client: Client, page: str) -> str:
    """The KeyedCachePanel content of the request that served `page` (as the toolbar loads it)."""
    found = re.search(r'data-request-id="([0-9a-f]+)"', page)
    assert found, "the page has no toolbar"
    response = client.get(
        "/__debug__/render_panel/",
        {"request_id": found.group(1), "panel_id": "KeyedCachePanel"},
    )
    assert response.status_code == 200
    return str(json.loads(response.content)["content"])


def rows(html: str) -> list[list[str]]:
    """The cells of each call row, tags stripped, spaces collapsed."""
    found = []
    for row in re.findall(r'<tr class="keyedcache-call[^"]*">(.*?)</tr>', html, re.S):
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        found.append([" ".join(re.sub(r"<[^>]+>", "", c).split()) for c in cells])
    return found


def test_the_panel_lists_the_requests_calls_escaped(toolbar: None) -> None:
    client = Client()
    page = client.get("/page/").content.decode()
    assert "KeyedCachePanel" in page
    html = panel_html(client, page)
    listed = [(r[1], r[2], r[5], r[6]) for r in rows(html)]
    escaped = HOSTILE.replace("<", "&lt;").replace(">", "&gt;")
    from tests.urls_debug_toolbar import price

    price_key = price.key(7)
    assert [row[:2] for row in listed] == [
        ("toolbar::product::1", "hit"),
        ("toolbar::product::1", "request-scope hit"),
        (f"toolbar::{escaped}", "miss"),
        (price_key, "miss"),
    ]
    assert listed[3][2].startswith("1 (")  # one execution, with its time
    assert listed[3][3] == "memoized" and listed[0][3] == "get"
    assert HOSTILE not in html
    assert all(re.fullmatch(r"\d+\.\d{3} ms", r[3]) for r in rows(html))


def test_nothing_is_recorded_or_sent_outside_instrumented_requests(toolbar: None) -> None:
    client = Client()
    client.get("/page/")
    assert signals.listening[0] is False  # the panel's receivers left with the request
    cache_get("toolbar", "after", default=None)  # no panel: nobody records it
    page = client.get("/page/").content.decode()
    assert "toolbar::after" not in panel_html(client, page)


def test_the_panel_requires_its_app(toolbar: None) -> None:
    assert KeyedCachePanel.run_checks() == []
    apps = [a for a in settings.INSTALLED_APPS if a != "keyedcache.contrib.debug_toolbar"]
    with override_settings(INSTALLED_APPS=apps):
        (error,) = KeyedCachePanel.run_checks()
    assert isinstance(error, checks.Error) and error.id == "keyedcache.E111"


@pytest.fixture
def server_url(toolbar: None) -> Iterator[str]:
    """A live server started under the toolbar settings (its handler loads their middleware)."""
    thread = LiveServerThread("127.0.0.1", _StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


@pytest.mark.browser
def test_the_panel_in_chromium(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from tests.urls_debug_toolbar import price

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.set_default_timeout(15_000)
            page.goto(f"{server_url}/page/")
            page.locator("#djdt-KeyedCachePanel a").click()
            table = page.locator("#KeyedCachePanel table.keyedcache-calls")
            table.wait_for(state="visible")
            cells = page.locator("#KeyedCachePanel tr.keyedcache-call td:nth-child(2)")
            assert cells.all_inner_texts() == [
                "toolbar::product::1",
                "toolbar::product::1",
                f"toolbar::{HOSTILE}",  # shown as text: the markup was escaped
                price.key(7),
            ]
            assert page.locator("#KeyedCachePanel script").count() == 0
            folder = Path(
                os.environ.get("KEYEDCACHE_ARTIFACTS") or REPO / "artifacts" / "screenshots"
            )
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / DOCS_SCREENSHOT.name))
            if os.environ.get("KEYEDCACHE_DOCS_IMG") == "1":
                page.screenshot(path=str(DOCS_SCREENSHOT))
        finally:
            browser.close()


def test_concurrent_requests_keep_their_own_calls() -> None:
    """Two threads instrumented at once: each panel holds only its own thread's reads."""
    barrier = threading.Barrier(2, timeout=30)
    panels = {
        name: KeyedCachePanel(toolbar=None, get_response=lambda request: None) for name in "ab"
    }

    def request(name: str) -> None:
        panel = panels[name]
        panel.enable_instrumentation()
        try:
            barrier.wait()  # both are instrumented now: the receivers see both threads
            for i in range(20):
                cache_get("concurrent", name, i, default=None)
            barrier.wait()
        finally:
            panel.disable_instrumentation()

    threads = [threading.Thread(target=request, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for name, panel in panels.items():
        assert [row["key"] for row in panel.calls] == [
            f"concurrent::{name}::{i}" for i in range(20)
        ]
    assert signals.listening[0] is False
