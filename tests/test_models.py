"""CachedObjectMixin and find_by_*: instance keys, cached lookups, refresh on save and delete."""

from __future__ import annotations

from contextlib import contextmanager

import django
import pytest
from django.core import serializers
from django.db import connection, transaction
from django.db.models.functions import Upper
from django.test.utils import CaptureQueriesContext

import keyedcache
from keyedcache import NotCachedError, default_cache, is_cached
from keyedcache.models import find_by_id, find_by_key, find_by_slug
from tests.models import ManualWidget, Widget
from tests.procs import BoundWorker

# Every test runs on every backend (each test with its own KEY_PREFIX), with real
# commits: the refresh on save/delete runs on commit, as it does in production.
pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.django_db(transaction=True)]
# locmem is per process: a child process cannot share its entries.
shared_backends = pytest.mark.backends(exclude=("locmem",))


@contextmanager
def widget_queries():
    """Collect the SQL run against the Widget table on the default database."""
    found: list[str] = []
    with CaptureQueriesContext(connection) as ctx:
        yield found
    found.extend(q["sql"] for q in ctx.captured_queries if Widget._meta.db_table in q["sql"])


@pytest.fixture
def assert_no_db_query(backend, django_assert_num_queries):
    """Context manager: the block runs no database query (the cache's own aside).

    On db-sqlite the cache table shares the default connection, so there the
    check is that no query reaches the Widget table.
    """

    @contextmanager
    def check():
        if backend.name == "db-sqlite":
            with widget_queries() as found:
                yield
            assert found == []
        else:
            with django_assert_num_queries(0):
                yield

    return check


def make(model=Widget, name="w", **fields):
    fields.setdefault("slug", f"{name}-slug")
    fields.setdefault("key", f"{name}-key")
    return model.objects.create(name=name, **fields)


class Boom(Exception):
    pass


# -- the mixin's own methods ------------------------------------------------------------------


class TestMixin:
    def test_cache_key_is_class_name_and_pk(self):
        w = make()
        assert w.cache_key() == f"Widget::{w.pk}"

    def test_cache_key_appends_extra_parts_and_pairs(self):
        w = make()
        assert w.cache_key("price", 3) == f"Widget::{w.pk}::price::3"
        assert w.cache_key("price", size="L", color="red") == (
            f"Widget::{w.pk}::price::color::red::size::L"
        )
        assert make(ManualWidget).cache_key() == f"ManualWidget::{ManualWidget.objects.get().pk}"

    def test_cache_set_get_defaults_to_the_instance(self):
        w = make(name="cached")
        w.cache_delete()  # drop the copy cached on create
        assert not w.is_cached()
        with pytest.raises(NotCachedError) as miss:
            w.cache_get()
        assert miss.value.key == w.cache_key()
        w.cache_set()
        assert w.is_cached()
        got = w.cache_get()
        assert isinstance(got, Widget)
        assert (got.pk, got.name) == (w.pk, "cached")
        # The same entry the module API and find_by_id read.
        assert keyedcache.cache_get("Widget", w.pk).name == "cached"

    def test_cache_set_value_under_extra_parts(self):
        w = make()
        w.cache_set("price", value=0)
        w.cache_set("price", size="L", value=None)
        assert w.cache_get("price") == 0
        assert w.cache_get("price", size="L") is None
        assert w.is_cached("price", size="L")
        assert not w.is_cached("price", size="M")
        assert keyedcache.cache_get(f"Widget::{w.pk}::price") == 0

    def test_cache_set_length(self):
        w = make()
        w.cache_set("forever", value=1, length=None)
        w.cache_set("minute", value=1, length=60)
        assert default_cache().get_entry(w.cache_key("forever")).stale_until is None
        assert default_cache().get_entry(w.cache_key("minute")).stale_until is not None

    def test_cache_delete_removes_the_key_and_its_children_only(self):
        w = make()
        w.cache_set()
        w.cache_set("child", value=1)
        w.cache_set("child", "grandchild", value=2)
        # Keys that merely start with the same text are not children.
        keyedcache.cache_set("Widget", f"{w.pk}0", value="sibling")
        keyedcache.cache_set(f"Widget::{w.pk}x", value="sibling")
        w.cache_delete()
        assert not w.is_cached()
        assert not w.is_cached("child")
        assert not w.is_cached("child", "grandchild")
        assert keyedcache.cache_get("Widget", f"{w.pk}0") == "sibling"
        assert keyedcache.cache_get(f"Widget::{w.pk}x") == "sibling"

    def test_cache_delete_with_parts_removes_that_subtree(self):
        w = make()
        w.cache_set()
        w.cache_set("a", value=1)
        w.cache_set("a", "b", value=2)
        w.cache_set("c", value=3)
        w.cache_delete("a")
        assert not w.is_cached("a")
        assert not w.is_cached("a", "b")
        assert w.is_cached()
        assert w.cache_get("c") == 3

    def test_cache_reset_drops_children_and_caches_the_instance_afresh(self):
        w = make(name="old")
        w.cache_set()
        w.cache_set("child", value=1)
        w.name = "new"
        w.cache_reset()
        assert w.cache_get().name == "new"
        assert not w.is_cached("child")


