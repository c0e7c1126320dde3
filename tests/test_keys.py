"""keyedcache.keys: compat cache_key, key part rules, stable digests, safe storage keys."""

from __future__ import annotations

import datetime
import decimal
import json
import os
import re
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.cache.backends.base import memcache_key_warnings
from django.test import override_settings
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import keyedcache
from keyedcache import keys
from keyedcache.keys import (
    KEY_DELIM,
    cache_key,
    canonical_bytes,
    glob_escape,
    is_collapsed,
    key_part,
    safe_path,
    safe_segment,
    storage_key,
)

REPO = Path(__file__).resolve().parents[1]
NS = "keyedcache"
# The budget a site with KEY_PREFIX 'ks' (Django's key 'ks:1:<key>') leaves.
BUDGET = 250 - len("ks:1:")
HEX20 = r"[0-9a-f]{20}"


# --- 1. compat cache_key --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "pairs", "expected"),
    [
        (("test",), {}, "test"),
        (("test", 2), {}, "test::2"),
        (("test",), {"more": "yes"}, "test::more::yes"),
        (("test", 3), {"more": "yes"}, "test::3::more::yes"),
        ((), {"b": 2, "a": 1}, "a::1::b::2"),
        (("x",), {"zeta": 1, "alpha": 2, "mid": 3}, "x::alpha::2::mid::3::zeta::1"),
        ((["test", 3],), {}, "test::3"),
        ((("test", 3),), {}, "test::3"),
        ((["test"],), {"more": "yes"}, "test::more::yes"),
    ],
)
def test_cache_key_compat_examples(args, pairs, expected):
    assert cache_key(*args, **pairs) == expected


def test_key_delim_and_public_names():
    assert KEY_DELIM == "::"
    assert keyedcache.KEY_DELIM == "::"
    assert keyedcache.cache_key is cache_key


def test_pairs_are_sorted_by_name_not_by_call_order():
    assert cache_key("t", b=1, a=2) == cache_key("t", a=2, b=1) == "t::a::2::b::1"


def test_only_a_single_list_or_tuple_argument_is_the_parts():
    assert cache_key(["a", "b"]) == cache_key("a", "b") == "a::b"
    # Next to other parts a list is one part (a digest), not spliced in.
    assert re.fullmatch(rf"list~{HEX20}::b", cache_key(["a"], "b"))
    assert re.fullmatch(rf"a::tuple~{HEX20}", cache_key("a", ("b", "c")))
    # A list of one tuple: the tuple is the one part.
    assert re.fullmatch(rf"tuple~{HEX20}", cache_key([("a", "b")]))


def test_by_design_equalities():
    assert cache_key("a", "b") == cache_key("a::b")
    assert cache_key(1) == cache_key("1")
    assert cache_key("x", 2, n=3) == cache_key("x", "2", n="3")


# --- 2. key part rules -------------------------------------------------------------


class Model:
    """Looks like a Django model instance: it has a pk."""

    def __init__(self, pk):
        self.pk = pk


class OtherModel(Model):
    pass


class WithCacheKey:
    def __init__(self, key, pk=None):
        self.key = key
        self.pk = pk

    def __cache_key__(self):
        return self.key


class Unkeyable:
    pass


class RaisingPk:
    @property
    def pk(self):
        raise RuntimeError("deferred field")


class ModelClass:
    """A model class: `pk` is a descriptor on the class, not a value."""

    @property
    def pk(self):
        return 1


class ClassWithPkAttribute:
    pk = 5


@pytest.mark.parametrize(
    ("part", "text"),
    [
        ("plain", "plain"),
        ("with space ~ and é", "with space ~ and é"),
        (7, "7"),
        (-12, "-12"),
        (10**30, str(10**30)),
        (1.5, "1.5"),
        (decimal.Decimal("1.10"), "1.10"),
        (True, "True"),
        (False, "False"),
        (None, "None"),
    ],
)
def test_strings_and_numbers_are_used_as_text(part, text):
    assert key_part(part) == text
    assert cache_key("k", part) == f"k::{text}"


