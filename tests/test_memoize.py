"""cache_function and cache_delete_function: keys, options and invalidation, on every backend."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from django.test import override_settings

import keyedcache
from keyedcache import (
    KeyedCache,
    cache_delete_function,
    cache_enable,
    cache_function,
    default_cache,
    is_cached,
)
from tests.models import ManualWidget, Widget
from tests.procs import BoundWorker

# Every process counts the body executions of the functions below by name.
RUNS: Counter[str] = Counter()

# locmem is per process: a child process cannot share its entries.
shared_backends = pytest.mark.backends(exclude=("locmem",))


@pytest.fixture(autouse=True)
def _fresh(backend):
    """Every test runs on every backend (each with its own KEY_PREFIX) and counts from zero."""
    RUNS.clear()


# -- functions and classes at module level, so child processes can import them --


@cache_function
def whose(x):
    """Return `x` with the pid and run number of the process that computed it."""
    RUNS["whose"] += 1
    return (x, os.getpid(), RUNS["whose"])


@cache_function
def price_of(self):
    """Attached to Widget/ManualWidget as a method: `self` is a model instance."""
    RUNS["price_of"] += 1
    return (type(self).__name__, self.pk, self.name)


class Apple:
    def __cache_key__(self):
        return 1

    @cache_function
    def price(self):
        RUNS["Apple.price"] += 1
        return "apple"


class Pear:
    def __cache_key__(self):
        return 1

    @cache_function
    def price(self):
        RUNS["Pear.price"] += 1
        return "pear"


class Plain:
    """No __cache_key__ and no pk: cache_function cannot key it."""

    @cache_function
    def price(self):
        RUNS["Plain.price"] += 1
        return "plain"


# -- the three decorator forms --------------------------------------------------


def test_bare_decorator_memoizes():
    @cache_function
    def f(x):
        RUNS["f"] += 1
        return x * 2

    assert f(3) == 6
    assert f(3) == 6
    assert RUNS["f"] == 1
    assert f(4) == 8
    assert RUNS["f"] == 2


def test_decorator_with_length_memoizes():
    @cache_function(60)
    def f(x):
        RUNS["f"] += 1
        return x * 2

    assert [f(3), f(3), f(3)] == [6, 6, 6]
    assert RUNS["f"] == 1


def test_1_5_call_form_memoizes():
    def f(x):
        RUNS["f"] += 1
        return x * 2

    cached = cache_function(60)(f)
    assert [cached(3), cached(3)] == [6, 6]
    assert RUNS["f"] == 1


@pytest.mark.parametrize("result", [None, False, 0, "", []], ids=repr)
def test_falsy_results_are_cached(result):
    @cache_function
    def f():
        RUNS["f"] += 1
        return result

    assert f() == result
    assert f() == result
    assert RUNS["f"] == 1


# -- what the key is made of ------------------------------------------------------


def test_keyword_order_does_not_matter():
    @cache_function
    def f(a, b):
        RUNS["f"] += 1
        return a - b

    assert f(a=5, b=2) == 3
    assert f(b=2, a=5) == 3
    assert RUNS["f"] == 1


def test_keyword_order_does_not_matter_for_var_keyword():
    @cache_function
    def f(**options):
        RUNS["f"] += 1
        return sorted(options.items())

    assert f(x=1, y=2) == f(y=2, x=1) == [("x", 1), ("y", 2)]
    assert RUNS["f"] == 1


def test_positional_keyword_and_default_spellings_share_one_entry():
    @cache_function
    def f(a, b=2):
        RUNS["f"] += 1
        return a + b

    assert {f(1, 2), f(1, b=2), f(a=1, b=2), f(1), f(b=2, a=1)} == {3}
    assert RUNS["f"] == 1
    assert len({f.key(1, 2), f.key(1, b=2), f.key(a=1, b=2), f.key(1)}) == 1
    assert f(1, 3) == 4  # a different value of the default is another entry
    assert RUNS["f"] == 2


def test_int_and_str_arguments_do_not_share_an_entry():
    @cache_function
    def f(x):
        RUNS["f"] += 1
        return type(x).__name__

    assert f(1) == "int"
    assert f("1") == "str"
    assert f(1) == "int"
    assert RUNS["f"] == 2
    assert f.key(1) != f.key("1")


def test_same_named_methods_of_different_classes_do_not_share_entries():
    # Both instances have the same __cache_key__: only the method tells them apart.
    assert Apple().price() == "apple"
    assert Pear().price() == "pear"
    assert Apple().price() == "apple"
    assert Pear().price() == "pear"
    assert RUNS == {"Apple.price": 1, "Pear.price": 1}
    assert Apple.price.key(Apple()) != Pear.price.key(Pear())


def test_object_with_cache_key_is_keyed_by_it():
    class Thing:
        def __init__(self, ident):
            self.ident = ident

        def __cache_key__(self):
            return self.ident

    @cache_function
    def f(thing):
        RUNS["f"] += 1
        return thing.ident

    assert f(Thing(1)) == 1
    assert f(Thing(1)) == 1  # another object, same key
    assert f(Thing(2)) == 2
    assert RUNS["f"] == 2


@pytest.mark.django_db
def test_model_instance_self_is_keyed_by_class_and_pk(monkeypatch):
    monkeypatch.setattr(Widget, "price", price_of, raising=False)
    monkeypatch.setattr(ManualWidget, "price", price_of, raising=False)
    one = Widget.objects.create(name="one", slug="one", key="k-one")
    two = Widget.objects.create(name="two", slug="two", key="k-two")
    manual = ManualWidget.objects.create(pk=one.pk, name="manual", slug="m", key="k-m")

    assert one.price() == ("Widget", one.pk, "one")
    # Another Python object for the same row is the same key ...
    again = Widget.objects.get(pk=one.pk)
    assert again.price() == ("Widget", one.pk, "one")
    # ... even with other field values: the key is class + pk, not the contents.
    again.name = "renamed"
    assert again.price() == ("Widget", one.pk, "one")
    assert RUNS["price_of"] == 1
    assert price_of.key(again) == price_of.key(one)

    assert two.price() == ("Widget", two.pk, "two")  # another pk
    assert manual.price() == ("ManualWidget", one.pk, "manual")  # same pk, other class
    assert RUNS["price_of"] == 3
    assert price_of.key(manual) != price_of.key(one)


def test_plain_object_self_raises_type_error_naming_the_argument():
    with pytest.raises(TypeError, match="'self'"):
        Plain().price()
    assert RUNS["Plain.price"] == 0


def test_unkeyable_keyword_argument_is_named():
    @cache_function
    def f(x, widget=None):
        RUNS["f"] += 1

    with pytest.raises(TypeError, match="'widget'"):
        f(1, widget=object())
    assert RUNS["f"] == 0


# -- the wrapper's helpers ----------------------------------------------------------


def test_key_is_the_logical_key_of_the_call():
    @cache_function
    def f(x):
        return x

    key = f.key(1)
    assert isinstance(key, str)
    assert key.startswith(f"func::{__name__}.{f.__qualname__}::")
    assert not is_cached(key)
    f(1)
    assert is_cached(key)
    assert keyedcache.cache_get(key) == 1
    assert not is_cached(f.key(2))


def test_invalidate_forgets_only_that_call():
    @cache_function
    def f(x):
        RUNS[x] += 1
        return x

    f(1)
    f(2)
    f.invalidate(1)
    assert not is_cached(f.key(1))
    assert is_cached(f.key(2))
    f(1)
    f(2)
    assert RUNS == {1: 2, 2: 1}


def test_invalidate_accepts_the_same_spellings_as_the_call():
    @cache_function
    def f(a, b=2):
        RUNS["f"] += 1
        return a + b

    f(1)
    f.invalidate(a=1, b=2)
    f(1)
    assert RUNS["f"] == 2


def test_refresh_recomputes_and_stores():
    @cache_function
    def f(x):
        RUNS["f"] += 1
        return (x, RUNS["f"])

    assert f(1) == (1, 1)
    assert f.refresh(1) == (1, 2)  # runs the body although (1,) is cached
    assert f(1) == (1, 2)  # and stored what it computed
    assert RUNS["f"] == 2


def test_wrapped_is_the_undecorated_function():
    def body(x):
        RUNS["f"] += 1
        return x

    f = cache_function(body)
    assert f.__wrapped__ is body
    assert f.__name__ == "body"
    f.__wrapped__(1)
    f.__wrapped__(1)
    assert RUNS["f"] == 2
    assert not is_cached(f.key(1))


# -- options ------------------------------------------------------------------------------


def test_key_option_decides_which_calls_share_an_entry():
    @cache_function(key=lambda user_id, request_id=None: [user_id])
    def f(user_id, request_id=None):
        RUNS["f"] += 1
        return (user_id, request_id)

    assert f(1, request_id="a") == (1, "a")
    assert f(1, request_id="b") == (1, "a")  # request_id is not part of the key
    assert f.key(1, "a") == f.key(1, "b")
    assert f(2) == (2, None)
    assert RUNS["f"] == 2


def test_key_option_keeps_functions_apart():
    def same(x):
        return x

    @cache_function(key=same)
    def f(x):
        return "f"

    @cache_function(key=same)
    def g(x):
        return "g"

    assert (f(1), g(1)) == ("f", "g")
    assert f.key(1) != g.key(1)


def test_unless_option_skips_caching_rejected_results():
    @cache_function(unless=lambda value: value is None)
    def f(x):
        RUNS[x] += 1
        return None if x == "none" else x

    f("none")
    f("none")
    f("value")
    f("value")
    assert RUNS == {"none": 2, "value": 1}
    assert not is_cached(f.key("none"))


def test_alias_option_caches_in_that_alias(backend):
    other = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "memo-other"}
    with override_settings(CACHES={**backend.caches, "other": other}):
        KeyedCache("other").delete_all()

        @cache_function(alias="other")
        def f(x):
            RUNS["f"] += 1
            return x

        assert [f(1), f(1)] == [1, 1]
        assert RUNS["f"] == 1
        assert KeyedCache("other").is_cached(f.key(1))
        assert not default_cache().is_cached(f.key(1))
        # Deleting everything in the default alias leaves the other alias alone.
        keyedcache.cache_delete()
        f(1)
        assert RUNS["f"] == 1
        cache_delete_function(f)
        assert not KeyedCache("other").is_cached(f.key(1))
        f(1)
        assert RUNS["f"] == 2


def test_alias_option_uses_the_configured_namespace(backend):
    other = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "memo-ns"}
    with override_settings(
        CACHES={**backend.caches, "other": other}, KEYEDCACHE_NAMESPACE="memo-ns"
    ):
        KeyedCache("other", namespace="memo-ns").delete_all()

        @cache_function(alias="other")
        def f(x):
            return x

        f(1)
        assert KeyedCache("other", namespace="memo-ns").is_cached(f.key(1))
        assert not KeyedCache("other").is_cached(f.key(1))


def test_alias_option_follows_settings_changes(backend):
    # The alias is resolved against the settings in force, not those at decoration.
    @cache_function(alias="other")
    def f(x):
        RUNS["f"] += 1
        return x

    for location in ("memo-first", "memo-second"):
        other = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": location}
        with override_settings(CACHES={**backend.caches, "other": other}):
            KeyedCache("other").delete_all()
            f(1)
            assert KeyedCache("other").is_cached(f.key(1))
    assert RUNS["f"] == 2


# -- switching off, failures ----------------------------------------------------------


def test_cache_enable_false_runs_the_body_every_time():
    @cache_function
    def f(x):
        RUNS["f"] += 1
        return x

    cache_enable(False)
    assert [f(1), f(1), f(1)] == [1, 1, 1]
    assert RUNS["f"] == 3
    cache_enable(True)
    assert not is_cached(f.key(1))  # nothing was stored while disabled
    f(1)
    f(1)
    assert RUNS["f"] == 4


def test_exceptions_are_not_cached():
    class Boom(Exception):
        pass

    @cache_function
    def f(x):
        RUNS["f"] += 1
        if RUNS["f"] == 1:
            raise Boom
        return x

    with pytest.raises(Boom):
        f(1)
    assert not is_cached(f.key(1))
    assert f(1) == 1
    assert f(1) == 1
    assert RUNS["f"] == 2


def test_method_not_finished_error_is_importable():
    from keyedcache import MethodNotFinishedError

    assert issubclass(MethodNotFinishedError, Exception)
    assert "MethodNotFinishedError" in keyedcache.__all__


# -- cache_delete_function ----------------------------------------------------------------


def test_cache_delete_function_forgets_every_call():
    @cache_function
    def f(x, y=0):
        RUNS["f"] += 1
        return x + y

    @cache_function
    def g(x):
        RUNS["g"] += 1
        return x

    for x in range(3):
        f(x)
        f(x, y=1)
    g(1)
    assert RUNS["f"] == 6
    cache_delete_function(f)
    assert not any(is_cached(f.key(x)) or is_cached(f.key(x, y=1)) for x in range(3))
    assert is_cached(g.key(1))  # other functions keep their entries
    for x in range(3):
        f(x)
    assert RUNS["f"] == 9


def test_cache_delete_function_takes_the_undecorated_function_too():
    def body(x):
        RUNS["f"] += 1
        return x

    f = cache_function(body)
    f(1)
    cache_delete_function(body)
    f(1)
    assert RUNS["f"] == 2


def test_cache_delete_function_on_a_method():
    Apple().price()
    cache_delete_function(Apple.price)
    Apple().price()
    assert RUNS["Apple.price"] == 2


# -- across processes ------------------------------------------------------------------------

WHOSE_IN_CHILD = """
from tests.test_memoize import whose
result = [whose(x) for x in xs]
"""
FORGET_IN_CHILD = """
from tests.test_memoize import whose
cache_delete_function(whose)
"""


@shared_backends
@pytest.mark.django_db(transaction=True)  # the child runs from another connection
def test_parent_reads_what_a_child_cached(child: BoundWorker):
    computed = child.run(WHOSE_IN_CHILD, xs=[1])
    assert computed == [(1, child.pid, computed[0][2])]
    assert whose(1) == computed[0]
    assert RUNS["whose"] == 0


@shared_backends
@pytest.mark.django_db(transaction=True)
def test_cache_delete_function_forgets_calls_cached_by_a_child(child: BoundWorker):
    in_child = child.run(WHOSE_IN_CHILD, xs=[1, 2])
    assert [pid for _, pid, _ in in_child] == [child.pid, child.pid]
    cache_delete_function(whose)
    assert whose(1)[:2] == (1, os.getpid())
    assert whose(2)[:2] == (2, os.getpid())
    assert RUNS["whose"] == 2
    # ... and the child sees them gone too: it now reads the parent's results.
    assert child.run(WHOSE_IN_CHILD, xs=[1, 2]) == [whose(1), whose(2)]


@shared_backends
@pytest.mark.django_db(transaction=True)
def test_cache_delete_function_in_a_child_is_seen_by_the_parent(child: BoundWorker):
    first = whose(1)
    whose(2)
    assert child.run(WHOSE_IN_CHILD, xs=[1]) == [first]  # shared before the delete
    child.run(FORGET_IN_CHILD)
    assert not is_cached(whose.key(1))
    assert not is_cached(whose.key(2))
    assert whose(1) == (1, os.getpid(), 3)  # computed again here
    assert RUNS["whose"] == 3
