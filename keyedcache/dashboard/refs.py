"""Links to keys and branches: the key in the URL, or for a long one a short reference.

A 100 KB key cannot travel in a URL (servers answer 414). Such keys are
linked by the storage key of their entry (at most 250 characters, a readable
head plus a digest), which the server reads back into the key from the entry
itself; a long branch by the storage key of one key below it plus the
branch's length. Nothing is kept on the server and any process can resolve
the link while the entry exists.
"""

from __future__ import annotations

from typing import Any

from django.http import QueryDict

from keyedcache.cache import KeyedCache
from keyedcache.keys import KEY_DELIM

#: Keys and branches longer than this are linked by reference, not written in the URL.
LONG_KEY = 1_000


def key_params(store: KeyedCache, key: str) -> dict[str, Any]:
    """Query parameters naming `key` on the key and delete pages."""
    if len(key) <= LONG_KEY:
        return {"key": key}
    return {"ref": store.storage_key(key)}


def branch_params(store: KeyedCache, branch: str | None, sample: str | None) -> dict[str, Any]:
    """Query parameters naming `branch` (None: the root) on the key browser.

    `sample` is a key at or below the branch, used as the reference of a long one.
    """
    if branch is None:
        return {}
    if len(branch) <= LONG_KEY or sample is None or not sample.startswith(branch):
        return {"prefix": branch}
    return {"ref": store.storage_key(sample), "cut": len(branch)}


def resolve(store: KeyedCache, query: QueryDict, name: str) -> tuple[str | None, str | None]:
    """(the key or branch the query names under `name`, or as a reference; the key behind
    the reference, for further links). (None, None) when it names none or the reference's
    entry is gone."""
    named = query.get(name)
    if named is not None:
        return str(named), None
    ref = query.get("ref")
    if not ref:
        return None, None
    key = store.key_of(ref)
    if key is None:
        return None, None
    cut = query.get("cut")
    if cut is None:
        return key, key
    try:
        length = int(cut)
    except ValueError:
        return None, None
    branch = key[:length]
    if length <= 0 or (length < len(key) and not key.startswith(KEY_DELIM, length)):
        return None, None
    return branch, key