def test_str_and_int_subclasses_are_text():
    class Name(str):
        pass

    class Count(int):
        pass

    assert key_part(Name("abc")) == "abc"
    assert key_part(Count(4)) == "4"


def test_object_with_pk_is_keyed_by_its_pk():
    assert key_part(Model(42)) == "42"
    assert key_part(Model("slug")) == "slug"
    assert cache_key("product", Model(42)) == "product::42"
    u = uuid.UUID(int=7)
    assert key_part(Model(u)) == key_part(u)


def test_object_whose_pk_is_none_is_not_a_model_instance():
    with pytest.raises(TypeError, match="Model"):
        key_part(Model(None))


def test_cache_key_method_wins_over_pk():
    assert key_part(WithCacheKey("custom", pk=1)) == "custom"
    assert key_part(WithCacheKey(9)) == "9"
    assert key_part(WithCacheKey(("a", 1))) == key_part(("a", 1))
    assert key_part(WithCacheKey(Model(3))) == "3"


@pytest.mark.parametrize(
    ("part", "kind"),
    [
        (("a", 1), "tuple"),
        (["a", 1], "list"),
        ({"a": 1}, "dict"),
        ({"a", "b"}, "set"),
        (frozenset({"a"}), "frozenset"),
        (b"\x00bytes", "bytes"),
        (bytearray(b"xy"), "bytearray"),
        (datetime.date(2024, 2, 29), "date"),
        (datetime.datetime(2024, 2, 29, 12, 0, tzinfo=datetime.timezone.utc), "date"),
        (datetime.time(12, 30), "time"),
        (datetime.timedelta(days=1, seconds=5), "timedelta"),
        (uuid.UUID(int=1), "UUID"),
    ],
)
def test_containers_bytes_dates_and_uuids_are_digested(part, kind):
    text = key_part(part)
    assert re.fullmatch(rf"{kind}~{HEX20}", text), text
    assert text.isascii() and ":" not in text


def test_digest_distinguishes_lookalike_values():
    same_day = [
        datetime.date(2024, 1, 1),
        datetime.datetime(2024, 1, 1),
        datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        "2024-01-01",
    ]
    assert len({key_part(v) for v in same_day}) == len(same_day)
    assert key_part(b"a") != key_part("a")
    assert key_part(datetime.time(0, 0, 1)) != key_part(datetime.timedelta(seconds=1))
    assert key_part(uuid.UUID(int=1)) != key_part(str(uuid.UUID(int=1)))


def test_dict_and_set_order_do_not_matter():
    assert key_part({"a": 1, "b": [2, 3]}) == key_part({"b": [2, 3], "a": 1})
    # 1 and 9 share a slot in a fresh set's table, so insertion order shows.
    one_first, nine_first = {1, 9}, {9, 1}
    assert list(one_first) != list(nine_first)
    assert key_part(one_first) == key_part(nine_first)
    assert key_part(frozenset(["x", "y", "z"])) == key_part(frozenset(["z", "y", "x"]))


def test_tuple_list_and_set_of_the_same_items_differ():
    items = ["a", "b"]
    variants = [tuple(items), list(items), set(items), frozenset(items)]
    assert len({key_part(v) for v in variants}) == len(variants)
    # Inside a container too.
    assert len({key_part((v,)) for v in variants[:3]}) == 3


def test_container_encoding_is_unambiguous():
    distinct = [
        ("ab", "c"),
        ("a", "bc"),
        ("a", "b", "c"),
        ("as", "b"),
        ("a", "sb"),
        (1, (2, 3)),
        ((1, 2), 3),
        (1, "1"),
        ("1", 1),
        (1,),
        (True,),
        (1.0,),
        (decimal.Decimal(1),),
        (None,),
        ("None",),
        ((),),
        ([],),
        ({},),
        ("",),
        (),
        ({"a": "b"},),
        ({"b": "a"},),
        ({"a": 1, "b": 2},),
        ({"a": 2, "b": 1},),
        ({"a": ("b",)},),
        ({("a", "b"): 1},),
    ]
    assert len({key_part(v) for v in distinct}) == len(distinct)


