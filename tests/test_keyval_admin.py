"""keyval's admin: browse, search, filter, add, edit text/JSON values, delete; the cache follows."""

from __future__ import annotations

import decimal
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import override_settings
from django.urls import reverse

from keyedcache.contrib.keyval import KeyVal
from keyedcache.contrib.keyval.admin import JSON, TEXT, edit_kind
from keyedcache.contrib.keyval.models import KeyValEntry
from tests import settings as test_settings
from tests.conftest import BackendConfig

# The admin commits in its own transactions; their on_commit work must run.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.backends("locmem")]

CHANGELIST = "admin:keyedcache_keyval_keyvalentry_changelist"
ADD = "admin:keyedcache_keyval_keyvalentry_add"
CHANGE = "admin:keyedcache_keyval_keyvalentry_change"
DELETE = "admin:keyedcache_keyval_keyvalentry_delete"


@pytest.fixture(autouse=True)
def admin_urls(backend: BackendConfig) -> Iterator[None]:
    """The admin at /admin/, keyval on db:// with the (locmem) cache of the `backend` fixture."""
    with override_settings(ROOT_URLCONF="tests.urls_keyval"):
        yield


def entry(store: str, key: str, using: str = "default") -> KeyValEntry:
    return KeyValEntry.objects.using(using).get(store=store, key=key)


def change_url(store: str, key: str) -> str:
    return reverse(CHANGE, args=[entry(store, key).pk])


