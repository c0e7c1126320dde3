"""manage.py keyedcache: output for people and for scripts (--json), and exit statuses.

Most tests use call_command (a CommandError carries the exit status as
`returncode`); the exit statuses themselves are checked on a real
`python -m django keyedcache ...` process.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test.utils import override_settings

import keyedcache
from keyedcache import (
    KeyedCache,
    cache_delete,
    cache_get,
    cache_keys,
    cache_set,
    cache_ttl,
)
from keyedcache.cache import KeyedCache as StoreClass
from tests.conftest import BackendConfig
from tests.procs import ROOT, process_env

MISS = object()
KEYS = ["product::1", "product::1::detail", "product::2", "order::1", "naïve::ключ"]


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def run(*args: Any, **options: Any) -> tuple[str, str]:
    """call_command('keyedcache', *args); return (stdout, stderr)."""
    out = options.pop("stdout", io.StringIO())
    err = options.pop("stderr", io.StringIO())
    call_command("keyedcache", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def run_json(*args: Any) -> Any:
    out, _ = run(*args, "--json")
    return json.loads(out)


def fails(*args: Any, **options: Any) -> CommandError:
    """Run the command, expecting a CommandError; return it."""
    with pytest.raises(CommandError) as raised:
        run(*args, **options)
    return raised.value


def write_keys(keys: list[str] = KEYS) -> None:
    for key in keys:
        cache_set(key, value=f"v:{key}", length=300)


# -- keys --------------------------------------------------------------------------------------


def test_keys_lists_sorted_keys(backend: BackendConfig) -> None:
    write_keys()
    out, _ = run("keys")
    assert out.splitlines() == sorted(KEYS)
    out, _ = run("keys", "product::*")
    assert out.splitlines() == ["product::1", "product::1::detail", "product::2"]
    assert run_json("keys", "product::?") == ["product::1", "product::2"]
    assert run_json("keys") == sorted(KEYS)


def test_keys_on_an_empty_cache(backend: BackendConfig) -> None:
    assert run("keys") == ("", "")
    assert run_json("keys", "nothing::*") == []


def test_keys_counts_on_verbosity_2(backend: BackendConfig) -> None:
    write_keys()
    _, err = run("keys", "order::*", verbosity=2)
    assert "1 key(s) matching 'order::*'" in err


# -- get ---------------------------------------------------------------------------------------


def test_get(backend: BackendConfig) -> None:
    cache_set("text", value="plain text")
    cache_set("product", 1, value={"name": "widget", "price": 10})
    assert run("get", "text")[0] == "plain text\n"
    assert run("get", "product::1")[0] == "{'name': 'widget', 'price': 10}\n"
    assert run_json("get", "product::1") == {
        "key": "product::1",
        "found": True,
        "value": {"name": "widget", "price": 10},
        "type": "builtins.dict",
    }


def test_get_of_values_json_cannot_hold(backend: BackendConfig) -> None:
    import datetime
    import decimal

    cache_set(
        "odd",
        value={
            "when": datetime.date(2024, 5, 1),
            "price": decimal.Decimal("9.99"),
            "tags": {"b", "a"},
        },
    )
    cache_set("obj", value=KeyedCacheProbe())
    assert run_json("get", "odd")["value"] == {
        "when": "2024-05-01",
        "price": "9.99",
        "tags": ["a", "b"],
    }
    assert run_json("get", "obj")["value"] == "<probe>"


class KeyedCacheProbe:
    def __repr__(self) -> str:
        return "<probe>"


def test_get_of_a_falsy_value_is_found(backend: BackendConfig) -> None:
    cache_set("none", value=None)
    assert run("get", "none")[0] == "None\n"
    assert run_json("get", "none")["found"] is True


def test_get_of_a_missing_key_exits_1(backend: BackendConfig) -> None:
    error = fails("get", "missing::1")
    assert error.returncode == 1
    assert "'missing::1' is not cached" in str(error)
    out = io.StringIO()
    error = fails("get", "missing::1", "--json", stdout=out)
    assert error.returncode == 1
    assert json.loads(out.getvalue()) == {"key": "missing::1", "found": False}


# -- ttl ---------------------------------------------------------------------------------------


def test_ttl(backend: BackendConfig) -> None:
    cache_set("short", value=1, length=100)
    cache_set("forever", value=1, length=None)
    assert run("ttl", "short")[0] == "100 s\n"
    data = run_json("ttl", "short")
    assert data["key"] == "short" and data["found"] is True
    assert data["ttl"] == 100 and 99_000 < data["pttl"] <= 100_000
    assert run("ttl", "forever")[0] == "never expires\n"
    assert run_json("ttl", "forever") == {
        "key": "forever",
        "found": True,
        "ttl": None,
        "pttl": None,
    }


def test_ttl_of_a_missing_key_exits_1(backend: BackendConfig) -> None:
    error = fails("ttl", "missing")
    assert error.returncode == 1
    assert "'missing' is not cached" in str(error)


# -- delete ------------------------------------------------------------------------------------


def test_delete(backend: BackendConfig) -> None:
    write_keys()
    assert run("delete", "product::2")[0] == "deleted 'product::2'\n"
    assert cache_get("product::2", default=MISS) is MISS
    assert run("delete", "product::2")[0] == "nothing was cached under 'product::2'\n"
    assert run_json("delete", "order::1") == {
        "key": "order::1",
        "children": False,
        "deleted": ["order::1"],
        "count": 1,
        "exact": True,
    }
    assert cache_keys() == sorted(["product::1", "product::1::detail", "naïve::ключ"])


def test_delete_children(backend: BackendConfig) -> None:
    write_keys([*KEYS, "product::10"])
    data = run_json("delete", "product::1", "--children")
    assert cache_keys() == sorted(["product::2", "product::10", "order::1", "naïve::ключ"])
    if backend.enumerates:
        assert data["exact"] is True
        assert sorted(data["deleted"]) == ["product::1", "product::1::detail"]
    else:  # generation tokens drop the subtree without listing it
        assert data["exact"] is False
        assert data["deleted"] == ["product::1"]
    out, _ = run("delete", "product::2", "--children", verbosity=2)
    assert "product::2" in out


def test_delete_is_quiet_on_verbosity_0(backend: BackendConfig) -> None:
    write_keys()
    assert run("delete", "order::1", verbosity=0) == ("", "")
    assert cache_get("order::1", default=MISS) is MISS


# -- delete-pattern ----------------------------------------------------------------------------


def test_delete_pattern(backend: BackendConfig) -> None:
    write_keys()
    backend.cache.set("product::9", "plain Django data", None)
    out, err = run("delete-pattern", "product::*")
    assert out == "deleted 3 key(s) matching 'product::*'\n"
    assert err == ""  # not a terminal: no progress bar
    assert cache_keys() == sorted(["order::1", "naïve::ключ"])
    assert backend.cache.get("product::9") == "plain Django data"
    assert run_json("delete-pattern", "*") == {"pattern": "*", "deleted": 2}
    assert cache_keys() == []


@pytest.mark.backends("locmem", "redis", "django-redis", "valkey", "valkey-cluster", "memcached")
def test_delete_pattern_shows_progress_on_a_terminal(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StoreClass, "delete_batch", 2)
    write_keys([f"many::{i}" for i in range(5)])
    err = Terminal()
    out, _ = run("delete-pattern", "many::*", stderr=err)
    assert out == "deleted 5 key(s) matching 'many::*'\n"
    shown = err.getvalue()
    assert shown.count("\r") == 3  # a redraw per batch of 2
    assert "\rdeleting [" in shown and "2/5" in shown and "4/5" in shown
    assert shown.endswith("] 5/5\n")
    # Quiet with -v 0, even on a terminal.
    write_keys([f"many::{i}" for i in range(5)])
    err = Terminal()
    assert run("delete-pattern", "many::*", stderr=err, verbosity=0)[0] == ""
    assert err.getvalue() == ""


# -- clear -------------------------------------------------------------------------------------


def test_clear_with_yes(backend: BackendConfig) -> None:
    write_keys()
    backend.cache.set("plain", "plain Django data", None)
    other = KeyedCache("default", namespace="other")
    other.set("product::1", "other namespace")
    out, _ = run("clear", "--yes")
    if backend.enumerates:
        assert out == f"deleted {len(KEYS)} key(s) from cache alias 'default'\n"
    else:
        assert out == "deleted every keyedcache entry of cache alias 'default'\n"
    assert cache_keys() == []
    assert backend.cache.get("plain") == "plain Django data"
    assert other.get("product::1") == "other namespace"
    write_keys()
    data = run_json("clear", "--noinput")
    assert data["cleared"] is True
    assert data["deleted"] == (len(KEYS) if backend.enumerates else None)
    assert cache_keys() == []


def test_clear_without_a_terminal_refuses(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_keys()
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal
    error = fails("clear")
    assert error.returncode == 2
    assert "pass --yes" in str(error)
    assert cache_keys() == sorted(KEYS)


def test_clear_asks_on_a_terminal(backend: BackendConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    write_keys()
    monkeypatch.setattr(sys, "stdin", Terminal())
    questions: list[str] = []

    def answer(reply: str) -> Any:
        def ask(prompt: str) -> str:
            questions.append(prompt)
            return reply

        return ask

    monkeypatch.setattr("builtins.input", answer("n"))
    error = fails("clear")
    assert error.returncode == 1
    assert "cancelled" in str(error)
    assert cache_keys() == sorted(KEYS)
    assert "cache alias 'default'" in questions[0] and "[y/N]" in questions[0]

    monkeypatch.setattr("builtins.input", answer("y"))
    run("clear")
    assert cache_keys() == []


@pytest.mark.backends("locmem", "redis", "django-redis", "valkey", "valkey-cluster")
def test_clear_shows_progress_on_a_terminal(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StoreClass, "delete_batch", 2)
    write_keys()
    err = Terminal()
    run("clear", "--yes", stderr=err)
    assert err.getvalue().startswith("\rclearing [")
    assert err.getvalue().endswith(f"{len(KEYS)}/{len(KEYS)}\n")


# -- aliases -----------------------------------------------------------------------------------


@pytest.mark.backends("locmem")
def test_alias_option(backend: BackendConfig) -> None:
    other_alias = {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": f"{backend.prefix}-second",
    }
    write_keys(["in::default"])
    with override_settings(CACHES={**backend.caches, "second": other_alias}):
        KeyedCache("second").set("in::second", 2)
        assert run("keys", "--alias", "second")[0] == "in::second\n"
        assert run("get", "in::second", "--alias=second")[0] == "2\n"
        assert run_json("keys") == ["in::default"]
        with override_settings(KEYEDCACHE_ALIAS="second"):
            assert run_json("keys") == ["in::second"]
            assert run_json("keys", "--alias", "default") == ["in::default"]
        run("delete-pattern", "*", "--alias", "second")
        assert run_json("keys", "--alias", "second") == []
        assert run_json("keys") == ["in::default"]


def test_unknown_alias_exits_2_and_deletes_nothing(backend: BackendConfig) -> None:
    write_keys()
    for args in (
        ("keys", "--alias", "nope"),
        ("delete-pattern", "*", "--alias", "nope"),
        ("clear", "--yes", "--alias", "nope"),
        ("stats", "--alias", "nope"),
    ):
        error = fails(*args)
        assert error.returncode == 2, args
        assert "unknown cache alias 'nope'" in str(error)
    assert cache_keys() == sorted(KEYS)


@pytest.mark.backends("locmem")
def test_a_backend_that_cannot_list_keys_exits_1(backend: BackendConfig) -> None:
    # A custom KEY_FUNCTION hides the made keys: the generic adapter cannot list.
    custom = backend.variant(KEY_FUNCTION="tests.test_backends.custom_key_func")
    with override_settings(CACHES={"default": custom}):
        write_keys(["listless::1"])
        error = fails("keys")
        assert error.returncode == 1
        assert "cannot list the keys" in str(error)
        assert run("get", "listless::1")[0] == "v:listless::1\n"  # the rest works


@pytest.mark.backends("locmem")
def test_stats_of_another_alias(backend: BackendConfig) -> None:
    second = {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": f"{backend.prefix}-stats-second",
    }
    with override_settings(CACHES={**backend.caches, "second": second}):
        data = run_json("stats", "--alias", "second")
        assert data.get("alias") in ("second", None)
        out, _ = run("stats", "--alias", "second")
        assert "calls" in out


@pytest.mark.backends("locmem")
def test_an_alias_that_does_not_cache(backend: BackendConfig) -> None:
    dummy = {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    with override_settings(CACHES={**backend.caches, "off": dummy}):
        error = fails("keys", "--alias", "off")
    assert error.returncode == 1
    assert "does not cache" in str(error)


# -- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("frobnicate",),
        ("get",),
        ("delete-pattern",),
        ("keys", "a", "b"),
        ("clear", "extra"),
        ("delete", "k", "--bogus"),
    ],
    ids=repr,
)
def test_bad_arguments_delete_nothing(backend: BackendConfig, args: tuple[str, ...]) -> None:
    write_keys()
    error = fails(*args)
    assert str(error).startswith("Error: ")
    assert cache_keys() == sorted(KEYS)


@pytest.mark.parametrize(
    "args",
    [("get", ""), ("delete", ""), ("delete-pattern", ""), ("keys", ""), ("ttl", "")],
    ids=repr,
)
def test_empty_keys_and_patterns_exit_2(backend: BackendConfig, args: tuple[str, ...]) -> None:
    write_keys()
    error = fails(*args)
    assert error.returncode == 2
    assert "must not be empty" in str(error)
    assert cache_keys() == sorted(KEYS)


# -- stats -------------------------------------------------------------------------------------


def test_stats(backend: BackendConfig) -> None:
    write_keys()
    cache_get("product::1")
    cache_get("missing", default=None)
    out, _ = run("stats")
    assert "calls" in out and "hits" in out and "hit rate" in out
    data = run_json("stats")
    assert isinstance(data, dict)
    counters = data["process"]["counters"]
    assert counters["calls"] >= 2 and counters["hits"] >= 1 and counters["misses"] >= 1


def test_stats_without_the_stats_function(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where keyedcache.stats is the counters module (no stats() function),
    # the command shows this process's counters.
    monkeypatch.setattr(keyedcache, "stats", sys.modules["keyedcache.counters"], raising=False)
    cache_get("missing", default=None)
    out, _ = run("stats")
    assert "counters of this process" in out
    data = run_json("stats")
    assert data["cluster"] is False
    assert data["process"]["counters"]["misses"] >= 1


# -- a real process: exit statuses -------------------------------------------------------------


def manage(backend: BackendConfig, *args: str) -> subprocess.Popen[str]:
    """Start `python -m django keyedcache *args` on the backend under test."""
    return subprocess.Popen(
        [sys.executable, "-m", "django", "keyedcache", *args],
        cwd=ROOT,
        env=process_env({**backend.env(), "DJANGO_SETTINGS_MODULE": "tests.settings"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.backends("db-sqlite")
def test_exit_statuses_of_a_real_process(backend: BackendConfig) -> None:
    write_keys()
    runs = {
        "unknown subcommand": manage(backend, "frobnicate"),
        "missing argument": manage(backend, "delete-pattern"),
        "unknown alias": manage(backend, "delete-pattern", "*", "--alias", "nope"),
        "clear without a terminal": manage(backend, "clear"),
        "missing key": manage(backend, "get", "missing::1"),
        "keys": manage(backend, "keys", "--json"),
    }
    results = {
        name: (*proc.communicate(timeout=120), proc.returncode) for name, proc in runs.items()
    }

    out, err, status = results["unknown subcommand"]
    assert status == 2
    assert "invalid choice: 'frobnicate'" in err
    out, err, status = results["missing argument"]
    assert status == 2
    assert "the following arguments are required: pattern" in err
    out, err, status = results["unknown alias"]
    assert status == 2
    assert "CommandError: unknown cache alias 'nope'" in err
    out, err, status = results["clear without a terminal"]
    assert status == 2
    assert "pass --yes" in err and "Nothing was deleted" in err
    out, err, status = results["missing key"]
    assert status == 1
    assert "'missing::1' is not cached" in err
    out, err, status = results["keys"]
    assert status == 0, err
    assert json.loads(out) == sorted(KEYS)  # written by this process, listed by that one
    assert cache_keys() == sorted(KEYS)  # nothing was deleted by the failed ones

    proc = manage(backend, "clear", "--yes")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out == f"deleted {len(KEYS)} key(s) from cache alias 'default'\n"
    assert cache_keys() == []
    assert cache_ttl("product::1") == 0
    assert cache_delete() == []


# -- outages: nothing that did not reach the backend is reported as done -----------------------

#: Every subcommand, as run during an outage.
OUTAGE_RUNS = {
    "stats": ("stats",),
    "keys": ("keys",),
    "keys of a pattern": ("keys", "product::*"),
    "get": ("get", "product::1"),
    "ttl": ("ttl", "product::1"),
    "delete": ("delete", "product::1"),
    "delete --children": ("delete", "product::1", "--children"),
    "delete-pattern": ("delete-pattern", "product::*"),
    "clear": ("clear", "--yes"),
}
#: locmem cannot be unreachable: the `down()` fixture makes LocMemCache's methods raise,
#: but keyedcache's locmem adapter reads its dict directly, so reads may still answer
#: (and then must tell the truth). Its deletes go through the failing methods.
LOCMEM_MAY_READ = {"stats", "keys", "keys of a pattern", "get", "ttl"}
OUTAGE_BACKENDS = (
    "locmem",
    "db-sqlite",
    "file",
    "memcached",
    "redis",
    "django-redis",
    "valkey-cluster",
)


def assert_names_the_outage(message: str) -> None:
    assert message.startswith("could not reach cache alias 'default': "), message
    assert "Traceback" not in message


@pytest.mark.backends(*OUTAGE_BACKENDS)
def test_every_subcommand_exits_3_when_the_backend_does_not_answer(
    backend: BackendConfig,
) -> None:
    write_keys()
    truth = {name: run(*OUTAGE_RUNS[name]) for name in ("keys", "keys of a pattern", "get")}
    with backend.down():
        keyedcache.keyedcache_configure()
        for name, args in OUTAGE_RUNS.items():
            for verbosity in (1, 0):  # -v 0 hides nothing of an outage
                out = io.StringIO()
                try:
                    run(*args, stdout=out, verbosity=verbosity)
                except CommandError as error:
                    assert error.returncode == 3, (name, str(error))
                    assert_names_the_outage(str(error))
                    assert out.getvalue() == "", name  # nothing printed as if it were done
                else:
                    assert backend.name == "locmem" and name in LOCMEM_MAY_READ, name
                    if name in truth and verbosity:
                        assert (out.getvalue(), "") == truth[name], name
    keyedcache.keyedcache_configure()
    assert cache_keys() == sorted(KEYS)  # nothing was deleted
    assert run("get", "product::1")[0] == "v:product::1\n"  # and service resumes


@pytest.mark.backends(*OUTAGE_BACKENDS)
def test_json_output_carries_the_error_during_an_outage(backend: BackendConfig) -> None:
    write_keys()

    def failed_json(*args: str) -> dict[str, Any]:
        out = io.StringIO()
        error = fails(*args, "--json", stdout=out)
        assert error.returncode == 3, (args, str(error))
        data = json.loads(out.getvalue())
        assert isinstance(data, dict) and data["alias"] == "default"
        assert_names_the_outage(data["error"])
        assert data["error"] == str(error)
        return data

    with backend.down():
        keyedcache.keyedcache_configure()
        clear = failed_json("clear", "--yes")
        assert clear["cleared"] is False and clear["deleted"] is None
        assert "may still be cached" in clear["error"]
        delete = failed_json("delete", "product::1", "--children")
        assert delete["key"] == "product::1" and delete["children"] is True
        assert delete["deleted"] is None and delete["count"] is None
        pattern = failed_json("delete-pattern", "product::*")
        assert pattern["pattern"] == "product::*" and pattern["deleted"] is None
        if backend.name != "locmem":  # see LOCMEM_MAY_READ
            got = failed_json("get", "product::1")
            assert got["key"] == "product::1" and got["found"] is None  # not "found": false
            assert failed_json("ttl", "product::1")["found"] is None
            listed = failed_json("keys", "product::*")
            assert listed["pattern"] == "product::*" and listed["keys"] is None
            assert "error" in failed_json("stats")
    keyedcache.keyedcache_configure()
    assert cache_keys() == sorted(KEYS)


@pytest.mark.backends("redis", "memcached", "db-sqlite")
def test_outage_messages_name_the_failure(backend: BackendConfig) -> None:
    write_keys()
    with backend.down():
        keyedcache.keyedcache_configure()
        message = str(fails("delete", "product::1"))
        assert message.startswith("could not reach cache alias 'default': delete of 'product::1'")
        assert "failed (" in message and "'product::1' may still be cached." in message
        message = str(fails("get", "product::1"))
        assert "set/get round trip" in message
        assert message.endswith("Cannot tell whether 'product::1' is cached.")
        message = str(fails("keys", "product::*"))
        assert "list keys of 'product::*' failed" in message
        assert message.endswith("No keys were listed.")
    keyedcache.keyedcache_configure()


@pytest.mark.backends("locmem")
def test_a_missing_key_is_still_exit_1_when_the_backend_answers(backend: BackendConfig) -> None:
    # The outage check on the miss path must not turn a plain miss into an error.
    for args in (("get", "nothing::here"), ("ttl", "nothing::here")):
        assert fails(*args).returncode == 1
    assert run("delete", "nothing::here")[0] == "nothing was cached under 'nothing::here'\n"
    assert run_json("delete-pattern", "nothing::*") == {"pattern": "nothing::*", "deleted": 0}
    assert run_json("keys", "nothing::*") == []


@pytest.mark.backends("locmem")
def test_outage_messages_never_show_a_password(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyedcache.exceptions import CacheBackendError

    config = backend.variant(
        LOCATION="redis://admin:s3cret-url@127.0.0.1:9/0?password=s3cret-query",
        OPTIONS={"password": "s3cret-option"},
    )

    def refuse(self: StoreClass, key: str, **options: Any) -> list[str]:
        cause = ConnectionError(
            "connecting to redis://admin:s3cret-url@127.0.0.1:9/0?password=s3cret-query "
            "with s3cret-option refused"
        )
        raise CacheBackendError("default", "delete", key, cause) from cause

    monkeypatch.setattr(StoreClass, "delete", refuse)
    with override_settings(CACHES={"default": config}):
        out = io.StringIO()
        error = fails("delete", "product::1", "--json", stdout=out)
    assert error.returncode == 3
    for shown in (str(error), out.getvalue()):
        assert "s3cret" not in shown
        assert "redis://********@127.0.0.1:9/0?password=********" in shown


# Not "file": with a file where its directory should be, Django's own system checks
# fail while building the cache object, before any command runs.
@pytest.mark.backends("redis", "memcached", "db-sqlite")
def test_an_outage_exits_3_from_a_real_process_without_a_traceback(
    backend: BackendConfig,
) -> None:
    write_keys()
    with backend.down():
        env = backend.env(caches=copy.deepcopy(settings.CACHES))
        runs = {
            "clear": manage_env(env, "clear", "--yes", "--json"),
            "delete": manage_env(env, "delete", "product::1", "--children"),
            "delete-pattern": manage_env(env, "delete-pattern", "product::*"),
            "keys": manage_env(env, "keys", "--json"),
            "get": manage_env(env, "get", "product::1"),
        }
        results = {
            name: (*proc.communicate(timeout=120), proc.returncode) for name, proc in runs.items()
        }
    for name, (out, err, status) in results.items():
        assert status == 3, (name, out, err)
        assert "Traceback" not in err, (name, err)
        last = err.splitlines()[-1]  # after the outage warnings keyedcache logs
        assert last.startswith("CommandError: could not reach cache alias 'default': "), err
    out, _err, _status = results["clear"]
    data = json.loads(out)
    assert data["cleared"] is False and data["error"].startswith("could not reach cache alias")
    assert "error" in json.loads(results["keys"][0])
    assert results["delete"][0] == results["delete-pattern"][0] == ""
    assert cache_keys() == sorted(KEYS)  # nothing was deleted here either


def manage_env(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start `python -m django keyedcache *args` with the child environment `env`."""
    return subprocess.Popen(
        [sys.executable, "-m", "django", "keyedcache", *args],
        cwd=ROOT,
        env=process_env({**env, "DJANGO_SETTINGS_MODULE": "tests.settings"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- output for people: plain notes, -v after the subcommand, strict JSON, closed pipes ---------


def colored_command() -> tuple[Any, Terminal, Terminal]:
    """The command with Django's colors forced on a terminal stderr (errors print in red)."""
    from keyedcache.management.commands.keyedcache import Command

    out, err = Terminal(), Terminal()
    return Command(stdout=out, stderr=err, force_color=True), out, err


@pytest.mark.backends("locmem")
def test_notes_and_progress_are_not_in_the_error_style(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StoreClass, "delete_batch", 2)
    write_keys([f"many::{i}" for i in range(5)])
    command, _out, err = colored_command()
    assert command.stderr.style_func("x") != "x"  # errors would be in color here
    call_command(command, "keys", "many::*", verbosity=2)
    call_command(command, "delete-pattern", "many::*")
    shown = err.getvalue()
    assert "5 key(s) matching 'many::*'" in shown and "5/5" in shown  # the count, the bar
    assert "\x1b[" not in shown  # no color escape anywhere


def test_verbosity_after_the_subcommand(backend: BackendConfig) -> None:
    write_keys()
    out, err = io.StringIO(), io.StringIO()
    call_command("keyedcache", "keys", "order::*", "-v", "2", stdout=out, stderr=err)
    assert out.getvalue() == "order::1\n"
    assert "1 key(s) matching 'order::*'" in err.getvalue()
    out = io.StringIO()
    call_command("keyedcache", "delete", "order::1", "--verbosity", "0", stdout=out)
    assert out.getvalue() == "" and not keyedcache.is_cached("order::1")


@pytest.mark.backends("db-sqlite")
def test_verbosity_after_the_subcommand_in_a_real_process(backend: BackendConfig) -> None:
    write_keys()
    proc = manage(backend, "keys", "order::*", "-v", "2")
    out, err = proc.communicate(timeout=120)
    assert (proc.returncode, out) == (0, "order::1\n"), err
    assert "1 key(s) matching 'order::*'" in err
    proc = manage(backend, "keys", "-v", "7")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "invalid choice: 7" in err


def no_constants(name: str) -> Any:
    raise AssertionError(f"not JSON: {name}")


def test_json_has_no_infinity_or_nan(backend: BackendConfig) -> None:
    inf = float("inf")
    cache_set("inf", value=inf)
    cache_set("odd", value={"a": [-inf, 1.5], "b": float("nan"), "s": {inf}, inf: (1, inf)})
    out, _ = run("get", "inf", "--json")
    assert json.loads(out, parse_constant=no_constants)["value"] == "Infinity"
    out, _ = run("get", "odd", "--json")
    assert json.loads(out, parse_constant=no_constants)["value"] == {
        "a": ["-Infinity", 1.5],
        "b": "NaN",
        "s": ["Infinity"],
        "Infinity": [1, "Infinity"],
    }


@pytest.mark.backends("db-sqlite")
def test_keys_into_a_reader_that_closes_early(backend: BackendConfig) -> None:
    # Far more than a pipe holds (64 KiB): the command is still writing when the reader goes.
    keyedcache.cache_set_many({f"listed::{i:05}::{'x' * 200}": i for i in range(3000)})
    proc = manage(backend, "keys", "listed::*")
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read()
    status = proc.wait(timeout=120)
    assert first.startswith("listed::00000::")
    assert status == 141, err  # 128 + SIGPIPE, as for a tool the closed pipe stopped
    assert err == ""  # no BrokenPipeError traceback, no "Exception ignored"
