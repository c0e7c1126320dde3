"""keyedcache.entry: the stored envelope (make_entry, pack/unpack, freshness, size)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyedcache.entry import ENTRY_FORMAT, Entry, is_packed, make_entry, unpack

NOW = 1_700_000_000.0


def test_no_timeout_never_expires():
    entry = make_entry("v", None, now=NOW)
    assert entry == Entry("v", None, None, 0.0, None)
    assert entry.is_fresh(NOW + 10**9)
    assert entry.seconds_left(NOW + 10**9) is None
    # also with a stale window: nothing expires, nothing goes stale
    assert make_entry("v", None, stale=30, now=NOW).fresh_until is None


def test_without_stale_window_freshness_is_the_backends_expiry():
    entry = make_entry("v", 60, now=NOW)
    assert entry.fresh_until is None
    assert entry.stale_until == NOW + 60
    assert entry.is_fresh(NOW + 59)
    assert entry.seconds_left(NOW + 20) == 40


def test_stale_window_sets_fresh_and_stale_times():
    entry = make_entry("v", 60, stale=30, cost=0.25, key="k::1", now=NOW)
    assert entry.fresh_until == NOW + 60
    assert entry.stale_until == NOW + 90
    assert entry.cost == 0.25
    assert entry.key == "k::1"
    assert entry.value == "v"


def test_make_entry_uses_the_clock_when_no_now_is_given():
    import time

    before = time.time()
    entry = make_entry("v", 60, stale=30)
    after = time.time()
    assert before + 60 <= entry.fresh_until <= after + 60
    assert before + 90 <= entry.stale_until <= after + 90


def test_is_fresh_with_explicit_now():
    entry = make_entry("v", 60, stale=30, now=NOW)
    assert entry.is_fresh(NOW)
    assert entry.is_fresh(NOW + 59.999)
    assert not entry.is_fresh(NOW + 60)
    assert not entry.is_fresh(NOW + 89)


def test_seconds_left_with_explicit_now():
    entry = make_entry("v", 60, stale=30, now=NOW)
    assert entry.seconds_left(NOW) == 90
    assert entry.seconds_left(NOW + 89.5) == 0.5
    assert entry.seconds_left(NOW + 1000) == 0.0


@pytest.mark.parametrize(
    "entry",
    [
        Entry("v"),
        Entry(None),
        Entry(("a", [1, 2]), NOW + 1, NOW + 2, 0.5),
        Entry({"x": 1}, None, NOW + 5, 0.0, "long key with spaces ~ é"),
        make_entry(0, 60, stale=30, cost=1.5, key="k", now=NOW),
        make_entry("", None),
    ],
)
def test_pack_is_a_plain_tuple_that_unpacks_to_the_same_entry(entry):
    packed = entry.pack()
    assert type(packed) is tuple
    assert packed[0] == ENTRY_FORMAT
    assert packed[1] == entry.value
    assert len(packed) == (5 if entry.key is None else 6)
    assert is_packed(packed)
    assert unpack(packed) == entry
    assert type(unpack(packed)) is Entry
    assert unpack(pickle.loads(pickle.dumps(packed, pickle.HIGHEST_PROTOCOL))) == entry


@given(
    value=st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.binary()),
    fresh=st.one_of(st.none(), st.floats(allow_nan=False)),
    stale=st.one_of(st.none(), st.floats(allow_nan=False)),
    cost=st.floats(min_value=0, max_value=1e6),
    key=st.one_of(st.none(), st.text()),
)
def test_unpack_inverts_pack(value, fresh, stale, cost, key):
    entry = Entry(value, fresh, stale, cost, key)
    assert unpack(entry.pack()) == entry


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "value",
        42,
        [ENTRY_FORMAT, "v", None, None, 0.0],  # a list, not a tuple
        (ENTRY_FORMAT, "v", None, None),  # too short
        (ENTRY_FORMAT + 1, "v", None, None, 0.0),  # another format
        (0, "v", None, None, 0.0),
        ("1", "v", None, None, 0.0),
        ("plain", "tuple", "of", "user", "data"),
        (),
        {"value": "v"},
    ],
)
def test_foreign_data_is_not_an_entry(raw):
    assert not is_packed(raw)
    assert unpack(raw) is None


def test_entry_itself_is_not_a_packed_envelope():
    # A NamedTuple is a tuple subclass: only the plain packed tuple counts.
    entry = Entry(ENTRY_FORMAT, None, None, 0.0)
    assert not is_packed(entry)
    assert unpack(entry) is None


@pytest.mark.parametrize(
    "value",
    ["x", 12345, "some text value" * 10, {"a": [1, 2, 3]}, None, b"\x00" * 100],
)
@pytest.mark.parametrize(
    "entry_of",
    [
        lambda v: make_entry(v, None),
        lambda v: make_entry(v, 300, now=NOW),
        lambda v: make_entry(v, 300, stale=60, cost=0.125, now=NOW),
    ],
)
def test_packed_entry_pickles_small(value, entry_of):
    # The small-envelope requirement: what the envelope adds to the pickle of
    # the bare value (Django pickles with HIGHEST_PROTOCOL) stays under 40 bytes.
    bare = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    packed = pickle.dumps(entry_of(value).pack(), pickle.HIGHEST_PROTOCOL)
    # Pickles of a few bytes (None, True) carry no 9-byte FRAME header; the
    # envelope's does. That is pickle's constant, not the envelope's.
    frame = 0 if bare[2:3] == pickle.FRAME else 9
    assert len(packed) - len(bare) - frame < 40, (len(packed), len(bare))
