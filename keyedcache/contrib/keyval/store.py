"""KeyVal: a named store of picklable values under string keys, kept by the configured backend."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

from keyedcache.contrib.keyval.astore import AsyncKeyValMixin
from keyedcache.contrib.keyval.backends import Backend, get_backend
from keyedcache.contrib.keyval.limits import MAX_KEY_LENGTH, MAX_STORE_LENGTH
from keyedcache.entry import NO_VALUE

#: Pickle protocol of stored values: every supported Python reads it.
PICKLE_PROTOCOL = 5


class DisconnectedError(RuntimeError, NameError):
    """An operation on a KeyVal handle after its `disconnect()`.

    Also a NameError: django_keyval raised NameError there, and code written for
    it (its own command did) catches that.
    """


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 60 else f"{text[:40]!r}..."


def _check_text(label: str, text: Any, limit: int) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{label} must be a string, got {type(text).__name__} {text!r:.80}")
    if len(text) > limit:
        raise ValueError(
            f"{label} {_shown(text)} is {len(text)} characters long; the limit is {limit}."
        )
    if "\x00" in text:
        raise ValueError(
            f"{label} {_shown(text)} contains a NUL character, which databases such as "
            "PostgreSQL cannot store."
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"{label} {_shown(text)} is not valid Unicode (a lone surrogate)."
            ) from None


def check_store_name(name: Any) -> str:
    """Return `name` if it can name a store; raise TypeError/ValueError naming it if not."""
    _check_text("KeyVal store name", name, MAX_STORE_LENGTH)
    return str(name)


def dumps(store: str, key: str, value: Any) -> bytes:
    """Pickle `value` for `key`; raise TypeError naming both when it cannot be pickled."""
    try:
        return pickle.dumps(value, PICKLE_PROTOCOL)
    except Exception as cause:
        raise TypeError(
            f"KeyVal store {store!r} cannot store the value for key {key!r}: it cannot be "
            f"pickled ({type(cause).__name__}: {cause}). Nothing was written."
        ) from cause


class KeyVal(AsyncKeyValMixin):
    """A named, persistent key-value store: `KeyVal('settings').set('theme', 'dark')`.

    Keys are strings of up to 512 characters, store names up to 128; values
    are any picklable objects. Every read returns a fresh copy of the stored
    value. With the default `db://` backend, values live in the database and
    reads go through the keyedcache cache (see docs/keyval.md).

    `backend` picks a store URL for this handle instead of the setting
    KEYEDCACHE_KEYVAL_BACKEND.
    """

    __slots__ = ("_connected", "_name", "_url")

    def __init__(self, name: str, *, backend: str | None = None) -> None:
        self._name = check_store_name(name)
        # Resolved at each operation (a bad URL raises ImproperlyConfigured then),
        # so a handle made at import time follows the settings.
        self._url = backend
        self._connected = True

    @classmethod
    def connect(cls, name: str, *, backend: str | None = None) -> KeyVal:
        """Return a handle on the store `name` (the same as `KeyVal(name)`)."""
        return cls(name, backend=backend)

    @property
    def name(self) -> str:
        """The store's name."""
        return self._name

    def __repr__(self) -> str:
        state = "" if self._connected else " disconnected"
        return f"<KeyVal {self._name!r}{state}>"

    def _backend(self) -> Backend:
        if not self._connected:
            raise DisconnectedError(
                f"KeyVal {self._name!r} was disconnected; get a new handle with "
                f"KeyVal({self._name!r})."
            )
        return get_backend(self._url)

    def _key(self, key: Any) -> str:
        if type(key) is not str or len(key) > MAX_KEY_LENGTH or "\x00" in key or not key.isascii():
            _check_text(f"Key of KeyVal store {self._name!r}", key, MAX_KEY_LENGTH)
        return str(key)

    def disconnect(self) -> None:
        """Close this handle: every later operation on it raises DisconnectedError."""
        self._connected = False

    @classmethod
    def flush_all(cls, *, backend: str | None = None) -> None:
        """Delete every key of every store (of the configured backend, or of `backend`)."""
        get_backend(backend).flush_all()

    # -- single keys ----------------------------------------------------------

    def set(self, key: str, value: Any) -> bool:
        """Store `value` under `key`; True if the key was new, False if it was overwritten."""
        backend = self._backend()
        key = self._key(key)
        return backend.save(self._name, key, dumps(self._name, key, value))

    def get(self, key: str) -> Any:
        """Return the value stored under `key`; raise KeyError when there is none."""
        value = self.get_default(key, NO_VALUE)
        if value is NO_VALUE:
            raise KeyError(key)
        return value

    def get_default(self, key: str, default: Any = None) -> Any:
        """Return the value stored under `key`, or `default` when there is none."""
        data = self._backend().load(self._name, self._key(key))
        return default if data is None else pickle.loads(data)

    def exists(self, key: str) -> bool:
        """Tell whether the store has `key`."""
        return self._backend().load(self._name, self._key(key)) is not None

    def pop(self, key: str) -> Any:
        """Delete `key` and return its value, in one transaction; KeyError when there is none."""
        value = self.pop_default(key, NO_VALUE)
        if value is NO_VALUE:
            raise KeyError(key)
        return value

    def pop_default(self, key: str, default: Any = None) -> Any:
        """Delete `key` and return its value, in one transaction; `default` when there is none."""
        data = self._backend().take(self._name, self._key(key))
        return default if data is None else pickle.loads(data)

    def delete(self, key: str, ignore_keyerror: bool = False) -> bool:
        """Delete `key`; raise KeyError when absent, unless `ignore_keyerror`.

        Returns whether the key existed.
        """
        existed = self._backend().remove(self._name, self._key(key))
        if not existed and not ignore_keyerror:
            raise KeyError(key)
        return existed

    # -- the whole store --------------------------------------------------------

    def flush(self) -> int:
        """Delete every key of this store; return how many there were.

        (django_keyval's returned None: `keyedcache.contrib.keyval.compat.KeyVal` does.)
        """
        return self._backend().flush(self._name)

    def keys(self) -> list[str]:
        """The store's keys, sorted."""
        return self._backend().keys(self._name)

    def items(self) -> list[tuple[str, Any]]:
        """The store's (key, value) pairs, sorted by key."""
        return [(key, pickle.loads(data)) for key, data in self._backend().items(self._name)]

    def __len__(self) -> int:
        return self._backend().count(self._name)

    def __contains__(self, key: object) -> bool:
        return self.exists(key)  # type: ignore[arg-type]  # _key() rejects non-strings

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)
