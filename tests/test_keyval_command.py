"""manage.py keyval: each action's output, and its exit status in a real process."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from keyedcache.contrib.keyval import KeyVal
from tests.conftest import BackendConfig, base_child_env
from tests.procs import ROOT, process_env

# A real `manage.py` process reads the rows the test wrote: commit them.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.backends("locmem")]


def keyval(*argv: str, verbosity: int = 1) -> str:
    """Run `keyval` in this process; return what it printed."""
    out = io.StringIO()
    call_command("keyval", *argv, stdout=out, verbosity=verbosity)
    return out.getvalue()


def failure(*argv: str) -> CommandError:
    with pytest.raises(CommandError) as caught:
        keyval(*argv)
    return caught.value


@pytest.fixture(autouse=True)
def _cache(backend: BackendConfig) -> None:
    """keyval on db:// with a locmem cache of its own."""


class TestActions:
    def test_set_get_del(self) -> None:
        assert keyval("-c", "set", "-n", "cfg", "-k", "greeting", "-V", "hello") == (
            "created 'greeting' in store 'cfg'\n"
        )
        assert keyval("-c", "set", "-n", "cfg", "-k", "greeting", "-V", "hi there") == (
            "updated 'greeting' in store 'cfg'\n"
        )
        assert KeyVal("cfg").get("greeting") == "hi there"
        assert keyval("-c", "get", "-n", "cfg", "-k", "greeting") == "hi there\n"
        assert (
            keyval("-c", "del", "-n", "cfg", "-k", "greeting")
            == "deleted 'greeting' from store 'cfg'\n"
        )
        assert not KeyVal("cfg").exists("greeting")

    def test_values_are_text_unless_json(self) -> None:
        keyval("-c", "set", "-n", "cfg", "-k", "n", "-V", "42")
        assert KeyVal("cfg").get("n") == "42"
        keyval("--json", "-c", "set", "-n", "cfg", "-k", "n", "-V", "42")
        assert KeyVal("cfg").get("n") == 42
        keyval("-c", "set", "-n", "cfg", "-k", "list", "-V", '["a", {"b": null}]', "--json")
        assert KeyVal("cfg").get("list") == ["a", {"b": None}]

    def test_get_prints_text_as_is_others_as_repr_or_json(self) -> None:
        kv = KeyVal("cfg")
        kv.set("text", "two\nlines")
        kv.set("data", {"a": [1, None]})
        kv.set("ü", "ß")
        assert keyval("-c", "get", "-n", "cfg", "-k", "text") == "two\nlines\n"
        assert keyval("-c", "get", "-n", "cfg", "-k", "data") == "{'a': [1, None]}\n"
        assert keyval("-c", "get", "-n", "cfg", "-k", "data", "--json") == '{"a": [1, null]}\n'
        assert keyval("-c", "get", "-n", "cfg", "-k", "text", "--json") == '"two\\nlines"\n'
        assert keyval("-c", "get", "-n", "cfg", "-k", "ü", "--json") == '"ß"\n'

    def test_list_and_flush(self) -> None:
        kv = KeyVal("cfg")
        kv.set("b", 2)
        kv.set("a", "x")
        KeyVal("other").set("c", 3)
        assert keyval("-c", "list", "-n", "cfg") == "a\nb\n"
        assert keyval("-c", "list", "-n", "cfg", "--json") == '{"a": "x", "b": 2}\n'
        assert keyval("-c", "list", "-n", "empty") == ""
        assert keyval("-c", "flush", "-n", "cfg") == "flushed 2 key(s) from store 'cfg'\n"
        assert kv.keys() == [] and KeyVal("other").keys() == ["c"]

    def test_verbosity_0_prints_only_what_was_asked(self) -> None:
        assert keyval("-c", "set", "-n", "cfg", "-k", "k", "-V", "v", verbosity=0) == ""
        assert keyval("-c", "get", "-n", "cfg", "-k", "k", verbosity=0) == "v\n"
        assert keyval("-c", "flush", "-n", "cfg", verbosity=0) == ""


class TestErrors:
    @pytest.mark.parametrize("action", ["get", "del"])
    def test_missing_key_is_status_1(self, action: str) -> None:
        error = failure("-c", action, "-n", "cfg", "-k", "nope")
        assert error.returncode == 1
        assert str(error) == "key 'nope' not found in store 'cfg'"

    def test_a_value_json_cannot_show_is_status_1(self) -> None:
        KeyVal("cfg").set("set", {1, 2})
        error = failure("-c", "get", "-n", "cfg", "-k", "set", "--json")
        assert error.returncode == 1 and "the value of 'set' is not JSON" in str(error)

    @pytest.mark.parametrize(
        ("argv", "words"),
        [
            (["-c", "get", "-n", "cfg"], "-c get needs a key: -k KEY"),
            (["-c", "del", "-n", "cfg"], "-c del needs a key"),
            (["-c", "set", "-n", "cfg", "-V", "v"], "-c set needs a key"),
            (["-c", "set", "-n", "cfg", "-k", "k"], "-c set needs a value: -V VALUE"),
            (["-c", "get", "-n", "cfg", "-k", "k", "-V", "v"], "-c get takes no value"),
            (["-c", "list", "-n", "cfg", "-k", "k"], "-c list takes no key"),
            (["-c", "flush", "-n", "cfg", "-V", "v"], "-c flush takes no value"),
            (["-c", "set", "-n", "cfg", "-k", "k", "-V", "{x", "--json"], "-V is not valid JSON"),
            (["-c", "get", "-n", "cfg", "-k", "k" * 513], "513 characters long"),
            (["-c", "list", "-n", "n" * 129], "129 characters long"),
        ],
    )
    def test_flags_that_do_not_fit_are_status_2(self, argv: list[str], words: str) -> None:
        error = failure(*argv)
        assert error.returncode == 2
        assert words in str(error)
        assert KeyVal("cfg").keys() == []


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m django keyval ...` in a real process on the test databases."""
    env = process_env(base_child_env())
    return subprocess.run(
        [sys.executable, "-m", "django", "keyval", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_exit_statuses_of_a_real_process() -> None:
    ok = run("-c", "set", "-n", "cfg", "-k", "k", "-V", "v")
    assert (ok.returncode, ok.stdout) == (0, "created 'k' in store 'cfg'\n"), ok.stderr
    assert KeyVal("cfg").get("k") == "v"
    got = run("-c", "get", "-n", "cfg", "-k", "k")
    assert (got.returncode, got.stdout) == (0, "v\n"), got.stderr
    results: dict[str, Any] = {
        "missing key": (run("-c", "get", "-n", "cfg", "-k", "nope"), 1, "not found in store 'cfg'"),
        "unknown action": (run("-c", "bad", "-n", "cfg"), 2, "invalid choice: 'bad'"),
        "no store name": (run("-c", "list"), 2, "the following arguments are required: -n"),
        "unknown flag": (run("-c", "list", "-n", "cfg", "-x"), 2, "unrecognized arguments: -x"),
        "no key": (run("-c", "get", "-n", "cfg"), 2, "-c get needs a key"),
    }
    for name, (result, status, words) in results.items():
        assert result.returncode == status, (name, result.stderr)
        assert words in result.stderr, (name, result.stderr)
        assert result.stdout == "", name
