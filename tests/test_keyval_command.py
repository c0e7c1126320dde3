"""manage.py keyval: each action's output, and its exit status in a real process."""

from __future__ import annotations

import io
import json
import math
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


class TestSubcommands:
    """`keyval set NAME KEY VALUE` and friends, as `manage.py keyedcache` has subcommands."""

    def test_set_get_del_list_flush(self) -> None:
        assert keyval("set", "cfg", "greeting", "hello") == "created 'greeting' in store 'cfg'\n"
        assert keyval("set", "cfg", "n", "42", "--json") == "created 'n' in store 'cfg'\n"
        assert KeyVal("cfg").get("greeting") == "hello" and KeyVal("cfg").get("n") == 42
        assert keyval("get", "cfg", "greeting") == "hello\n"
        assert keyval("get", "cfg", "n", "--json") == "42\n"
        assert keyval("list", "cfg") == "greeting\nn\n"
        assert keyval("del", "cfg", "greeting") == "deleted 'greeting' from store 'cfg'\n"
        assert keyval("delete", "cfg", "n") == "deleted 'n' from store 'cfg'\n"
        KeyVal("cfg").set("x", 1)
        assert keyval("flush", "cfg") == "flushed 1 key(s) from store 'cfg'\n"
        assert KeyVal("cfg").keys() == []

    def test_flags_after_the_subcommand(self) -> None:
        assert keyval("set", "-n", "cfg", "-k", "k", "-V", "[1]", "--json") == (
            "created 'k' in store 'cfg'\n"
        )
        assert keyval("get", "cfg", "--key", "k", "--json") == "[1]\n"
        assert keyval("list", "--store_name", "cfg") == "k\n"

    def test_verbosity_after_the_subcommand(self) -> None:
        out = io.StringIO()
        call_command("keyval", "set", "cfg", "k", "v", "-v", "0", stdout=out)
        assert out.getvalue() == "" and KeyVal("cfg").get("k") == "v"
        call_command("keyval", "flush", "cfg", "--verbosity", "0", stdout=out)
        assert out.getvalue() == "" and KeyVal("cfg").keys() == []

    def test_missing_key_is_status_1(self) -> None:
        error = failure("get", "cfg", "nope")
        assert (error.returncode, str(error)) == (1, "key 'nope' not found in store 'cfg'")

    @pytest.mark.parametrize(
        ("argv", "words"),
        [
            (["-c", "get", "get", "cfg", "k"], "give the action once"),
            (["get", "cfg", "k", "-n", "cfg"], "NAME is given twice"),
            (["set", "cfg", "k", "v", "-V", "w"], "VALUE is given twice"),
            (["-n", "cfg"], "no action: give a subcommand"),
            (["get", "cfg"], "get needs a key: KEY (or -k KEY)"),
            (["set", "cfg", "k"], "set needs a value: VALUE (or -V VALUE)"),
            (["get"], "get needs a store name: NAME (or -n NAME)"),
            (["list", "cfg", "-k", "k"], "list takes no key (-k)"),
        ],
    )
    def test_arguments_that_do_not_fit_are_status_2(self, argv: list[str], words: str) -> None:
        error = failure(*argv)
        assert error.returncode == 2 and words in str(error)
        assert KeyVal("cfg").keys() == []


class TestDjangoKeyvalFlags:
    """django_keyval 0.1.2's long options: --command, --store_name, --ke (its spelling), --value."""

    @pytest.mark.parametrize("name_flag", ["--store_name", "--store-name", "--name", "-n"])
    @pytest.mark.parametrize("key_flag", ["--key", "--ke", "-k"])
    def test_long_options(self, name_flag: str, key_flag: str) -> None:
        keyval("--command", "set", name_flag, "cfg", key_flag, "k", "--value", "v")
        assert KeyVal("cfg").get("k") == "v"
        assert keyval("--command", "get", name_flag, "cfg", key_flag, "k") == "v\n"


def no_constants(name: str) -> Any:
    raise AssertionError(f"not JSON: {name}")


class TestJsonIsAlwaysValid:
    """JSON has no Infinity or NaN: they print as the strings "Infinity", "-Infinity", "NaN"."""

    def test_non_finite_floats_are_strings(self) -> None:
        kv = KeyVal("cfg")
        kv.set("inf", float("inf"))
        kv.set("nested", {"a": [float("-inf"), 1.5], "b": float("nan"), "c": (math.inf,)})
        for action in (("get", "cfg", "inf"), ("-c", "get", "-n", "cfg", "-k", "inf")):
            out = keyval(*action, "--json")
            assert json.loads(out, parse_constant=no_constants) == "Infinity"
        out = keyval("get", "cfg", "nested", "--json")
        assert json.loads(out, parse_constant=no_constants) == {
            "a": ["-Infinity", 1.5],
            "b": "NaN",
            "c": ["Infinity"],
        }
        out = keyval("list", "cfg", "--json")
        assert json.loads(out, parse_constant=no_constants)["inf"] == "Infinity"


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
    new = run("set", "cfg", "k2", "w", "-v", "0")
    assert (new.returncode, new.stdout) == (0, ""), new.stderr
    got = run("get", "cfg", "k2")
    assert (got.returncode, got.stdout) == (0, "w\n"), got.stderr
    results: dict[str, Any] = {
        "missing key": (run("-c", "get", "-n", "cfg", "-k", "nope"), 1, "not found in store 'cfg'"),
        "unknown action": (run("-c", "bad", "-n", "cfg"), 2, "invalid choice: 'bad'"),
        "no store name": (run("-c", "list"), 2, "-c list needs a store name: -n NAME"),
        "no action": (run("-n", "cfg"), 2, "no action: give a subcommand"),
        "subcommand without a key": (run("get", "cfg"), 2, "get needs a key: KEY (or -k KEY)"),
        "unknown flag": (run("-c", "list", "-n", "cfg", "-x"), 2, "unrecognized arguments: -x"),
        "no key": (run("-c", "get", "-n", "cfg"), 2, "-c get needs a key"),
    }
    for name, (result, status, words) in results.items():
        assert result.returncode == status, (name, result.stderr)
        assert words in result.stderr, (name, result.stderr)
        assert result.stdout == "", name