def test_nested_containers_are_keyed_by_value():
    value = {"a": [1, (2, 3), {"x": {4, 5}}], "b": {"c": frozenset({b"z"})}}
    rebuilt = {"b": {"c": frozenset({b"z"})}, "a": [1, (2, 3), {"x": {5, 4}}]}
    assert key_part(value) == key_part(rebuilt)
    changed = {"b": {"c": frozenset({b"z"})}, "a": [1, (2, 3), {"x": {5, 6}}]}
    assert key_part(value) != key_part(changed)


def test_model_inside_a_container_is_keyed_by_class_and_pk():
    assert key_part((Model(1),)) == key_part((Model(1),))
    assert key_part((Model(1),)) != key_part((Model(2),))
    assert key_part((Model(1),)) != key_part((OtherModel(1),))
    assert key_part((Model(1),)) != key_part((1,))
    assert key_part({"m": Model(1)}) != key_part({"m": 1})
    # __cache_key__ inside a container: by what it returns.
    assert key_part((WithCacheKey("k", pk=1),)) == key_part(("k",))


def test_unkeyable_object_raises_a_type_error_that_says_how_to_fix_it():
    with pytest.raises(TypeError) as top:
        cache_key("x", Unkeyable())
    message = str(top.value)
    assert "Unkeyable" in message
    assert "pk" in message
    assert "__cache_key__" in message

    with pytest.raises(TypeError) as inner:
        cache_key("x", ("a", [Unkeyable()]))
    message = str(inner.value)
    assert "Unkeyable" in message
    assert "pk" in message
    assert "__cache_key__" in message

    with pytest.raises(TypeError, match="object"):
        key_part(object())
    with pytest.raises(TypeError, match="RaisingPk"):
        key_part(RaisingPk())
    with pytest.raises(TypeError, match="Unkeyable"):
        key_part({Unkeyable(): 1})
    with pytest.raises(TypeError, match="Unkeyable"):
        key_part({1: Unkeyable()})


@pytest.mark.parametrize("cls", [ModelClass, ClassWithPkAttribute, Model])
def test_a_class_is_not_a_model_instance(cls):
    with pytest.raises(TypeError, match="type"):
        key_part(cls)
    # Inside a container (a classmethod's `cls` among memoized arguments) a
    # class is encoded by its import path, never by a `pk` attribute.
    encoded = canonical_bytes((cls,))
    assert f"{cls.__module__}.{cls.__qualname__}".encode() in encoded
    assert b"o" + str(len(f"{cls.__module__}.{cls.__qualname__}")).encode() not in encoded
    assert key_part((cls,)) == key_part((cls,))


# --- 3. stability across processes ----------------------------------------------

# Executed in this process and in child processes with other hash seeds.
TRICKY_VALUES_SOURCE = """
import datetime, decimal, uuid
VALUES = [
    {"b": 1, "a": 2, "c": [1, 2]},
    {"zeta", "alpha", "mid", "x", "y", "", "é"},
    frozenset({"one", "two", "three", ("t", 1)}),
    {"nested": {"set": {"p", "q", "r"}, "list": [1.5, None, True]}, 1: frozenset({"s"})},
    [0.1, -0.0, 1e300, float("inf")],
    decimal.Decimal("3.14159"),
    datetime.date(2024, 2, 29),
    datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=datetime.timezone.utc),
    datetime.time(1, 2, 3),
    datetime.timedelta(days=-1, microseconds=5),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"\\x00\\xffbytes",
    ("tuple", {"inner": {"x", "y"}}),
]
"""

CHILD_SCRIPT = (
    TRICKY_VALUES_SOURCE
    + """
import json
from keyedcache.keys import cache_key, key_part
print(json.dumps([key_part(v) for v in VALUES] + [cache_key("k", VALUES[0], s=VALUES[1])]))
"""
)


