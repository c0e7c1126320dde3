"""The staff dashboard through Django's test client: access, pages, deletes, CSRF, escaping.

Rendering and deletes run on every backend of the `backend` fixture (listing
backends report exact counts; memcached and the file cache count before they
delete); access rules, CSRF, escaping and secrets on locmem.
"""

from __future__ import annotations

import html
import logging
import pickle
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client
from django.test.utils import override_settings
from django.urls import reverse

import keyedcache
from keyedcache.dashboard import browser, overview
from keyedcache.dashboard.access import DELETE_PERMISSION
from keyedcache.dashboard.chart import build_chart
from keyedcache.dashboard.keypages import MAX_REPR
from keyedcache.dashboard.secrets import MASK, mask_location, mask_options
from keyedcache.entry import Entry
from keyedcache.registry import default_cache
from tests.conftest import BackendConfig

pytestmark = [pytest.mark.urls("tests.urls_dashboard"), pytest.mark.django_db]

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
STATS, VIEW, DETAIL, DELETE = "/cache/", "/cache/view/", "/cache/view/key/", "/cache/delete/"


# -- users and clients ---------------------------------------------------------------------


def make_user(username: str, *, staff: bool = True, can_delete: bool = False, **extra: Any) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", **extra)
    user.is_staff = staff
    user.save()
    if can_delete:
        user.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="keyedcache", codename="delete_cache_keys"
            )
        )
    return user


