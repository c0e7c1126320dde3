"""keyedcache.pickled: the head and the tail of a pickled tuple, read without the rest."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from keyedcache.pickled import MARK, Big, float_or_none, tuple_head, tuple_tail

UNPICKLED: list[str] = []


class Tracked:
    """Records every unpickling (through __setstate__ and __reduce__'s callable)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __setstate__(self, state: dict[str, Any]) -> None:
        UNPICKLED.append(state["label"])
        self.__dict__.update(state)


def built(label: str) -> Tracked:
    UNPICKLED.append(label)
    return Tracked(label)


class Reduced:
    def __init__(self, label: str) -> None:
        self.label = label

    def __reduce__(self) -> tuple[Any, ...]:
        return (built, (self.label,))


VALUES = [
    b"x" * 100_000,
    "y" * 300_000,
    "é" * 70_000,
    list(range(100_000)),
    [{"a": i, "b": str(i)} for i in range(20_000)],
    [Tracked("deep")] * 3,
    Reduced("reduced"),
    {"nested": (1, 2.5, None, b"z")},
    None,
    (),
]


def record(value: Any, fresh: float | None, stale: float | None, cost: float) -> tuple[Any, ...]:
    return ("kc2", (11, 22, 33), "product::3", (1, value, fresh, stale, cost))


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("times", [(None, None, 0.0), (1.5e9, 1.6e9, 0.25), (None, 99.0, 3)])
def test_the_envelope_times_come_from_the_tail_without_unpickling(
    value: Any, times: tuple[Any, ...]
) -> None:
    UNPICKLED.clear()
    payload = pickle.dumps((1, value, *times), pickle.HIGHEST_PROTOCOL)
    whole = pickle.dumps(record(value, *times), pickle.HIGHEST_PROTOCOL)
    assert tuple_tail(payload, 3) == list(times)
    assert tuple_tail(whole, 3) == list(times)
    head = tuple_head(whole, 3)
    assert head is not None and head[:3] == ["kc2", (11, 22, 33), "product::3"]
    assert head[3] is MARK or type(head[3]) is tuple
    assert UNPICKLED == []


def test_a_key_in_the_envelope_is_skipped() -> None:
    payload = pickle.dumps((1, [1, 2], None, 7.0, 0.5, "the::key"), pickle.HIGHEST_PROTOCOL)
    assert tuple_tail(payload, 3) == [None, 7.0, 0.5]


def test_big_texts_in_the_head_are_not_built() -> None:
    key = "k" * (2 << 20)
    head = tuple_head(pickle.dumps(("kc2", (1,), key, (1, 2, None, None, 0.0)), 5), 3)
    assert head is not None and isinstance(head[2], Big) and head[2].length == len(key)


def test_what_is_not_a_framed_tuple_is_none() -> None:
    assert tuple_tail(pickle.dumps((1, 2, None, None, 0.0), 2), 3) is None  # no frames
    assert tuple_tail(pickle.dumps((1, "x", "a", "b", "c"), 5), 3) is None  # not scalars
    assert tuple_tail(b"garbage", 3) is None
    assert tuple_head(b"\x80\x05\x95\x01", 3) is None
    assert tuple_head(pickle.dumps([1, 2, 3], 5), 3) is None


def test_float_or_none() -> None:
    assert float_or_none(3) == 3.0 and float_or_none(2.5) == 2.5
    assert float_or_none(None) is None and float_or_none(True) is None


@pytest.mark.parametrize("stamp", [(7,), (7, 8), (7, 8, 9), (7, 8, 9, 10)])
def test_head_of_a_prefix_of_a_big_record(stamp: tuple[int, ...]) -> None:
    # Redis listings read only the first kilobytes of a record (GETRANGE): the
    # tag, stamp and key must come out of that prefix, whatever the stamp's length.
    envelope = pickle.dumps(("v", bytes(range(256)) * 4096, 1.0, 2.0, 0.0))
    record = pickle.dumps(("kc2", stamp, "big::1", envelope), pickle.HIGHEST_PROTOCOL)
    assert tuple_head(record[:4096], 3) == ["kc2", stamp, "big::1"]