def _tricky_keys_here():
    namespace: dict = {}
    exec(TRICKY_VALUES_SOURCE, namespace)
    values = namespace["VALUES"]
    return [key_part(v) for v in values] + [cache_key("k", values[0], s=values[1])]


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_digests_are_identical_across_processes_and_hash_seeds(seed):
    env = dict(os.environ, PYTHONHASHSEED=seed)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout) == _tricky_keys_here()


def test_digests_are_stable_across_runs():
    # Pinned: a change here invalidates every cached digest key in production.
    assert key_part({"b": [1, 2.5], "a": frozenset({"x", "y"})}) == "dict~5c6e48c08649bd21c987"
    assert key_part(("a", 1, None, True)) == "tuple~c6d18b421b0298551f50"
    assert key_part(datetime.date(2024, 2, 29)) == "date~d52213b426a83b4fe5a6"
    assert key_part(uuid.UUID(int=1)) == "UUID~7fbe36758948f6b94f32"


# --- 4. properties ------------------------------------------------------------------

NASTY_CHARS = st.one_of(
    st.sampled_from(list(":::: \t\n\r\x00\x7f~._-*?[]\\/aé€😀\u200b\ud800")),
    st.characters(),
)
SEGMENTS = st.one_of(
    st.text(NASTY_CHARS, max_size=12),
    # long: a short text repeated (cheap to generate, up to a few hundred chars)
    st.builds(lambda s, n: s * n, st.text(NASTY_CHARS, min_size=1, max_size=6), st.integers(2, 60)),
)
LOGICAL_KEYS = st.one_of(
    st.text(NASTY_CHARS, max_size=40),
    st.lists(SEGMENTS, min_size=1, max_size=8).map(KEY_DELIM.join),
    # many segments: a few segments repeated
    st.builds(
        lambda segments, n: KEY_DELIM.join(segments * n),
        st.lists(SEGMENTS, min_size=1, max_size=3),
        st.integers(2, 40),
    ),
)
BUDGETS = st.sampled_from(
    [
        250 - len("ks:1:"),
        250 - len(":1:"),
        250 - len("a-rather-long-site-wide-key-prefix:12:"),
        80,
        48,
    ]
)
NAMESPACES = st.sampled_from([NS, "kc", "keyedcache-gen"])
FUZZ = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(key_list=st.lists(LOGICAL_KEYS, min_size=2, max_size=6, unique=True), budget=BUDGETS)
def test_distinct_logical_keys_give_distinct_storage_keys(key_list, budget):
    stored = [storage_key(k, NS, budget) for k in key_list]
    assert len(set(stored)) == len(key_list)


@FUZZ
@given(
    key=LOGICAL_KEYS,
    data=st.data(),
    replacement=st.sampled_from(["_", ".", " ", "~", ":", "::", "x", "\x00", "é", ""]),
    budget=BUDGETS,
)
@example(key="a b", data=None, replacement=".", budget=BUDGET)
def test_near_miss_keys_give_distinct_storage_keys(key, data, replacement, budget):
    # One character replaced: the readable head maps unsafe characters to '_',
    # so only the digest can tell such keys apart.
    index = 1 if data is None else data.draw(st.integers(0, max(len(key) - 1, 0)))
    other = key[:index] + replacement + key[index + 1 :]
    if other != key:
        assert storage_key(other, NS, budget) != storage_key(key, NS, budget)
        assert safe_path(other) != safe_path(key)


