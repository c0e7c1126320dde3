"""The dashboard hardening of issues 13 and 15, through Django's test client.

Listings that never unpickle values, bounded previews, typed confirmation for
any pattern that matches every key, long keys linked by reference, HEAD, the
full storage key, and model instances shown field by field.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.core.cache import caches
from django.test import Client

import keyedcache
from keyedcache.dashboard.keypages import MAX_REPR
from keyedcache.dashboard.refs import LONG_KEY
from keyedcache.forms import matches_every_key
from keyedcache.registry import default_cache
from tests.conftest import BackendConfig
from tests.test_views import DELETE, DETAIL, STATS, VIEW, XSS, XSS_ESCAPED, client_for, make_user

pytestmark = [pytest.mark.urls("tests.urls_dashboard"), pytest.mark.django_db]

#: Labels of the values unpickled since the list was last cleared.
UNPICKLED: list[str] = []


class Tracked:
    """A value that records being unpickled (its __setstate__ runs on every load)."""

    def __init__(self, label: str, payload: bytes = b"") -> None:
        self.label = label
        self.payload = payload

    def __setstate__(self, state: dict[str, Any]) -> None:
        UNPICKLED.append(state["label"])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Tracked({self.label!r}, {len(self.payload)} bytes)"


@pytest.fixture
def deleter() -> Client:
    return client_for(make_user("deleter", can_delete=True))


# -- listings never unpickle values -------------------------------------------------------


def test_listing_reads_sizes_without_unpickling_values(
    backend: BackendConfig, deleter: Client
) -> None:
    store = default_cache()
    for i in range(3):
        store.set(f"big::{i}", Tracked(f"big::{i}", b"x" * 200_000), 600)
    store.set("big::0::below", Tracked("below"), 600)
    store.set("big", Tracked("big itself"), 600)
    UNPICKLED.clear()
    for url in (f"{VIEW}?prefix=big", f"{VIEW}?q=big*", VIEW, f"{VIEW}?prefix=big&all=1"):
        response = deleter.get(url)
        assert response.status_code == 200, url
    assert UNPICKLED == []
    rows = {row["label"]: row for row in deleter.get(f"{VIEW}?prefix=big").context["rows"]}
    assert all(200_000 < rows[str(i)]["size"] < 200_600 for i in range(3))
    assert rows["0"]["is_key"] and rows["0"]["is_branch"] and rows["0"]["fresh"]
    assert rows["0"]["ttl"] in ("10 min", "9 min 59 s")
    assert UNPICKLED == []
    # The key page decodes that one value (and only it).
    page = deleter.get(f"{DETAIL}?key=big::1")
    assert page.status_code == 200 and UNPICKLED == ["big::1"]
    assert page.context["value_repr"] == "Tracked('big::1', 200000 bytes)"


def test_stale_entries_show_as_stale_in_listings(backend: BackendConfig, deleter: Client) -> None:
    from keyedcache.entry import make_entry

    store = default_cache()
    store.set_entry("st::old", make_entry(Tracked("old"), 600, stale=60, now=0.0 + 1), 600)
    store.set_entry("st::new", make_entry(Tracked("new"), 600, stale=60), 600)
    UNPICKLED.clear()
    rows = {row["label"]: row for row in deleter.get(f"{VIEW}?prefix=st").context["rows"]}
    assert rows["old"]["fresh"] is False and rows["new"]["fresh"] is True
    assert UNPICKLED == []


@pytest.mark.backends("locmem", "redis")
def test_the_preview_of_a_big_value_is_truncated(backend: BackendConfig, deleter: Client) -> None:
    store = default_cache()
    store.set("huge::text", "é" * 3_000_000, 600)
    store.set("huge::list", list(range(1_000_000)), 600)
    store.set("huge::nested", {"rows": [{"n": i, "s": "v" * 50} for i in range(50_000)]}, 600)
    store.set("huge::bytes", bytearray(b"\x00\xff") * 2_000_000, 600)
    for key in ("huge::text", "huge::list", "huge::nested", "huge::bytes"):
        response = deleter.get(DETAIL, {"key": key})
        assert response.status_code == 200
        context = response.context
        assert len(context["value_repr"]) <= MAX_REPR + 2
        assert context["repr_cut"], key
        assert context["size"] > 500_000
        assert len(response.content) < 200_000, key


# -- patterns that match every key -------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["*", "**", "?*", "*?", "**?*", "??*"])
def test_patterns_matching_every_key_need_the_typed_confirmation(
    backend: BackendConfig, deleter: Client, pattern: str
) -> None:
    assert matches_every_key(pattern)
    store = default_cache()
    for key in ("a", "bb::c", "product::3"):
        store.set(key, 1, 600)
    refused = deleter.post(DELETE, {"action": "pattern", "pattern": pattern})
    assert refused.status_code == 200
    assert "matches every key" in html.unescape(refused.content.decode())
    assert 'id="kc-pattern-confirm"' in refused.content.decode()
    wrong = deleter.post(DELETE, {"action": "pattern", "pattern": pattern, "confirm": "delete"})
    assert wrong.status_code == 200
    assert sorted(store.keys()) == ["a", "bb::c", "product::3"]
    done = deleter.post(DELETE, {"action": "pattern", "pattern": pattern, "confirm": "DELETE"})
    assert done.status_code == 302
    expected = [] if "??" not in pattern else ["a"]
    assert sorted(store.keys()) == expected


def test_other_patterns_need_no_confirmation(backend: BackendConfig, deleter: Client) -> None:
    for pattern in ("product::*", "*::3", "?", "[!x]*", "[*]*", "a*", "[!]*", "*[\x01-\uffff]"):
        assert not matches_every_key(pattern), pattern
    assert matches_every_key("*[\x00-\U0010ffff]") and matches_every_key("[\x00-\U0010ffff]*?")
    store = default_cache()
    store.set("product::3", 1, 600)
    store.set("other", 1, 600)
    done = deleter.post(DELETE, {"action": "pattern", "pattern": "product::*"})
    assert done.status_code == 302
    assert store.keys() == ["other"]


def test_the_delete_page_asks_for_the_confirmation_of_a_prefilled_pattern(deleter: Client) -> None:
    asked = deleter.get(DELETE, {"pattern": "?*"}).content.decode()
    assert 'id="kc-pattern-confirm"' in asked
    assert 'id="kc-pattern-confirm"' not in deleter.get(DELETE, {"pattern": "a*"}).content.decode()


# -- long keys travel by reference ----------------------------------------------------------------

LONG = "long::" + "k" * 100_000


def hrefs(response: Any) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', response.content.decode())]


@pytest.mark.backends("locmem", "db-sqlite", "file", "memcached", "redis")
def test_a_100_kb_key_opens_and_deletes_through_a_short_reference(
    backend: BackendConfig, deleter: Client
) -> None:
    store = default_cache()
    store.set(LONG, {"long": True}, 600)
    store.set(LONG + "::child", 2, 600)
    store.set("long::short", 3, 600)
    pages = [deleter.get(VIEW, {"prefix": "long"}), deleter.get(VIEW, {"q": "long::k*"})]
    links = [h for page in pages for h in hrefs(page) if "/cache/view/" in h]
    assert links and max(len(h) for h in links) < 2 * LONG_KEY
    key_links = [h for h in links if h.startswith(DETAIL) and "ref=" in h]
    assert key_links
    opened = deleter.get(key_links[0])
    assert opened.status_code == 200 and opened.context["key"] == LONG
    assert opened.context["value_repr"] == "{'long': True}"
    assert max(len(h) for h in hrefs(opened)) < 2 * LONG_KEY
    # The branch below the long key, by reference too.
    below = deleter.get(opened.context["below_url"])
    assert below.status_code == 200 and below.context["branch"] == LONG
    assert [row["label"] for row in below.context["rows"]] == ["child"]
    # Its subtree delete link pre-fills the delete page with the (encoded) key.
    delete_page = deleter.get(below.context["delete_url"])
    assert delete_page.status_code == 200 and "100,006 characters" in delete_page.content.decode()
    data = {"action": "key", "encoded_key": opened.context["encoded_key"], "children": "on"}
    done = deleter.post(DELETE, data)
    assert done.status_code == 302
    assert store.keys("long::*") == ["long::short"]
    # A reference whose entry is gone leads back to the list, never to an error.
    assert deleter.get(key_links[0]).status_code == 302
    assert deleter.get(DETAIL, {"ref": "not-a-keyedcache-key"}).status_code == 302


# -- HEAD -------------------------------------------------------------------------------------


@pytest.mark.backends("locmem", "redis")
def test_head_is_answered_like_get_without_a_body(backend: BackendConfig, deleter: Client) -> None:
    keyedcache.cache_set("product", 3, value={"id": 3})
    for url in (STATS, VIEW, f"{VIEW}?prefix=product", f"{DETAIL}?key=product::3", DELETE):
        got = deleter.get(url)
        head = deleter.head(url)
        assert head.status_code == got.status_code == 200, url
        assert head.content == b"", url
        for header in ("Content-Type", "Cache-Control", "X-Frame-Options"):
            assert head.get(header) == got.get(header), (url, header)
        assert int(head["Content-Length"]) > 1000
        assert abs(int(head["Content-Length"]) - len(got.content)) < 100, url
    missing = deleter.head(f"{DETAIL}?key=nothing::here")
    assert missing.status_code == 404 and missing.content == b""
    anonymous = Client().head(STATS)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    refused = deleter.put(VIEW)
    assert refused.status_code == 405 and "HEAD" in refused["Allow"]


# -- the key page: storage key, model instances ---------------------------------------------------


@pytest.mark.backends("locmem", "redis", "db-sqlite")
def test_the_storage_key_includes_the_key_prefix_and_version(
    backend: BackendConfig, deleter: Client
) -> None:
    keyedcache.cache_set("product", 3, value=1)
    context = deleter.get(DETAIL, {"key": "product::3"}).context
    made = caches["default"].make_key(default_cache().storage_key("product::3"))
    assert context["storage_key"] == made
    assert made.startswith(f"{backend.prefix}:1:") and made.endswith("product::3")


def test_a_model_instance_shows_its_label_pk_and_fields_escaped(deleter: Client) -> None:
    from tests.models import Widget

    widget = Widget.objects.create(name=XSS, slug="w-1", key="k-1")
    keyedcache.cache_set("widget", widget.pk, value=widget)
    response = deleter.get(DETAIL, {"key": f"widget::{widget.pk}"})
    assert response.status_code == 200
    model = response.context["model"]
    assert model["label"] == "tests.Widget" and model["pk"] == repr(widget.pk)
    fields = {field["name"]: field["value"] for field in model["fields"]}
    assert fields == {"id": repr(widget.pk), "name": repr(XSS), "slug": "'w-1'", "key": "'k-1'"}
    text = response.content.decode()
    assert "<script>alert" not in text and XSS_ESCAPED in text
    assert "tests.Widget (pk " in text
    assert f"model tests.Widget, pk {widget.pk}" in response.context["value_type"]
