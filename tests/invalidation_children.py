"""Code the invalidation tests run in child processes (and in the parent): held fills.

Everything here goes through keyedcache's public API. A computation is *held*
at a tests.procs Gate after it has read its inputs: the fill is then in
flight, with a result computed from the old data, while another process (or
thread) changes the data and invalidates. Executions and inputs live in
files of the test's run directory, shared by every process of the test.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connections
from django.db.models.signals import post_init

import keyedcache
from keyedcache import KEY_DELIM, cache_delete, cache_delete_function, cache_function, cache_set
from keyedcache.contrib.keyval import KeyVal
from keyedcache.contrib.keyval.models import KeyValEntry
from tests.models import Widget
from tests.procs import append_line, gate_wait, read_lines

#: Bounded waits at a gate (never reached when the code works).
DEADLINE = 30.0

#: Per process: run directory -> address of the Gate the next execution of `priced` waits at.
HOLD: dict[str, str] = {}
_hold_lock = threading.Lock()


def executions(run_dir: str) -> list[str]:
    """One line per execution of `priced` in this run: '<pid> <price it read>'."""
    return read_lines(os.path.join(run_dir, "executions"))


def set_price(run_dir: str, item: str, price: str) -> None:
    """The input `priced` reads: a file per item."""
    Path(run_dir, f"price-{item}").write_text(price, encoding="utf-8")


def _take_hold(run_dir: str) -> str | None:
    # Only the first execution after a hold is set waits: a retry (if the code
    # chose to recompute a discarded fill) must not wait at a gate already opened.
    with _hold_lock:
        return HOLD.pop(run_dir, None)


@cache_function(300, wait=60)
def priced(run_dir: str, item: str) -> str:
    """Returns the item's price as read from its input file; held at a gate when one is set."""
    price = Path(run_dir, f"price-{item}").read_text(encoding="utf-8")
    append_line(os.path.join(run_dir, "executions"), f"{os.getpid()} {price}")
    address = _take_hold(run_dir)
    if address is not None:
        gate_wait(address, DEADLINE)  # inputs read: the fill is in flight
    return price


def fill_held(run_dir: str, item: str, gate_address: str) -> str:
    """Call `priced` with its (first) execution held at the gate; return what the call returned."""
    HOLD[run_dir] = gate_address
    try:
        return priced(run_dir, item)
    finally:
        HOLD.pop(run_dir, None)


#: The invalidations of a memoized call, by name (see `invalidate`).
INVALIDATIONS = ("invalidate", "delete_function", "ancestor_children", "delete_all")


def invalidate(kind: str, run_dir: str, item: str) -> None:
    """Invalidate `priced(run_dir, item)` the way `kind` names, through the public API."""
    memoized: Any = priced  # typed as the plain function; it has .key() and .invalidate()
    if kind == "invalidate":
        memoized.invalidate(run_dir, item)
    elif kind == "delete_function":
        cache_delete_function(priced)
    elif kind == "ancestor_children":
        # The first segment of the call's key ("func", docs/keys.md): an ancestor
        # above the function's own root.
        ancestor = memoized.key(run_dir, item).split(KEY_DELIM)[0]
        assert ancestor and ancestor != memoized.key(run_dir, item)
        cache_delete(ancestor, children=True)
    elif kind == "delete_all":
        cache_delete()
    else:  # pragma: no cover - a typo in a test
        raise ValueError(kind)


# -- find_by_* held after the row was read ------------------------------------------------


@contextlib.contextmanager
def hold_first_widget_load(gate_address: str) -> Iterator[None]:
    """Within the block, the first Widget built from a database row waits at the gate.

    post_init runs once the row has been fetched (the query is finished and its
    cursor closed): the loader holds the old row and has not cached it yet.
    """
    held: list[int] = []
    owner = threading.get_ident()

    def hold(sender: Any, instance: Any, **kwargs: Any) -> None:
        if threading.get_ident() == owner and not held:
            held.append(1)
            gate_wait(gate_address, DEADLINE)

    uid = f"invalidation-hold-{os.getpid()}-{owner}"
    post_init.connect(hold, sender=Widget, weak=False, dispatch_uid=uid)
    try:
        yield
    finally:
        post_init.disconnect(sender=Widget, dispatch_uid=uid)