@FUZZ
@given(key=LOGICAL_KEYS, budget=BUDGETS, namespace=NAMESPACES)
def test_storage_keys_are_short_printable_ascii_and_namespaced(key, budget, namespace):
    stored = storage_key(key, namespace, budget)
    assert len(stored) <= budget
    assert all(33 <= ord(ch) <= 126 for ch in stored), stored
    assert stored.startswith(namespace + ":")
    # Django's own memcached rules, with the prefix the budget was made for.
    made_prefix = "x" * (250 - budget)
    assert list(memcache_key_warnings(made_prefix + stored)) == []

    body = stored[len(namespace) + 1 :]
    if is_collapsed(stored):
        cut = len(body) - len(keys.COLLAPSE_MARK) - keys.DIGEST_CHARS
        head, tail = body[:cut], body[cut:]
        assert tail == keys.COLLAPSE_MARK + keys.digest(key.encode("utf-8", "surrogatepass"))
        assert head == "" or head.endswith(KEY_DELIM)
        assert safe_path(key).startswith(head)
    else:
        assert body == safe_path(key)
    # Where there is no digest the logical key reads back from the storage key.
    if keys.DIGEST_MARK not in body:
        assert body == key


def _is_int_text(text):
    try:
        return str(int(text)) == text
    except ValueError:
        return False


_DIGEST_TEXT = re.compile(rf"\w+~{HEX20}")

# Why these parts (property c): cache_key joins the text of its parts with '::'
# and uses str and int parts as text, so some distinct part tuples collide BY
# DESIGN (invariant 1); the strategy leaves exactly those out, explicitly:
# - a str part containing '::' (('a', 'b') vs ('a::b',));
# - a str part starting or ending with ':' (('a:', 'b') and ('a', ':b') are
#   both 'a:::b': the edge colon fuses with the delimiter);
# - a str part that is the text of an int (1 vs '1');
# - a str part that spells a digest ('tuple~<20 hex>'): equal to the container
#   it names only if someone forges the digest, never by accident;
# - the single-list rule: the parts are always passed as ONE list, so a part
#   that is itself a tuple or list is never taken for the list of parts;
# - at least one part: () and ('',) both give ''.
# Inside containers nothing is excluded: there every value is tagged by type.
TEXT_ALPHABET = st.one_of(st.sampled_from(list("ab:~_- 0123456789")), st.characters())


def _top_text_ok(text):
    return (
        KEY_DELIM not in text
        and not text.startswith(":")
        and not text.endswith(":")
        and not _is_int_text(text)
        and not _DIGEST_TEXT.fullmatch(text)
    )


TOP_TEXT = st.text(TEXT_ALPHABET, max_size=12).filter(_top_text_ok)
INNER = st.recursive(
    st.one_of(st.text(TEXT_ALPHABET, max_size=6), st.integers(-5, 5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple),
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(st.text(TEXT_ALPHABET, max_size=4), st.integers(-5, 5)), inner, max_size=3
        ),
    ),
    max_leaves=8,
)
PART = st.one_of(
    TOP_TEXT,
    st.integers(),
    st.lists(INNER, max_size=3).map(tuple),
    st.dictionaries(st.text(TEXT_ALPHABET, max_size=4), INNER, max_size=3),
)
PARTS = st.lists(PART, min_size=1, max_size=5).map(tuple)


def _variants(parts, i, j):
    """Near misses of `parts`: split/merge/wrap/retype one part, drop or add one."""
    part = parts[i]
    before, after = parts[:i], parts[i + 1 :]
    out = [parts, (*before, *after), (*parts, ""), ("", *parts)]
    for wrapped in ((part,), [part], ((part,),), ([part],), {"k": part}):
        out.append((*before, wrapped, *after))
    if isinstance(part, tuple):
        out.append((*before, list(part), *after))
    if isinstance(part, str) and len(part) > 1:
        cut = 1 + j % (len(part) - 1)
        out.append((*before, part[:cut], part[cut:], *after))
    if after and isinstance(part, str) and isinstance(after[0], str):
        out.append((*before, part + after[0], *after[1:]))
    if isinstance(part, int):
        out.append((*before, part + 1, *after))
        out.append((*before, (str(part),), *after))
    return [v for v in out if v and all(not isinstance(p, str) or _top_text_ok(p) for p in v)]


