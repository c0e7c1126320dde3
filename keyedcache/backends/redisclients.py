"""Adapters for django-redis and django-valkey: the Redis adapter on their clients and codecs."""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable
from importlib import import_module
from typing import Any

from keyedcache.backends.base import Timeout
from keyedcache.backends.redis import RedisAdapter
from keyedcache.backends.stamped import StampedAdapter

# Both libraries hang a "client" object off the cache (DefaultClient, its
# Sentinel subclass, the cluster client) that hands out raw redis-py/valkey-py
# clients with get_client(write=...) and owns the serializer and compressor
# chain as encode()/decode(). Going through those keeps every value readable
# by the library's own cache.get, whatever SERIALIZER/COMPRESSOR the site set.


class LibraryClientAdapter(RedisAdapter):
    """A Redis-protocol backend whose cache object exposes a django-redis style client."""

    name = "django-redis"

    def _connect(self, write: bool) -> Any:
        return self.cache.client.get_client(write=write)  # type: ignore[attr-defined]

    def _dumps(self) -> Any:
        return self._codec()[0]

    def _loads(self) -> Any:
        return self._codec()[1]

    def plain_pickles(self) -> bool:
        client = self.cache.client  # type: ignore[attr-defined]
        pickled = "pickle" in type(client._serializer).__module__.rsplit(".", 1)[-1]
        return pickled and type(client._compressor).__name__ == "IdentityCompressor"

    def _codec(self) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
        """(encode, decode) for this alias, chosen once from the library's client."""
        try:
            return self._chosen_codec  # type: ignore[has-type, no-any-return]
        except AttributeError:
            self._chosen_codec = codec_for(self.cache.client)  # type: ignore[attr-defined]
            return self._chosen_codec


def _plain_decode(raw: Any) -> Any:
    """Decode what a pickle serializer without compressor stored: a raw int, or a pickle."""
    if isinstance(raw, int) or raw.isdigit():  # a token (pickles never start with a digit)
        return int(raw)
    return pickle.loads(raw)


def codec_for(client: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(encode, decode) of keyedcache's stored values on a django-redis/django-valkey client.

    With a pickle serializer: the client's own encode/decode, so its
    PICKLE_VERSION and COMPRESSOR apply and the library's cache.get reads every
    keyedcache key. JSON, msgpack and msgspec cannot carry a keyedcache record
    (a tuple holding bytes: JSON refuses the bytes, msgpack turns the tuple
    into a list), so with those the records are pickled by keyedcache and then
    passed through the library's compressor; tokens, which are plain ints, are
    stored as the numbers the library itself would store.
    """
    serializer = client._serializer
    compressor = client._compressor
    if "pickle" in type(serializer).__module__.rsplit(".", 1)[-1]:
        if type(compressor).__name__ != "IdentityCompressor":
            return client.encode, client.decode
        # No compressor: the same bytes the library's decode would take, read
        # without its int/float parsing attempts (an exception per record).
        return client.encode, _plain_decode
    library = type(client).__module__.split(".", 1)[0]
    compressor_error = import_module(f"{library}.exceptions").CompressorError

    def encode(value: Any) -> Any:
        if type(value) is int:
            return value
        return compressor.compress(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))

    def decode(raw: Any) -> Any:
        if isinstance(raw, int) or raw.isdigit():  # a token (pickles never start with a digit)
            return int(raw)
        with contextlib.suppress(compressor_error):  # short values are stored uncompressed
            raw = compressor.decompress(raw)
        return pickle.loads(raw)

    return encode, decode


class DjangoRedisAdapter(LibraryClientAdapter):
    """django_redis.cache.RedisCache with its default or Sentinel client."""

    name = "django-redis"


class ValkeyAdapter(LibraryClientAdapter):
    """django_valkey.cache.ValkeyCache with its default or Sentinel client."""

    name = "django-valkey"


class ValkeyClusterAdapter(LibraryClientAdapter):
    """django_valkey's ClusterValkeyCache: one client that routes each key to its slot.

    Single-key commands, pipelines of them, SCAN (every primary, one after
    another), DEL/UNLINK of many keys (split per slot by the client) and the
    one-key Lua scripts of locks all work as they are. A multi-key MGET must not
    cross slots, so reads split it per slot: a record and its tokens then come
    from up to that many nodes, read one after another without a common
    snapshot. That is still safe, because a record is valid only while every
    token it was stamped with is unchanged: any interleaving with an
    invalidation gives either the value as it was before it, or a miss.
    """

    name = "valkey-cluster"

    def _mget_raw(self, client: Any, made_keys: list[str]) -> list[Any]:
        return client.mget_nonatomic(made_keys)  # type: ignore[no-any-return]


class GenericClusterAdapter(StampedAdapter):
    """The generic adapter on ClusterValkeyCache (a custom KEY_FUNCTION hides made keys).

    The cluster cache's set_many is an MSET split per slot: it takes no timeout
    (its second argument is the key version), so entries would be written under
    the wrong version and never expire. Writes go key by key instead.
    """

    def raw_set_many(self, values: dict[str, Any], timeout: Timeout) -> None:
        cache = self.cache
        for stored, value in values.items():
            cache.set(stored, value, timeout)