# -- find_by_* ------------------------------------------------------------------------------------

FINDERS = [
    pytest.param(find_by_id, lambda w: w.pk, id="find_by_id"),
    pytest.param(find_by_key, lambda w: w.key, id="find_by_key"),
    pytest.param(find_by_slug, lambda w: w.slug, id="find_by_slug"),
]
MISSING_VALUES = {find_by_id: 999_999, find_by_key: "no-such-key", find_by_slug: "no-such-slug"}


@pytest.mark.parametrize(("finder", "value_of"), FINDERS)
class TestFindBy:
    def test_second_lookup_comes_from_the_cache(self, finder, value_of, assert_no_db_query):
        w = make(name="found")
        keyedcache.cache_delete("Widget", value_of(w))  # the copy cached on create
        with widget_queries() as found:
            first = finder(Widget, "Widget", value_of(w))
        assert len(found) == 1
        with assert_no_db_query():
            second = finder(Widget, "Widget", value_of(w))
        assert (first.pk, first.name) == (second.pk, second.name) == (w.pk, "found")
        assert is_cached("Widget", value_of(w))

    def test_missing_object_is_none(self, finder, value_of):
        value = MISSING_VALUES[finder]
        assert finder(Widget, "Widget", value) is None
        assert not is_cached("Widget", value)  # a miss is not cached ...
        w = make(name="later", pk=999_999, slug="no-such-slug", key="no-such-key")
        found = finder(Widget, "Widget", value)  # ... so a row created later is found
        assert (found.pk, found.name) == (w.pk, "later")

    def test_missing_object_raises_does_not_exist_with_raises(self, finder, value_of):
        with pytest.raises(Widget.DoesNotExist):
            finder(Widget, "Widget", MISSING_VALUES[finder], raises=True)

    def test_found_object_with_raises(self, finder, value_of):
        w = make()
        assert finder(Widget, "Widget", value_of(w), raises=True).pk == w.pk


def test_find_by_id_reads_what_the_mixin_cached(assert_no_db_query):
    w = make(name="in-db")
    w.name = "only-in-cache"
    w.cache_set()
    with assert_no_db_query():
        assert find_by_id(Widget, "Widget", w.pk).name == "only-in-cache"


@pytest.mark.parametrize(("finder", "value_of"), FINDERS)
def test_saves_and_deletes_are_seen_whatever_the_group_key(finder, value_of, assert_no_db_query):
    w = make(name="old")
    value = value_of(w)
    assert finder(Widget, "gadgets", value).name == "old"
    w.name = "new"
    w.save()
    with assert_no_db_query():
        assert finder(Widget, "gadgets", value).name == "new"
    w.delete()
    assert finder(Widget, "gadgets", value) is None


def test_find_by_id_uses_the_instances_own_entry_whatever_the_group_key():
    w = make(name="w")
    keyedcache.cache_delete("Widget", w.pk)
    assert find_by_id(Widget, "gadgets", w.pk).pk == w.pk
    assert is_cached("Widget", w.pk) and not is_cached("gadgets", w.pk)


