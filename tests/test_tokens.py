"""Tokens and the bounded backoff (keyedcache/tokens.py)."""

from __future__ import annotations

import os

import pytest

from keyedcache.tokens import Backoff, new_token


def test_lock_tokens_are_unique_and_name_the_process() -> None:
    tokens = {new_token(with_pid=True) for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(t.startswith(f"{os.getpid()}-") for t in tokens)


@pytest.mark.parametrize("nbytes", [6, 8, 16])
def test_plain_tokens_are_hex_of_the_asked_size(nbytes: int) -> None:
    token = new_token(nbytes)
    assert len(token) == 2 * nbytes
    int(token, 16)  # hex digits only
    assert new_token(nbytes) != token


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pauses_double_up_to_the_longest() -> None:
    backoff = Backoff(0.01, 0.05)
    assert [backoff.next_pause() for _ in range(5)] == [0.01, 0.02, 0.04, 0.05, 0.05]


def test_pauses_are_cut_to_the_deadline_then_stop() -> None:
    clock = FakeClock()
    backoff = Backoff(1.0, 8.0, deadline=103.0, clock=clock)
    assert backoff.next_pause() == 1.0
    clock.now = 101.0
    assert backoff.next_pause() == 2.0
    clock.now = 102.5
    assert backoff.next_pause() == pytest.approx(0.5)  # 4.0 cut to what is left
    clock.now = 103.0
    assert backoff.next_pause() is None


def test_sleep_sleeps_the_pause_and_says_false_after_the_deadline() -> None:
    clock = FakeClock()
    slept: list[float] = []
    backoff = Backoff(0.5, 1.0, deadline=101.0, clock=clock)
    assert backoff.sleep(slept.append) is True
    clock.now = 101.0
    assert backoff.sleep(slept.append) is False
    assert slept == [0.5]