@hsettings(FUZZ, max_examples=100)
@given(pool=st.lists(PARTS, min_size=1, max_size=4), i=st.integers(0, 10), j=st.integers(0, 50))
def test_distinct_parts_give_distinct_cache_keys(pool, i, j):
    candidates = list(pool)
    for parts in pool:
        candidates += _variants(parts, i % len(parts), j)
    pairs = {(_frozen(parts), cache_key(list(parts))) for parts in candidates}
    values = {value for value, _ in pairs}
    made = {key for _, key in pairs}
    # equal parts -> one key each, and distinct parts -> distinct keys
    assert len(pairs) == len(values) == len(made), sorted(pairs, key=repr)


def _frozen(value):
    """A hashable stand-in for `value` that is equal exactly when `value` is."""
    if isinstance(value, dict):
        return ("dict", frozenset((_frozen(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_frozen(v) for v in value))
    return (type(value).__name__, value)


@FUZZ
@given(
    key=LOGICAL_KEYS,
    child=SEGMENTS,
    grandchild=SEGMENTS,
    budget=BUDGETS,
    namespace=NAMESPACES,
)
@example(key="a b:", child="x", grandchild="y", budget=BUDGET, namespace=NS)
@example(key="x" * 70 + ":", child="y", grandchild=":z", budget=BUDGET, namespace=NS)
@example(key="a:", child=":x", grandchild="", budget=BUDGET, namespace=NS)
def test_children_stay_below_their_parent(key, child, grandchild, budget, namespace):
    child_key = key + KEY_DELIM + child
    grandchild_key = child_key + KEY_DELIM + grandchild
    path = safe_path(key)
    assert safe_path(child_key).startswith(path + KEY_DELIM)
    assert safe_path(grandchild_key).startswith(safe_path(child_key) + KEY_DELIM)

    stored = storage_key(key, namespace, budget)
    for below in (child_key, grandchild_key):
        stored_below = storage_key(below, namespace, budget)
        prefix = f"{namespace}:{path}{KEY_DELIM}"
        if not is_collapsed(stored) and not is_collapsed(stored_below):
            assert stored_below.startswith(stored + KEY_DELIM)
        if is_collapsed(stored_below):
            head = stored_below[len(namespace) + 1 : -len(keys.COLLAPSE_MARK) - keys.DIGEST_CHARS]
            assert head == "" or head.endswith(KEY_DELIM)
            assert safe_path(below).startswith(head)
            # Where the parent's prefix fits in front of the collapse tail, the
            # cut lies below the parent: a prefix scan for the parent finds it.
            if len(prefix) + len(keys.COLLAPSE_MARK) + keys.DIGEST_CHARS <= budget:
                assert stored_below.startswith(prefix)


@FUZZ
@given(
    key=LOGICAL_KEYS,
    joint=st.sampled_from(["::", ":", "", ":::", " ::", "_::", ".", "~::", "::::"]),
    rest=SEGMENTS,
)
@example(key="a::b", joint="", rest="c")
@example(key="a b", joint="_::", rest="c")
def test_only_children_share_the_parent_prefix(key, joint, rest):
    # 'a::b' takes 'a::b::c', never 'a::bc'; on safe paths as on logical keys.
    other = key + joint + rest
    is_child = other.startswith(key + KEY_DELIM)
    assert safe_path(other).startswith(safe_path(key) + KEY_DELIM) == is_child


# --- 5. safe storage keys -------------------------------------------------------------


def test_space_dot_and_underscore_are_three_different_storage_keys():
    stored = [storage_key(k, NS, BUDGET) for k in ("a b", "a.b", "a_b")]
    assert len(set(stored)) == 3
    assert stored[1] == "keyedcache:a.b"
    assert stored[2] == "keyedcache:a_b"
    assert re.fullmatch(rf"keyedcache:a_b~{HEX20}", stored[0])


@pytest.mark.parametrize(
    "key",
    ["test", "test::3::more::yes", "a.b-c_d/e!{}", "x" * 64, ("y" * 60 + "::") * 3 + "z"],
)
def test_short_plain_keys_are_stored_unchanged(key):
    assert storage_key(key, NS, BUDGET) == f"{NS}:{key}"
    assert safe_path(key) == key


def test_unsafe_segments_become_readable_head_plus_digest():
    for segment in ["hello world", "x" * 65, "café", "tab\there", "a~b", "\ud800", "ÄÖÜ" * 30]:
        safe = safe_segment(segment)
        head, mark, hexdigest = safe.rpartition("~")
        assert mark == "~"
        assert hexdigest == keys.digest(segment.encode("utf-8", "surrogatepass"))
        assert re.fullmatch(HEX20, hexdigest)
        assert len(head) == min(len(segment), keys.SEGMENT_HEAD)
        assert "~" not in head
        assert all(33 <= ord(ch) <= 125 for ch in head)
    assert safe_segment("hello world").startswith("hello_world~")
    assert safe_segment("x" * 100).startswith("x" * 16 + "~")
    assert safe_segment("café").startswith("caf_~")
    assert safe_segment("plain.segment") == "plain.segment"
    assert safe_segment("x" * 64) == "x" * 64


def test_safe_path_keeps_the_tree_shape():
    path = safe_path("users::joe smith::prefs")
    assert re.fullmatch(rf"users::joe_smith~{HEX20}::prefs", path)
    # Colons next to a delimiter stay as they are (subtree prefixes keep working).
    assert re.fullmatch(rf"a_b~{HEX20}:", safe_path("a b:"))
    assert safe_path("a b:::x").startswith(safe_path("a b:") + "::")
    assert safe_path("a b:::x").startswith(safe_path("a b") + "::")


def test_long_keys_collapse_at_a_segment_boundary():
    key = "::".join([f"segment{i:02d}" for i in range(40)])
    stored = storage_key(key, NS, BUDGET)
    assert is_collapsed(stored)
    assert len(stored) <= BUDGET
    assert re.fullmatch(rf"keyedcache:(segment\d\d::)+~~{HEX20}", stored)
    assert not is_collapsed(storage_key("short", NS, BUDGET))


def test_budget_too_small_for_the_namespace_is_a_clear_error():
    assert storage_key("k", NS, 20) == "keyedcache:k"
    with pytest.raises(ValueError, match="KEY_PREFIX"):
        storage_key("k" * 100, NS, 20)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain:key::x", "plain:key::x"),
        ("a*b", r"a\*b"),
        ("a?b", r"a\?b"),
        ("[ab]", r"\[ab\]"),
        ("back\\slash", r"back\\slash"),
        ("*?[]\\", r"\*\?\[\]\\"),
    ],
)
def test_glob_escape(text, escaped):
    assert glob_escape(text) == escaped