def find_held(finder: str, value: Any, gate_address: str) -> str | None:
    """Run keyedcache.models.<finder>(Widget, 'Widget', value), held after the row is read.

    Returns the name of the instance it returned (None when it found none).
    """
    from keyedcache import models as cached_models

    find = getattr(cached_models, finder)
    with hold_first_widget_load(gate_address):
        found = find(Widget, "Widget", value)
    return None if found is None else found.name


def change_widget(pk: int, change: str, finder_value: Any = None) -> None:
    """Save a new name on the row (change='save') or delete it, committing at once.

    With `finder_value`, also drop the finder's entry ("Widget", finder_value)
    once committed, as docs/api.md asks for find_by_key/find_by_slug entries.
    """
    widget = Widget.objects.get(pk=pk)
    if change == "save":
        widget.name = "new"
        widget.save()
    elif change == "delete":
        widget.delete()
    else:  # pragma: no cover - a typo in a test
        raise ValueError(change)
    if finder_value is not None:
        cache_delete("Widget", finder_value)


# -- keyval db:// read-through held after the row was read -------------------------------


@contextlib.contextmanager
def hold_first_keyval_select(gate_address: str, using: str = "default") -> Iterator[None]:
    """Within the block, the first SELECT on keyval's table waits at the gate once executed.

    The query has run (its snapshot is taken) but the reader has not cached the
    result yet. Django's execute_wrapper is per connection, hence per thread.
    """
    held: list[int] = []
    table = KeyValEntry._meta.db_table

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if not held and table in sql and sql.lstrip().upper().startswith("SELECT"):
            held.append(1)
            gate_wait(gate_address, DEADLINE)
        return result

    with connections[using].execute_wrapper(wrapper):
        yield


def keyval_read_held(url: str, store: str, key: str, gate_address: str) -> Any:
    """KeyVal(store).get_default(key), held after its database read."""
    with hold_first_keyval_select(gate_address):
        return KeyVal(store, backend=url).get_default(key)


#: Writes racing a keyval read, and what a reader must see afterwards.
KEYVAL_WRITES = {"set": "new", "delete": None, "flush": None}


def keyval_write(url: str, store: str, key: str, write: str) -> None:
    """Change `key` of `store` the way `write` names (committed when this returns)."""
    kv = KeyVal(store, backend=url)
    if write == "set":
        kv.set(key, "new")
    elif write == "delete":
        kv.delete(key)
    elif write == "flush":
        kv.flush()
    else:  # pragma: no cover - a typo in a test
        raise ValueError(write)


def keyval_read(url: str, store: str, key: str) -> Any:
    return KeyVal(store, backend=url).get_default(key)


# -- entries whose class is gone -----------------------------------------------------------

GONE_MODULE_SOURCE = '''
"""A module that exists only while entries of its class are written."""


class Gone:
    def __init__(self, label):
        self.label = label
'''


def write_module(directory: str, module_name: str) -> None:
    """Create `<directory>/<module_name>.py` defining class Gone."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    Path(directory, f"{module_name}.py").write_text(GONE_MODULE_SOURCE, encoding="utf-8")


def cache_instances_of_gone_class(
    directory: str, module_name: str, keys: list[tuple[Any, ...]]
) -> None:
    """Import the module from `directory`, cache a Gone instance under each key, forget the module.

    Written with length=None: nothing would ever expire them.
    """
    sys.path.insert(0, directory)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
        for parts in keys:
            cache_set(*parts, value=module.Gone(parts), length=None)
            # Decodable here, while the class imports.
            assert type(keyedcache.cache_get(*parts)).__name__ == "Gone"
    finally:
        sys.modules.pop(module_name, None)
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)
        importlib.invalidate_caches()