@pytest.mark.parametrize("finder", [find_by_key, find_by_slug])
def test_a_changed_key_or_slug_is_not_found_under_the_old_one(finder):
    field = "key" if finder is find_by_key else "slug"
    w = make(name="w", **{field: "first"})
    assert finder(Widget, "Widget", "first").pk == w.pk
    setattr(w, field, "second")
    w.save()
    assert finder(Widget, "Widget", "first") is None
    assert finder(Widget, "Widget", "second").pk == w.pk
    other = make(name="other", **{field: "first"})  # a new row takes the old value
    assert finder(Widget, "Widget", "first").pk == other.pk


def test_a_key_given_as_a_number_is_served_from_the_cache(assert_no_db_query):
    w = make(name="n", key="5")
    assert find_by_key(Widget, "Widget", 5).pk == w.pk
    with assert_no_db_query():
        assert find_by_key(Widget, "Widget", 5).pk == w.pk


def test_a_model_that_manages_its_cache_by_hand_keeps_the_1_5_group_keys():
    m = make(ManualWidget, name="m")
    assert find_by_id(ManualWidget, "gadgets", m.pk).pk == m.pk
    assert find_by_slug(ManualWidget, "gadgets", m.slug).pk == m.pk
    assert keyedcache.cache_get("gadgets", m.pk).pk == m.pk
    assert keyedcache.cache_get("gadgets", m.slug).pk == m.pk
    assert not is_cached("ManualWidget", m.pk)


def test_cache_group_key_names_the_entries(monkeypatch: pytest.MonkeyPatch, assert_no_db_query):
    monkeypatch.setattr(Widget, "cache_group_key", "tests.Widget")
    w = make(name="old")
    assert w.cache_key() == f"tests.Widget::{w.pk}"
    assert keyedcache.cache_get("tests.Widget", w.pk).name == "old"  # cached on create
    w.name = "new"
    w.save()
    with assert_no_db_query():
        assert find_by_id(Widget, "Widget", w.pk).name == "new"
    assert not is_cached("Widget", w.pk)


# -- refresh on save and delete -----------------------------------------------------------------


class TestSaveAndDelete:
    def test_save_refreshes_the_cached_copy_and_drops_children(self, assert_no_db_query):
        w = make(name="old")
        w.cache_set()
        w.cache_set("child", value=1)
        w.name = "new"
        w.save()
        assert w.cache_get().name == "new"
        assert not w.is_cached("child")
        with assert_no_db_query():
            assert find_by_id(Widget, "Widget", w.pk).name == "new"

    def test_create_caches_the_new_instance(self):
        w = make(name="created")
        assert keyedcache.cache_get("Widget", w.pk).name == "created"

    def test_changes_after_save_are_not_cached(self):
        w = make(name="old")
        with transaction.atomic():
            w.name = "saved"
            w.save()
            w.name = "not saved"  # before the commit runs the refresh
        assert w.cache_get().name == "saved"

    def test_expression_save_drops_the_copy_instead_of_caching_the_expression(self):
        w = make(name="loud")
        w.cache_set()
        w.cache_set("child", value=1)
        w.name = Upper("name")
        w.save()
        # Django 6.0 reads fields saved as expressions back from databases that can
        # return updated rows (SQLite, PostgreSQL): the instance then holds the value
        # written, and is cached as saved. Before 6.0 it keeps the expression, and
        # elsewhere 6.0 defers the field: the copy is dropped instead. Either way no
        # expression is ever cached and the next read gets what the database has.
        read_back = django.VERSION >= (6, 0) and connection.features.can_return_rows_from_update
        assert isinstance(w.__dict__.get("name"), str) == read_back
        assert not w.is_cached("child")
        if read_back:
            assert w.cache_get().name == "LOUD"
        else:
            assert not w.is_cached()
        assert find_by_id(Widget, "Widget", w.pk).name == "LOUD"
        assert w.cache_get().name == "LOUD"

    def test_fixture_load_drops_the_stale_copy(self):
        w = make(name="old")
        w.cache_set()
        data = serializers.serialize("json", [w]).replace('"old"', '"loaded"')
        for obj in serializers.deserialize("json", data):
            obj.save()  # a raw save, as loaddata does
        assert not w.is_cached()
        assert find_by_id(Widget, "Widget", w.pk).name == "loaded"

    def test_delete_removes_the_copy_and_children(self):
        w = make()
        pk = w.pk
        w.cache_set()
        w.cache_set("child", value=1)
        w.delete()
        assert not is_cached("Widget", pk)
        assert not is_cached("Widget", pk, "child")
        assert find_by_id(Widget, "Widget", pk) is None

    def test_manual_widget_is_untouched_by_save_and_delete(self):
        m = make(ManualWidget, name="old")
        pk = m.pk
        m.cache_set()
        m.cache_set("child", value=1)
        m.name = "new"
        m.save()
        assert m.cache_get().name == "old"
        assert m.cache_get("child") == 1
        m.delete()
        assert keyedcache.cache_get("ManualWidget", pk).name == "old"
        assert is_cached("ManualWidget", pk, "child")

    def test_manual_widget_is_not_cached_on_create(self):
        m = make(ManualWidget)
        assert not m.is_cached()