@given(st.text(st.sampled_from(list("ab*?[]\\:~ "))))
def test_glob_escape_round_trips(text):
    escaped = glob_escape(text)
    assert re.sub(r"\\(.)", r"\1", escaped) == text
    assert re.fullmatch(r"(\\[*?\[\]\\]|[^*?\[\]\\])*", escaped)


# --- 6. real memcached ------------------------------------------------------------------

PYMEMCACHE = "django.core.cache.backends.memcached.PyMemcacheCache"


@pytest.mark.servers
def test_nasty_keys_round_trip_through_real_memcached(memcached_servers):
    location = memcached_servers[0].location
    caches_setting = {
        "default": {"BACKEND": PYMEMCACHE, "LOCATION": location, "KEY_PREFIX": "kc-keys-test"}
    }
    with override_settings(CACHES=caches_setting):
        cache = caches["default"]
        budget = 250 - len(cache.make_key(""))

        @hsettings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(key=LOGICAL_KEYS)
        @example(key="a b")
        @example(key="x" * 1000)
        @example(key="\x00\n\t ~é😀\ud800")
        def round_trip(key):
            stored = storage_key(key, NS, budget)
            value = ("value of", key)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                cache.set(stored, value, 30)
                assert cache.get(stored) == value
                cache.delete(stored)
                assert cache.get(stored, "missing") == "missing"

        try:
            round_trip()
        finally:
            cache.close()