def page(client: Client, url: str, **params: Any) -> str:
    response = client.get(url, params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


class TestBrowsing:
    def test_changelist_shows_store_key_value_and_escapes(self, admin_client: Client) -> None:
        KeyVal("site").set("title", "<script>alert(1)</script>")
        KeyVal("site").set("limits", {"max": 5})
        html = page(admin_client, reverse(CHANGELIST))
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script>alert(1)</script>" not in html
        assert "{&#x27;max&#x27;: 5}" in html
        assert "title" in html and "limits" in html and "site" in html

    def test_search_by_store_and_key_and_filter_by_store(self, admin_client: Client) -> None:
        KeyVal("alpha").set("needle", 1)
        KeyVal("alpha").set("hay", 2)
        KeyVal("beta").set("straw", 3)
        found = page(admin_client, reverse(CHANGELIST), q="needle")
        assert "needle" in found and "straw" not in found and "hay" not in found
        by_store = page(admin_client, reverse(CHANGELIST), q="beta")
        assert "straw" in by_store and "needle" not in by_store
        filtered = page(admin_client, reverse(CHANGELIST), store="alpha")
        assert "needle" in filtered and "hay" in filtered and "straw" not in filtered
        assert "By store" in page(admin_client, reverse(CHANGELIST))

    def test_unreadable_values_are_shown_not_fatal(self, admin_client: Client) -> None:
        KeyValEntry.objects.create(store="broken", key="k", value=b"not a pickle")
        assert "cannot unpickle" in page(admin_client, reverse(CHANGELIST))
        html = page(admin_client, change_url("broken", "k"))
        assert "cannot unpickle" in html and "<textarea" not in html

    def test_staff_only(self, backend: BackendConfig) -> None:
        KeyVal("site").set("title", "x")
        user = get_user_model().objects.create_user("plain", password="pw")
        client = Client()
        client.force_login(user)
        response = client.get(reverse(CHANGELIST))
        assert response.status_code == 302 and "/login/" in response["Location"]


class TestEditing:
    def test_add_text_and_json_values(self, admin_client: Client) -> None:
        assert "<textarea" in page(admin_client, reverse(ADD))
        for key, kind, text, expected in [
            ("t", TEXT, "hello\r\nworld", "hello\nworld"),
            ("n", TEXT, "42", "42"),
            ("j", JSON, '{"a": [1, 2.5, true, null]}', {"a": [1, 2.5, True, None]}),
            ("i", JSON, "42", 42),
        ]:
            response = admin_client.post(
                reverse(ADD), {"store": "new", "key": key, "kind": kind, "text": text}
            )
            assert response.status_code == 302, response.content.decode()[:2000]
            value = KeyVal("new").get(key)
            assert value == expected and type(value) is type(expected)

    def test_bad_json_and_duplicate_keys_are_form_errors(self, admin_client: Client) -> None:
        KeyVal("s").set("taken", 1)
        bad = admin_client.post(
            reverse(ADD), {"store": "s", "key": "k", "kind": JSON, "text": "{x"}
        )
        assert bad.status_code == 200 and "Not valid JSON" in bad.content.decode()
        nan = admin_client.post(
            reverse(ADD), {"store": "s", "key": "k", "kind": JSON, "text": "NaN"}
        )
        assert nan.status_code == 200 and "Not valid JSON" in nan.content.decode()
        dup = admin_client.post(
            reverse(ADD), {"store": "s", "key": "taken", "kind": TEXT, "text": "2"}
        )
        assert dup.status_code == 200 and "already exists" in dup.content.decode()
        assert KeyVal("s").items() == [("taken", 1)]

    @pytest.mark.parametrize(
        ("value", "kind", "shown", "posted", "expected"),
        [
            ("old text", TEXT, "old text", "new\r\ntext", "new\ntext"),
            ("with\r\nreturn", JSON, '"with\\r\\nreturn"', '"a\\r\\nb"', "a\r\nb"),
            (5, JSON, "5", "7", 7),
            (1.5, JSON, "1.5", "2.0", 2.0),
            (True, JSON, "true", "false", False),
            (None, JSON, "null", '"now text"', "now text"),
            ([1, "a"], JSON, '"a"', '[2, "b"]', [2, "b"]),
            ({"k": {"n": 1}}, JSON, '"n": 1', '{"k": {"n": 2}}', {"k": {"n": 2}}),
        ],
    )
    def test_change_editable_values_keeps_their_type(
        self, admin_client: Client, value: Any, kind: str, shown: str, posted: str, expected: Any
    ) -> None:
        kv = KeyVal("edit")
        kv.set("k", value)
        assert edit_kind(value) == kind
        url = change_url("edit", "k")
        html = page(admin_client, url)
        assert "<textarea" in html
        assert shown.replace('"', "&quot;") in html
        assert kv.get("k") == value  # cached now
        response = admin_client.post(url, {"kind": kind, "text": posted})
        assert response.status_code == 302, response.content.decode()[:2000]
        assert kv.get("k") == expected and type(kv.get("k")) is type(expected)
        assert entry("edit", "k").key == "k"  # store and key cannot change here

    @pytest.mark.parametrize(
        "value",
        [decimal.Decimal("1.5"), (1, 2), {1: "int key"}, float("nan"), {"s": {1, 2}}, b"raw"],
    )
    def test_other_values_are_read_only(self, admin_client: Client, value: Any) -> None:
        kv = KeyVal("ro")
        kv.set("k", value)
        assert edit_kind(value) is None
        url = change_url("ro", "k")
        html = page(admin_client, url)
        assert "<textarea" not in html and "read-only here" in html
        response = admin_client.post(url, {"kind": JSON, "text": "1"})
        assert response.status_code == 302
        assert pickle.dumps(kv.get("k")) == pickle.dumps(value)

    def test_delete_one_and_many_drops_cached_copies(self, admin_client: Client) -> None:
        kv = KeyVal("del")
        for key in ("a", "b", "c"):
            kv.set(key, key)
            kv.get(key)  # cached
        response = admin_client.post(reverse(DELETE, args=[entry("del", "a").pk]), {"post": "yes"})
        assert response.status_code == 302
        assert not kv.exists("a")
        pks = [entry("del", key).pk for key in ("b", "c")]
        response = admin_client.post(
            reverse(CHANGELIST),
            {"action": "delete_selected", "_selected_action": pks, "post": "yes"},
        )
        assert response.status_code == 302
        assert kv.keys() == [] and not kv.exists("b") and not kv.exists("c")


@pytest.mark.django_db(
    transaction=True, databases=["default", "pg"] if test_settings.HAVE_POSTGRES else ["default"]
)
def test_admin_shows_the_database_of_the_configured_store(
    request: pytest.FixtureRequest, admin_client: Client
) -> None:
    request.getfixturevalue("postgres_available")
    KeyVal("where", backend="db://").set("in-default", 1)
    with override_settings(KEYEDCACHE_KEYVAL_BACKEND="db://?using=pg"):
        KeyVal("where").set("in-pg", 1)
        html = page(admin_client, reverse(CHANGELIST))
        assert "in-pg" in html and "in-default" not in html
        response = admin_client.post(
            reverse(ADD), {"store": "where", "key": "added", "kind": TEXT, "text": "x"}
        )
        assert response.status_code == 302
        assert KeyVal("where").get("added") == "x"
        url = reverse(CHANGE, args=[entry("where", "in-pg", using="pg").pk])
        assert admin_client.post(url, {"kind": JSON, "text": "2"}).status_code == 302
        assert KeyVal("where").get("in-pg") == 2