def client_for(user: User | None, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def deleter() -> Client:
    """A staff user with the delete permission."""
    return client_for(make_user("deleter", can_delete=True))


@pytest.fixture
def looker() -> Client:
    """A staff user without the delete permission."""
    return client_for(make_user("looker"))


# -- cache contents ---------------------------------------------------------------------------

TREE = [
    "product::3",
    "product::3::reviews",
    "product::3::reviews::1",
    "product::30",
    "product::31::reviews",
    "product::4",
    "category::1",
    "func::shop.views.price::(1,)",
]


def fill(keys: list[str], value: Callable[[str], Any] = lambda key: {"key": key}) -> None:
    for key in keys:
        default_cache().set(key, value(key), 600)


def many_keys(count: int = 500) -> list[str]:
    """`count` keys: most in product::<n> (with review children), some in other branches."""
    keys = [f"product::{i}" for i in range(count * 6 // 10)]
    keys += [f"product::{i}::reviews" for i in range(count // 10)]
    keys += [f"order::{i // 10}::line::{i % 10}" for i in range(count - len(keys) - 20)]
    keys += [f"session::{i:04x}" for i in range(20)]
    assert len(keys) == count
    return keys


def fill_many(keys: list[str]) -> None:
    store = default_cache()
    for start in range(0, len(keys), 100):
        store.set_many({key: key.upper() for key in keys[start : start + 100]}, 600)


def state() -> dict[str, Any]:
    """Every keyedcache entry: key -> value (what a GET must leave alone)."""
    store = default_cache()
    found = {}
    for key in store.keys("*"):
        entry = store.get_entry(key)
        found[key] = None if entry is None else entry.value
    return found


def remaining(keys: list[str]) -> set[str]:
    store = default_cache()
    return {key for key in keys if store.get_entry(key) is not None}


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def all_pages(key: str = "product::3") -> list[str]:
    """The URL of every dashboard page, branch and search views included."""
    return [
        STATS,
        VIEW,
        f"{VIEW}?prefix=product",
        f"{VIEW}?prefix=product::3",
        f"{VIEW}?q=product::3*",
        f"{VIEW}?q=reviews",
        f"{DETAIL}?key={key}",
        DELETE,
        f"{DELETE}?key={key}&children=on",
    ]


# -- access -------------------------------------------------------------------------------------


@pytest.mark.backends("locmem")
@pytest.mark.parametrize("url", all_pages())
def test_anonymous_users_are_sent_to_the_admin_login(backend: BackendConfig, url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/cache/")


@pytest.mark.backends("locmem")
def test_non_staff_users_are_sent_to_the_login_and_delete_nothing(backend: BackendConfig) -> None:
    fill(TREE)
    client = client_for(make_user("customer", staff=False))
    for url in all_pages():
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next=")
    response = client.post(DELETE, {"action": "all", "confirm": "DELETE"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    # The admin's login page tells them why.
    page = client.get(response["Location"])
    assert "not authorized to access this page" in page.content.decode()
    assert remaining(TREE) == set(TREE)


@pytest.mark.backends("locmem")
def test_inactive_staff_is_refused(backend: BackendConfig) -> None:
    user = make_user("gone")
    client = client_for(user)
    user.is_active = False
    user.save()
    assert client.get(STATS).status_code == 302


@pytest.mark.backends("locmem")
def test_staff_without_the_permission_can_look_but_not_delete(
    backend: BackendConfig, looker: Client
) -> None:
    fill(TREE)
    for url in all_pages():
        assert looker.get(url).status_code == 200, url
    page = looker.get(DELETE).content.decode()
    assert "needs the permission" in page
    assert page.count("<fieldset disabled>") == 3
    detail = looker.get(f"{DETAIL}?key=product::3").content.decode()
    assert 'id="kc-delete-key"' not in detail and 'id="kc-delete-subtree"' not in detail
    posts = [
        {"action": "key", "key": "product::3"},
        {"action": "key", "key": "product::3", "children": "on"},
        {"action": "pattern", "pattern": "product::*"},
        {"action": "all", "confirm": "DELETE"},
    ]
    for data in posts:
        assert looker.post(DELETE, data).status_code == 403
    assert remaining(TREE) == set(TREE)


@pytest.mark.backends("locmem")
def test_staff_with_the_permission_and_superusers_can_delete(
    backend: BackendConfig, deleter: Client
) -> None:
    fill(TREE)
    response = deleter.post(DELETE, {"action": "key", "key": "product::4"})
    assert response.status_code == 302
    superuser = User.objects.create_superuser("root", "root@example.com", "pw")
    assert superuser.has_perm(DELETE_PERMISSION)
    response = client_for(superuser).post(DELETE, {"action": "key", "key": "category::1"})
    assert response.status_code == 302
    assert remaining(TREE) == set(TREE) - {"product::4", "category::1"}


def test_the_permission_is_created_by_migrate() -> None:
    permission = Permission.objects.get(
        content_type__app_label="keyedcache", codename="delete_cache_keys"
    )
    assert permission.name == "Can delete cache keys in the cache dashboard"
    # The model behind it has no table and no other permission.
    assert Permission.objects.filter(content_type=permission.content_type).count() == 1


@pytest.mark.django_db(databases="__all__")
def test_migrations_are_complete() -> None:
    call_command("makemigrations", "keyedcache", check=True, dry_run=True, verbosity=0)


@pytest.mark.backends("locmem")
def test_pages_are_never_cached(backend: BackendConfig, deleter: Client) -> None:
    for url in all_pages():
        assert "no-store" in deleter.get(url)["Cache-Control"], url


@pytest.mark.backends("locmem")
def test_pages_take_only_their_methods(backend: BackendConfig, deleter: Client) -> None:
    assert deleter.post(STATS).status_code == 405
    assert deleter.post(VIEW).status_code == 405
    assert deleter.post(f"{DETAIL}?key=x").status_code == 405
    assert deleter.put(DELETE).status_code == 405


# -- the admin index ------------------------------------------------------------------------


@pytest.mark.backends("locmem")
def test_the_admin_index_links_staff_to_the_dashboard(
    backend: BackendConfig, looker: Client
) -> None:
    index = looker.get("/admin/").content.decode()
    link = reverse("admin:keyedcache_cachedashboard_changelist")
    assert f'href="{link}"' in index
    assert "Cache dashboard" in index
    assert "/admin/keyedcache/cachedashboard/add/" not in index
    response = looker.get(link)
    assert response.status_code == 302 and response["Location"] == STATS
    # No other admin page exists for it (there is no table behind it).
    assert looker.get(f"{link}1/change/").status_code == 404
    assert looker.get(f"{link}add/").status_code == 404


@pytest.mark.backends("locmem")
def test_the_admin_entry_is_staff_only(backend: BackendConfig) -> None:
    link = reverse("admin:keyedcache_cachedashboard_changelist")
    response = Client().get(link)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.backends("locmem")
@pytest.mark.urls("tests.urls_admin_only")
def test_the_admin_entry_hides_when_the_dashboard_is_not_mapped(
    backend: BackendConfig, looker: Client
) -> None:
    index = looker.get("/admin/").content.decode()
    assert "Cache dashboard" not in index


# -- every page renders -----------------------------------------------------------------------


def test_every_page_renders_with_no_keys(backend: BackendConfig, deleter: Client) -> None:
    stats = deleter.get(STATS)
    assert stats.status_code == 200
    text = stats.content.decode()
    assert "Cache Hit Rate" in text
    assert "<svg" in text and 'class="kc-chart"' in text
    assert "responding" in text
    keys = deleter.get(VIEW)
    assert keys.status_code == 200
    assert "<h1>Cache Keys</h1>" in keys.content.decode()
    assert "holds no keyedcache entries" in keys.content.decode()
    assert "No keys below" in deleter.get(f"{VIEW}?prefix=product").content.decode()
    assert "No key matches" in deleter.get(f"{VIEW}?q=product*").content.decode()
    missing = deleter.get(f"{DETAIL}?key=product::3")
    assert missing.status_code == 404
    assert "Nothing is cached under this key" in missing.content.decode()
    delete = deleter.get(DELETE)
    assert delete.status_code == 200
    assert '<label class="main" for="id_key">Key to delete:</label>' in delete.content.decode()


def test_every_page_renders_with_many_keys(backend: BackendConfig, deleter: Client) -> None:
    keys = many_keys(500)
    fill_many(keys)
    for url in all_pages(key="product::3"):
        response = deleter.get(url)
        assert response.status_code == 200, url

    root = deleter.get(VIEW)
    rows = {row["label"]: row for row in root.context["rows"]}
    assert set(rows) == {"order", "product", "session"}
    assert rows["product"]["count"] == "350"  # 300 products + 50 review children
    assert rows["order"]["count"] == "130"
    assert root.context["read_count"] == 500 and not root.context["truncated"]

    branch = deleter.get(f"{VIEW}?prefix=product")
    page = branch.context["page"]
    assert page.paginator.count == 300 and len(branch.context["rows"]) == browser.PAGE_SIZE
    labels = [row["label"] for row in branch.context["rows"]]
    assert labels[:12] == [str(i) for i in range(12)]  # natural order: 2 before 10
    assert branch.context["rows"][3]["is_branch"] and branch.context["rows"][3]["is_key"]
    last = deleter.get(f"{VIEW}?prefix=product&page=6")
    assert [row["label"] for row in last.context["rows"]][-1] == "299"
    assert deleter.get(f"{VIEW}?prefix=product&page=999").context["page"].number == 6

    search = deleter.get(f"{VIEW}?q=order::1::*")
    assert [row["label"] for row in search.context["rows"]] == [
        f"order::1::line::{i}" for i in range(10)
    ]
    contains = deleter.get(f"{VIEW}?q=reviews")  # no wildcard: keys containing it
    assert contains.context["page"].paginator.count == 50


def test_rows_show_ttl_and_stored_size(backend: BackendConfig, deleter: Client) -> None:
    store = default_cache()
    store.set("sized::forever", "x" * 1000, None)
    store.set("sized::minutes", [1, 2, 3], 125)
    response = deleter.get(f"{VIEW}?prefix=sized")
    rows = {row["label"]: row for row in response.context["rows"]}
    assert rows["forever"]["ttl"] == "never"
    assert rows["minutes"]["ttl"] in ("2 min 5 s", "2 min 4 s")
    entry = store.get_entry("sized::forever")
    assert entry is not None
    # What is stored: the pickled envelope (locmem: with the record's stamp and key around it).
    envelope = len(pickle.dumps(entry.pack(), pickle.HIGHEST_PROTOCOL))
    assert envelope <= rows["forever"]["size"] <= envelope + 200
    assert rows["forever"]["size"] > 1000
    assert re.search("1\\.[01]\xa0KB", response.content.decode())


def test_the_key_page_shows_type_size_ttl_status_and_value(
    backend: BackendConfig, deleter: Client
) -> None:
    fill(TREE)
    response = deleter.get(f"{DETAIL}?key=product::3")
    assert response.status_code == 200
    context = response.context
    assert context["value_type"] == "dict (1 item)"
    assert context["value_repr"] == "{'key': 'product::3'}"
    assert context["ttl"] in ("10 min", "9 min 59 s")
    assert context["size"] > 0
    assert not context["stale"]
    text = response.content.decode()
    assert '<span class="kc-pill fresh">fresh</span>' in text
    assert 'id="kc-delete-subtree"' in text
    assert context["below"] == 2
    assert "the 2 keys below it" in text
    leaf = deleter.get(f"{DETAIL}?key=product::4").content.decode()
    assert 'id="kc-delete-key"' in leaf and 'id="kc-delete-subtree"' not in leaf


@pytest.mark.backends("locmem", "redis")
def test_the_key_page_shows_a_stale_entry(backend: BackendConfig, deleter: Client) -> None:
    now = time.time()
    default_cache().set_entry("slow::report", Entry("old", now - 5, now + 55, 1.25), 55)
    response = deleter.get(f"{DETAIL}?key=slow::report")
    assert response.context["stale"]
    text = response.content.decode()
    assert '<span class="kc-pill stale">stale</span>' in text
    assert "1.250 s" in text  # what computing it cost


@pytest.mark.backends("locmem")
def test_the_value_is_shown_safely_and_truncated(backend: BackendConfig, deleter: Client) -> None:
    store = default_cache()
    store.set("big::list", list(range(200_000)), 60)
    store.set("big::text", "é" * 50_000, 60)
    store.set("odd::repr", BadRepr(), 60)
    big = deleter.get(f"{DETAIL}?key=big::list").context
    assert big["repr_cut"] and len(big["value_repr"]) <= MAX_REPR + 2
    assert big["value_type"] == "list (200,000 items)"
    text = deleter.get(f"{DETAIL}?key=big::text").context
    assert len(text["value_repr"]) < 3000 and text["value_type"] == "str (50,000 characters)"
    odd = deleter.get(f"{DETAIL}?key=odd::repr")
    assert odd.status_code == 200
    assert "repr() failed: RuntimeError: no repr for you" in odd.context["value_repr"]


class BadRepr:
    """A value whose repr() raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


@pytest.mark.backends("locmem")
def test_the_browser_reads_at_most_the_scan_limit(
    backend: BackendConfig, deleter: Client, settings: Any
) -> None:
    fill_many(many_keys(500))
    settings.KEYEDCACHE_DASHBOARD_SCAN_LIMIT = 100
    store = default_cache()
    taken: list[int] = []
    real = store.iter_keys

    def counting(pattern: str = "*", *, strict: bool = False) -> Iterator[str]:
        taken.append(0)
        for key in real(pattern, strict=strict):
            taken[-1] += 1
            yield key

    with mock.patch.object(store, "iter_keys", counting):
        limited = deleter.get(VIEW)
        assert taken == [101]  # the limit, and one more to know there are more
        text = limited.content.decode()
        assert limited.context["truncated"] and "At least 100 keys" in text
        assert "Count them all" in text
        taken.clear()
        full = deleter.get(f"{VIEW}?all=1")
        assert taken == [500] and not full.context["truncated"]
        assert {row["label"]: row["count"] for row in full.context["rows"]}["product"] == "350"
        assert 'href="/cache/view/?prefix=product&amp;all=1"' not in full.content.decode()


@pytest.mark.backends("locmem")
def test_the_browser_keeps_counts_for_a_bounded_number_of_branches(
    backend: BackendConfig, deleter: Client
) -> None:
    fill([f"flat::{i}" for i in range(12)])
    with mock.patch.object(browser, "MAX_BRANCHES", 5):
        response = deleter.get(VIEW, {"prefix": "flat", "all": "1"})
    assert len(response.context["rows"]) == 5
    assert response.context["read_count"] == 12
    assert "7 keys in further branches are counted but not listed" in response.content.decode()


@pytest.mark.backends("locmem")
def test_the_key_browser_escapes_glob_characters_of_branches(
    backend: BackendConfig, deleter: Client
) -> None:
    fill(["odd[1]*?::a", "odd[1]*?::b", "odd1x::c", "odd[1]*?x::d"])
    response = deleter.get(VIEW, {"prefix": "odd[1]*?"})
    assert [row["label"] for row in response.context["rows"]] == ["a", "b"]


@pytest.mark.backends("locmem")
def test_invisible_characters_in_keys_are_shown_as_escapes(
    backend: BackendConfig, deleter: Client
) -> None:
    fill(["ctl::a\x00b", "ctl::tab\there"])
    text = deleter.get(VIEW, {"prefix": "ctl"}).content.decode()
    assert "a\\x00b" in text and "tab\\there" in text
    assert "\x00" not in text


@pytest.mark.backends("locmem")
def test_the_old_lookup_form_opens_the_key_page(backend: BackendConfig, deleter: Client) -> None:
    response = deleter.get(VIEW, {"key": "product::3"})
    assert response.status_code == 302
    assert response["Location"] == f"{DETAIL}?key=product%3A%3A3"
    assert deleter.get(DETAIL).status_code == 302  # no key: back to the browser


@pytest.mark.backends("locmem")
def test_a_backend_that_cannot_list_keys(backend: BackendConfig, deleter: Client) -> None:
    config = backend.variant(KEY_FUNCTION="tests.test_views.custom_key_func")
    with override_settings(CACHES={"default": config}):
        keyedcache.keyedcache_configure()
        fill(["plain::1", "plain::1::x"])
        listing = deleter.get(VIEW)
        assert listing.status_code == 200
        assert "cannot list its keys" in listing.content.decode()
        detail = deleter.get(f"{DETAIL}?key=plain::1")
        assert detail.status_code == 200 and detail.context["below"] is None
        response = deleter.post(DELETE, {"action": "pattern", "pattern": "plain::*"})
        assert response.status_code == 200
        assert "cannot delete by pattern" in response.content.decode()
        response = deleter.post(
            DELETE, {"action": "key", "key": "plain::1", "children": "on"}, follow=True
        )
        assert messages_of(response) == [
            "Deleted an unknown number of keys (this backend cannot count them): "
            "“plain::1” and every key below it."
        ]
        assert remaining(["plain::1", "plain::1::x"]) == set()
    keyedcache.keyedcache_configure()


def custom_key_func(key: str, key_prefix: str, version: int) -> str:
    """A KEY_FUNCTION other than Django's: keyedcache then cannot list keys natively."""
    return f"c-{key_prefix}:{version}:{key}"


# -- outages: an error, never "nothing was cached" ------------------------------------------------

OUTAGE_BACKENDS = (
    "locmem",
    "db-sqlite",
    "file",
    "memcached",
    "redis",
    "django-redis",
    "valkey-cluster",
)
NOT_REACHED = "could not reach cache alias 'default': "
#: What the pages say when the backend answers and holds nothing: never during an outage.
EMPTY_CLAIMS = (
    "holds no keyedcache entries",
    "No keys below",
    "No key matches",
    "Nothing is cached under this key",
    "Deleted 0 keys",
    "nothing was cached",
)
DELETES = [
    {"action": "key", "key": "product::3"},
    {"action": "key", "key": "product::3", "children": "on"},
    {"action": "pattern", "pattern": "product::*"},
    {"action": "all", "confirm": "DELETE"},
]


def page_text(response: Any) -> str:
    """The page as a person reads it (entities decoded)."""
    return html.unescape(response.content.decode())


def assert_no_empty_claims(text: str, url: str) -> None:
    for claim in EMPTY_CLAIMS:
        assert claim not in text, (url, claim)


@pytest.mark.backends(*OUTAGE_BACKENDS)
def test_pages_render_while_the_backend_is_down(backend: BackendConfig, deleter: Client) -> None:
    fill(TREE)
    with backend.down():
        keyedcache.keyedcache_configure()
        stats = deleter.get(STATS)
        assert stats.status_code == 200
        assert '<span class="kc-pill down">not responding</span>' in stats.content.decode()
        assert f"{NOT_REACHED}did not answer a set/get round trip" in page_text(stats)
        assert deleter.get(DELETE).status_code == 200  # the forms
    keyedcache.keyedcache_configure()


@pytest.mark.backends(*OUTAGE_BACKENDS)
def test_the_key_browser_and_searches_show_the_outage(
    backend: BackendConfig, deleter: Client
) -> None:
    fill(TREE)
    urls = [VIEW, f"{VIEW}?prefix=product", f"{VIEW}?q=product::3*", f"{VIEW}?q=reviews"]
    with backend.down():
        keyedcache.keyedcache_configure()
        for url in [*urls, f"{VIEW}?all=1", f"{VIEW}?prefix=nothing::here", f"{VIEW}?q=zzz"]:
            response = deleter.get(url)
            text = page_text(response)
            assert_no_empty_claims(text, url)
            if backend.name == "locmem" and response.status_code == 200:
                # locmem cannot be unreachable: `down()` makes LocMemCache's methods
                # raise, but its keys are listed from its dict. Then they are shown.
                assert response.context["rows"] or "nothing" in url or "zzz" in url, url
                continue
            assert response.status_code == 503, url
            assert "The cache backend is not responding, so no keys could be listed" in text
            assert NOT_REACHED in text, url
            assert response.context["rows"] == [], url
    keyedcache.keyedcache_configure()
    for url in urls:  # service resumes
        assert deleter.get(url).status_code == 200, url


@pytest.mark.backends(*OUTAGE_BACKENDS)
def test_the_key_page_shows_the_outage(backend: BackendConfig, deleter: Client) -> None:
    fill(TREE)
    with backend.down():
        keyedcache.keyedcache_configure()
        for key in ("product::3", "never::written"):
            response = deleter.get(DETAIL, {"key": key})
            text = page_text(response)
            assert_no_empty_claims(text, key)
            if backend.name == "locmem" and response.status_code == 200:
                assert response.context["value_repr"] == repr({"key": key})  # read: shown
                continue
            assert response.status_code == 503, key
            assert "This key could not be read: the cache backend is not responding" in text
            assert NOT_REACHED in text
    keyedcache.keyedcache_configure()
    assert deleter.get(DETAIL, {"key": "product::3"}).status_code == 200


@pytest.mark.backends(*OUTAGE_BACKENDS)
def test_a_delete_that_does_not_reach_the_backend_is_an_error(
    backend: BackendConfig, deleter: Client, caplog: pytest.LogCaptureFixture
) -> None:
    fill(TREE)
    caplog.set_level(logging.INFO, logger="keyedcache")
    with backend.down():
        keyedcache.keyedcache_configure()
        for data in DELETES:
            response = deleter.post(DELETE, data)
            assert response.status_code == 503, data  # no redirect: the page says it failed
            text = page_text(response)
            assert_no_empty_claims(text, str(data))
            assert "Deleted" not in text
            [message] = messages_of(response)
            assert message.startswith(f"The delete did not reach the cache: {NOT_REACHED}"), data
            assert message.endswith("may still be cached; try again when the backend answers.")
            assert message in text
    keyedcache.keyedcache_configure()
    lines = [r.getMessage() for r in caplog.records if r.name == "keyedcache"]
    assert not [line for line in lines if "deleter deleted" in line]  # never logged as done
    failed = [line for line in lines if line.startswith("keyedcache: deleter could not delete")]
    assert len(failed) == len(DELETES)
    assert failed[1].startswith(
        "keyedcache: deleter could not delete “product::3” and every key below it "
        f"from cache alias 'default': {NOT_REACHED}"
    )
    assert remaining(TREE) == set(TREE)  # nothing was deleted either


@pytest.mark.backends("locmem")
def test_outage_messages_are_escaped_and_never_show_a_password(
    backend: BackendConfig,
    deleter: Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    from keyedcache.cache import KeyedCache
    from keyedcache.exceptions import CacheBackendError, CacheNotRespondingError

    # The password holds "@", a space, "/", "?", "#" and ":" (issue 13).
    url = "redis://admin:s3cret@u rl/?#:x@127.0.0.1:9/0?password=s3cret-query&db=0"
    config = backend.variant(LOCATION=url, OPTIONS={"password": "s3cret-option"})
    cause = ConnectionError(f"connecting to {url} with s3cret-option refused")

    def fail(self: KeyedCache, key: str, *args: Any, **kwargs: Any) -> Any:
        raise CacheBackendError("default", "delete", key, cause) from cause

    def unanswered(self: KeyedCache) -> bool:
        raise CacheNotRespondingError(
            f"cache alias 'default' did not answer a set/get round trip: {cause}"
        ) from cause

    fill(TREE)
    monkeypatch.setattr(KeyedCache, "delete", fail)
    monkeypatch.setattr(KeyedCache, "iter_keys", fail)
    monkeypatch.setattr(KeyedCache, "require", unanswered)
    monkeypatch.setattr(KeyedCache, "peek_many", lambda self, keys: {})
    with override_settings(CACHES={"default": config}):
        keyedcache.keyedcache_configure()
        pages = [
            deleter.get(VIEW),
            deleter.get(VIEW, {"q": XSS}),
            deleter.get(DETAIL, {"key": XSS}),
            deleter.post(DELETE, {"action": "key", "key": XSS}),
        ]
        for response in pages:
            assert response.status_code == 503
            raw = response.content.decode()
            assert "s3cret" not in raw
            assert "<script>alert" not in raw
            assert "redis://********@127.0.0.1:9/0?password=********&db=0" in page_text(response)
        assert XSS_ESCAPED in pages[-1].content.decode()  # the key, in the message
    keyedcache.keyedcache_configure()
    logged = [record.getMessage() for record in caplog.records]
    assert any("could not delete" in line for line in logged)  # the failed delete, logged
    assert not [line for line in logged if "s3cret" in line or "u rl" in line]


def test_mask_text_masks_the_secrets_of_the_alias_anywhere() -> None:
    from keyedcache.dashboard.secrets import mask_text

    config = {
        "LOCATION": ["redis://u:pw-one@h1:6379/0", "h2:6379?db=1&auth_token=tok-two"],
        "OPTIONS": {"PASSWORD": "opt-three", "CONNECTION_POOL_KWARGS": {"secret": b"four"}},
    }
    text = (
        "failed: pw-one, tok-two, opt-three and four; other://x:y@h/?api_key=k&db=2 "
        "while listing 'product::?' (a glob, not a query)"
    )
    assert mask_text(text, config) == (
        f"failed: {MASK}, {MASK}, {MASK} and {MASK}; other://{MASK}@h/?api_key={MASK}&db=2 "
        "while listing 'product::?' (a glob, not a query)"
    )
    assert mask_text("nothing secret", None) == "nothing secret"


# -- stats ---------------------------------------------------------------------------------------


@pytest.mark.backends("locmem", "redis")
def test_the_stats_page_shows_cluster_and_process_figures(
    backend: BackendConfig, deleter: Client
) -> None:
    from keyedcache.counters import counters

    counters.reset()
    fill(["product::1", "product::2"])
    for _ in range(3):
        keyedcache.cache_get("product", 1)
        keyedcache.cache_get("product", 9, default=None)
    response = deleter.get(STATS)
    context = response.context
    rows = {row["name"]: row for row in context["counters"]}
    assert rows["calls"]["process"] == "6"
    assert rows["hits"]["process"] == "3" and rows["misses"]["process"] == "3"
    assert rows["hit_rate"]["label"] == "Cache Hit Rate"
    assert rows["hit_rate"]["process"] == "50.0%"
    assert rows["sets"]["process"] == "2"
    for name in ("local_hits", "local_misses", "deletes", "errors", "executions", "waits"):
        assert name in rows
    prefixes = {row["prefix"]: row for row in context["prefixes"]}
    assert prefixes["product"]["calls"] == "6" and prefixes["product"]["rate"] == "50.0%"
    assert prefixes["product"]["url"] == "/cache/view/?prefix=product"
    chart = context["chart"]
    assert len(chart["bars"]) == 60 and chart["bars"][-1]["height"] > 0
    text = response.content.decode()
    assert "Cache Hit Rate" in text and "First-level hits" in text
    assert "Memoized-body executions" in text
    assert context["backend"]["health"] == "up"
    assert context["backend"]["backend"] == backend.caches["default"]["BACKEND"]
    assert re.search(r"round trip \d+\.\d+ ms", text)


def test_the_chart_geometry() -> None:
    minute = int(time.time() // 60) * 60
    series = [
        {"minute": minute - 60 * (59 - i), "calls": i * 10, "hits": i * 5, "local_hits": 0}
        for i in range(60)
    ]
    series[30]["calls"] = series[30]["hits"] = 0  # a quiet minute breaks the hit-rate line
    chart = build_chart(series)
    assert len(chart["bars"]) == 60
    assert max(bar["height"] for bar in chart["bars"]) <= chart["plot_height"]
    assert len(chart["lines"]) == 2 and chart["lines"][0].startswith("M ")
    assert [tick["rate"] for tick in chart["y_ticks"]] == ["0%", "25%", "50%", "75%", "100%"]
    assert chart["y_ticks"][-1]["calls"] == "600"
    assert len(chart["x_ticks"]) == 6
    assert not chart["empty"]
    empty = build_chart([{"minute": minute, "calls": 0}])
    assert empty["empty"] and empty["lines"] == [] and empty["dots"] == []


def test_read_stats_survives_an_unexpected_shape() -> None:
    with mock.patch.object(overview, "cluster_stats", lambda: {"totals": {"calls": "x"}}):
        figures = overview.read_stats()
    assert figures["totals"] == {} and figures["series"] == [] and not figures["cluster"]
    with mock.patch.object(overview, "cluster_stats", mock.Mock(side_effect=RuntimeError)):
        assert overview.read_stats()["process"] == {}


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("redis://user:s3cret@cache.example:6379/0", "redis://********@cache.example:6379/0"),
        ("rediss://:s3cret@cache.example:6380", "rediss://********@cache.example:6380"),
        ("redis://cache.example:6379/0?password=s3cret&db=1", None),
        ("user:s3cret@10.0.0.1:11211", "********@10.0.0.1:11211"),
        (["10.0.0.1:11211", "redis://a:s3cret@b"], "10.0.0.1:11211, redis://********@b"),
        ("/var/tmp/django_cache", "/var/tmp/django_cache"),
        # Passwords holding URL delimiters (issue 13): the whole userinfo goes.
        ("redis://:p@ss-s3cret@127.0.0.1:6379/0", "redis://********@127.0.0.1:6379/0"),
        ("redis://u:s3cret pa ss@h:1/0", "redis://********@h:1/0"),
        ("redis://u:s3/cret@h:1/0", "redis://********@h:1/0"),
        ("redis://u:s3?cret@h:1/0?db=2", "redis://********@h:1/0?db=2"),
        ("redis://u:s3#cret@h:1/0", "redis://********@h:1/0"),
        ("redis://u:s3:cr@et:x@h:1", "redis://********@h:1"),
        ("redis://h:1/0?password=s3cret&x#y&db=1", "redis://h:1/0?password=********&db=1"),
        ("redis://h:1/0?db=1&Pass%77ord=s3cret", "redis://h:1/0?db=1&Pass%77ord=********"),
        (
            "rediss://:a,s3cret@h1:1,rediss://:b@s3cret@h2:2",
            "rediss://********@h1:1,rediss://********@h2:2",
        ),
        (("redis://:s3cret@a", "redis://:s3cret@b"), "redis://********@a, redis://********@b"),
        ("user:s3@cret@10.0.0.1:11211", "********@10.0.0.1:11211"),
    ],
)
def test_locations_are_masked(location: Any, shown: str | None) -> None:
    masked = mask_location(location)
    assert "s3cret" not in masked
    if shown is not None:
        assert masked == shown
    else:
        assert "password=********" in masked and "db=1" in masked


def test_options_are_masked() -> None:
    options = {
        "password": "s3cret",
        "PASSWORD": "s3cret",
        "username": "app",
        "socket_timeout": 2,
        "CONNECTION_POOL_KWARGS": {"ssl_keyfile": "/k", "auth_token": "s3cret"},
        "url": "redis://u:s3cret@h",
        "servers": ["redis://:s3cret@h1", ("redis://u:s3cret@h2", 1)],
        "client": {"sentinels": [("h", 26379)], "sentinel_kwargs": {"password": "s3cret"}},
    }
    shown = dict(mask_options(options))
    assert "s3cret" not in repr(shown)
    assert shown["password"] == shown["PASSWORD"] == MASK
    assert shown["username"] == "app" and shown["socket_timeout"] == "2"
    assert shown["CONNECTION_POOL_KWARGS.auth_token"] == MASK
    assert shown["url"] == "redis://********@h"
    assert shown["servers"] == "[redis://********@h1, (redis://********@h2, 1)]"
    assert shown["client.sentinels"] == "[(h, 26379)]"


@pytest.mark.backends("locmem")
def test_the_stats_page_never_shows_a_password(backend: BackendConfig, deleter: Client) -> None:
    from tests.servers import free_port

    config = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://admin:s3cret-url@127.0.0.1:{free_port()}/0?password=s3cret-query",
        "OPTIONS": {"password": "s3cret-option", "socket_connect_timeout": 0.5},
        "KEY_PREFIX": backend.prefix,
    }
    with override_settings(CACHES={"default": config}):
        keyedcache.keyedcache_configure()
        response = deleter.get(STATS)
        text = response.content.decode()
        assert response.status_code == 200
        assert "s3cret" not in text
        assert "redis://********@127.0.0.1:" in text
        assert "not responding" in text
        caches.close_all()
    keyedcache.keyedcache_configure()


# -- deletes -------------------------------------------------------------------------------------


def post_delete(client: Client, data: dict[str, Any]) -> Any:
    response = client.post(DELETE, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return client.get(response["Location"])


def test_delete_one_key_takes_just_that_key(backend: BackendConfig, deleter: Client) -> None:
    fill(TREE)
    page = post_delete(deleter, {"action": "key", "key": "product::3"})
    assert messages_of(page) == ["Deleted 1 key: “product::3”."]
    assert remaining(TREE) == set(TREE) - {"product::3"}
    again = post_delete(deleter, {"action": "key", "key": "product::3"})
    assert messages_of(again) == ["Deleted 0 keys: nothing was cached for “product::3”."]


def test_delete_a_key_with_its_children(backend: BackendConfig, deleter: Client) -> None:
    fill(TREE)
    page = post_delete(deleter, {"action": "key", "key": "product::3", "children": "on"})
    assert messages_of(page) == ["Deleted 3 keys: “product::3” and every key below it."]
    assert remaining(TREE) == set(TREE) - {
        "product::3",
        "product::3::reviews",
        "product::3::reviews::1",
    }


def test_delete_by_pattern(backend: BackendConfig, deleter: Client) -> None:
    fill(TREE)
    page = post_delete(deleter, {"action": "pattern", "pattern": "product::*::reviews"})
    assert messages_of(page) == ["Deleted 2 keys: the keys matching “product::*::reviews”."]
    assert remaining(TREE) == set(TREE) - {"product::3::reviews", "product::31::reviews"}


def test_delete_everything_needs_the_confirmation(backend: BackendConfig, deleter: Client) -> None:
    fill(TREE)
    caches["default"].set("not-keyedcache", "kept", 600)
    for confirm in ("", "delete", "yes", "DELETE ALL"):
        response = deleter.post(DELETE, {"action": "all", "confirm": confirm})
        assert response.status_code == 200
        assert "to delete everything" in response.content.decode() or confirm == ""
        assert response.context["all_form"].errors
    assert remaining(TREE) == set(TREE)
    page = post_delete(deleter, {"action": "all", "confirm": "DELETE"})
    assert messages_of(page) == ["Deleted 8 keys: every keyedcache entry."]
    assert remaining(TREE) == set()
    assert caches["default"].get("not-keyedcache") == "kept"


@pytest.mark.backends("locmem")
def test_delete_forms_reject_empty_input(backend: BackendConfig, deleter: Client) -> None:
    fill(TREE)
    for data in (
        {"action": "key", "key": ""},
        {"action": "key", "key": "   "},
        {"action": "pattern", "pattern": ""},
        {"action": "pattern", "pattern": "**"},
    ):
        response = deleter.post(DELETE, data)
        assert response.status_code == 200, data
        form = response.context["key_form" if data["action"] == "key" else "pattern_form"]
        assert form.errors, data
    assert deleter.post(DELETE, {"action": "everything"}).status_code == 400
    assert remaining(TREE) == set(TREE)


@pytest.mark.backends("locmem")
def test_a_key_with_surrounding_spaces_is_deleted_exactly(
    backend: BackendConfig, deleter: Client
) -> None:
    fill([" spaced ", "spaced"])
    post_delete(deleter, {"action": "key", "key": " spaced "})
    assert remaining([" spaced ", "spaced"]) == {"spaced"}


@pytest.mark.backends("locmem")
def test_deletes_from_the_key_page_return_to_its_branch(
    backend: BackendConfig, deleter: Client
) -> None:
    fill(TREE)
    detail = deleter.get(f"{DETAIL}?key=product::3").content.decode()
    assert 'name="next" value="/cache/view/?prefix=product"' in detail
    response = deleter.post(
        DELETE,
        {
            "action": "key",
            "key": "product::3",
            "children": "on",
            "next": "/cache/view/?prefix=product",
        },
    )
    assert response["Location"] == "/cache/view/?prefix=product"
    response = deleter.post(
        DELETE, {"action": "key", "key": "product::4", "next": "https://evil.example/"}
    )
    assert response["Location"] == DELETE


@pytest.mark.backends("locmem", "memcached")
def test_the_key_page_buttons_delete_any_key(backend: BackendConfig, deleter: Client) -> None:
    odd = ["ctl::line\nbreak", "ctl::nul\x00", "ctl::cr\r\n", "ctl::é ü\t "]
    fill([*odd, "ctl::line", "ctl::nul"])
    for key in odd:
        page = deleter.get(DETAIL, {"key": key}).content.decode()
        forms = re.findall(r'name="encoded_key" value="([^"]+)"', page)
        assert forms and len(set(forms)) == 1, key
        data = {"action": "key", "encoded_key": forms[0], "next": "/cache/view/?prefix=ctl"}
        response = deleter.post(DELETE, data)
        assert response.status_code == 302, key
    assert remaining([*odd, "ctl::line", "ctl::nul"]) == {"ctl::line", "ctl::nul"}
    damaged = deleter.post(DELETE, {"action": "key", "encoded_key": "not base64!"})
    assert damaged.status_code == 200 and "damaged" in damaged.content.decode()


@pytest.mark.backends("locmem")
def test_every_delete_is_logged_with_the_user(
    backend: BackendConfig, deleter: Client, caplog: pytest.LogCaptureFixture
) -> None:
    fill(TREE)
    caplog.set_level(logging.INFO, logger="keyedcache")
    post_delete(deleter, {"action": "key", "key": "product::4"})
    post_delete(deleter, {"action": "key", "key": "product::3", "children": "on"})
    post_delete(deleter, {"action": "pattern", "pattern": "category::*"})
    post_delete(deleter, {"action": "all", "confirm": "DELETE"})
    lines = [r.getMessage() for r in caplog.records if r.name == "keyedcache"]
    assert lines == [
        "keyedcache: deleter deleted “product::4” (1 key) from cache alias 'default'",
        "keyedcache: deleter deleted “product::3” and every key below it (3 keys) "
        "from cache alias 'default'",
        "keyedcache: deleter deleted the keys matching “category::*” (1 key) "
        "from cache alias 'default'",
        "keyedcache: deleter deleted every keyedcache entry (3 keys) from cache alias 'default'",
    ]


# -- GET never changes anything ------------------------------------------------------------------


@pytest.mark.backends("locmem", "memcached")
def test_the_dashboard_does_not_count_as_cache_traffic(
    backend: BackendConfig, deleter: Client
) -> None:
    from keyedcache.counters import counters

    fill(TREE)
    before = counters.snapshot()
    for url in all_pages():
        assert deleter.get(url).status_code == 200, url
    assert counters.snapshot() == before


def test_get_never_changes_anything(backend: BackendConfig, deleter: Client) -> None:
    fill(TREE)
    before = state()
    assert len(before) == len(TREE)
    urls = [
        *all_pages(),
        f"{DELETE}?action=all&confirm=DELETE",
        f"{DELETE}?action=key&key=product::3&children=on",
        f"{DELETE}?action=pattern&pattern=*",
        f"{VIEW}?all=1",
    ]
    for url in urls:
        assert deleter.get(url).status_code == 200, url
    assert state() == before


@pytest.mark.backends("locmem")
def test_delete_all_is_never_the_default(backend: BackendConfig, deleter: Client) -> None:
    page = deleter.get(f"{DELETE}?confirm=DELETE&action=all&key=product::3&children=on")
    text = page.content.decode()
    # The query string pre-fills the key form only; nothing pre-fills the confirmation.
    assert 'value="product::3"' in text
    confirm = re.search(r'<input type="text" name="confirm"[^>]*>', text)
    assert confirm is not None and "value=" not in confirm.group(0)
    blank = deleter.get(DELETE).content.decode()
    assert re.search(r'<input type="checkbox" name="children"[^>]*checked', blank) is None


# -- CSRF ------------------------------------------------------------------------------------------


@pytest.mark.backends("locmem")
def test_deletes_need_the_csrf_token(backend: BackendConfig) -> None:
    fill(TREE)
    client = client_for(make_user("careful", can_delete=True), enforce_csrf_checks=True)
    for data in (
        {"action": "key", "key": "product::3", "children": "on"},
        {"action": "pattern", "pattern": "product::*"},
        {"action": "all", "confirm": "DELETE"},
    ):
        assert client.post(DELETE, data).status_code == 403
    assert remaining(TREE) == set(TREE)
    # With the token of the page's form, the same POST works.
    page = client.get(DELETE).content.decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None
    response = client.post(
        DELETE, {"action": "key", "key": "product::4", "csrfmiddlewaretoken": match.group(1)}
    )
    assert response.status_code == 302
    assert remaining(TREE) == set(TREE) - {"product::4"}


@pytest.mark.backends("locmem")
@override_settings(
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
)
def test_deletes_need_the_csrf_token_without_the_middleware(backend: BackendConfig) -> None:
    fill(TREE)
    client = client_for(make_user("careful", can_delete=True), enforce_csrf_checks=True)
    assert client.post(DELETE, {"action": "all", "confirm": "DELETE"}).status_code == 403
    assert remaining(TREE) == set(TREE)


# -- escaping -------------------------------------------------------------------------------------


@pytest.mark.backends("locmem")
def test_a_script_key_is_text_on_every_page(backend: BackendConfig, deleter: Client) -> None:
    fill([XSS, f"{XSS}::child", f"shop::{XSS}"], value=lambda key: key)
    for _ in range(3):
        keyedcache.cache_get(XSS)
    pages = [
        STATS,
        VIEW,
        f"{VIEW}?prefix=shop",
        f"{VIEW}?prefix={XSS}",
        f"{VIEW}?q=*script*",
        f"{VIEW}?q={XSS}",
        f"{DETAIL}?key={XSS}",
        f"{DETAIL}?key=shop::{XSS}",
        f"{DETAIL}?key={XSS}-missing",
        f"{DELETE}?key={XSS}",
        f"{DELETE}?pattern={XSS}",
    ]
    for url in pages:
        response = deleter.get(url)
        assert response.status_code in (200, 404), url
        text = response.content.decode()
        assert XSS not in text, url
        assert "<script>alert" not in text, url
        assert XSS_ESCAPED in text, url
    # The message after deleting it, and a form error echoing it.
    page = post_delete(deleter, {"action": "key", "key": XSS, "children": "on"})
    assert XSS not in page.content.decode() and XSS_ESCAPED in page.content.decode()
    invalid = deleter.post(DELETE, {"action": "all", "confirm": XSS})
    assert XSS not in invalid.content.decode()