class TestTransactions:
    def test_nothing_changes_until_commit(self):
        w = make(name="old")
        w.cache_set()
        w.cache_set("child", value=1)
        with transaction.atomic():
            w.name = "new"
            w.save()
            assert w.cache_get().name == "old"
            assert w.is_cached("child")
        assert w.cache_get().name == "new"
        assert not w.is_cached("child")

    def test_rollback_leaves_the_old_cached_copy(self):
        w = make(name="old")
        w.cache_set()
        w.cache_set("child", value=1)
        with pytest.raises(Boom), transaction.atomic():
            w.name = "new"
            w.save()
            raise Boom
        assert w.cache_get().name == "old"
        assert w.cache_get("child") == 1
        assert Widget.objects.get(pk=w.pk).name == "old"

    def test_delete_waits_for_commit_and_rollback_keeps_the_copy(self):
        w = make(name="kept")
        pk = w.pk
        w.cache_set()
        with pytest.raises(Boom), transaction.atomic():
            Widget.objects.get(pk=pk).delete()
            assert is_cached("Widget", pk)
            raise Boom
        assert keyedcache.cache_get("Widget", pk).name == "kept"
        with transaction.atomic():
            Widget.objects.get(pk=pk).delete()
            assert is_cached("Widget", pk)
        assert not is_cached("Widget", pk)

    def test_save_outside_a_transaction_refreshes_at_once(self):
        w = make(name="old")
        w.cache_set()
        w.name = "new"
        w.save()
        assert w.cache_get().name == "new"


# -- across processes ------------------------------------------------------------------------

SAVE_IN_CHILD = """
from tests.models import Widget
widget = Widget.objects.get(pk=pk)
widget.name = name
widget.save()
"""
DELETE_IN_CHILD = """
from tests.models import Widget
Widget.objects.get(pk=pk).delete()
"""


@shared_backends
class TestAcrossProcesses:
    def test_save_in_a_child_refreshes_the_parents_copy(self, child: BoundWorker):
        w = make(name="old")
        w.cache_set()
        w.cache_set("child", value=1)
        child.run(SAVE_IN_CHILD, pk=w.pk, name="from child")
        assert w.cache_get().name == "from child"
        assert not w.is_cached("child")

    def test_delete_in_a_child_removes_the_parents_copy(self, child: BoundWorker):
        w = make()
        w.cache_set()
        w.cache_set("child", value=1)
        child.run(DELETE_IN_CHILD, pk=w.pk)
        assert not w.is_cached()
        assert not w.is_cached("child")
        assert find_by_id(Widget, "Widget", w.pk) is None

    def test_save_in_the_parent_is_seen_by_a_child(self, child: BoundWorker):
        w = make(name="old")
        child.run("find_by_id(Widget, 'Widget', pk)", pk=w.pk, Widget=Widget, find_by_id=find_by_id)
        w.name = "new"
        w.save()
        found = child.run(
            "find_by_id(Widget, 'Widget', pk).name", pk=w.pk, Widget=Widget, find_by_id=find_by_id
        )
        assert found == "new"
