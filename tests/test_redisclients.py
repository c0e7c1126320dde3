"""django-redis and django-valkey adapters under each serializer and compressor a site may set."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test.utils import override_settings

import keyedcache
from keyedcache import cache_delete, cache_function, cache_get, cache_keys, cache_set
from keyedcache.counters import counters
from tests.servers import RedisServer

pytestmark = pytest.mark.servers

LIBRARIES = {
    "django-redis": ("django_redis.cache.RedisCache", "redis", "django_redis"),
    "django-valkey": ("django_valkey.cache.ValkeyCache", "valkey", "django_valkey"),
}
CODECS = [
    ("pickle", "identity"),
    ("pickle", "zlib"),
    ("json", "identity"),
    ("json", "zlib"),
]


def _options(package: str, serializer: str, compressor: str) -> dict[str, Any]:
    serializers = {"pickle": "PickleSerializer", "json": "JSONSerializer"}
    compressors = {"identity": "IdentityCompressor", "zlib": "ZlibCompressor"}
    return {
        "SERIALIZER": f"{package}.serializers.{serializer}.{serializers[serializer]}",
        "COMPRESSOR": f"{package}.compressors.{compressor}.{compressors[compressor]}",
    }


@pytest.fixture(params=[(lib, *codec) for lib in LIBRARIES for codec in CODECS], ids=str)
def library_alias(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[str]:
    library, serializer, compressor = request.param
    backend, scheme, package = LIBRARIES[library]
    config = {
        "BACKEND": backend,
        "LOCATION": f"{scheme}://{redis_server.location}/2",
        "KEY_PREFIX": f"codec-{serializer}-{compressor}",
        "OPTIONS": _options(package, serializer, compressor),
    }
    with override_settings(CACHES={"default": config}):
        keyedcache.keyedcache_configure()
        yield serializer
        caches["default"].clear()


def test_every_operation_works_whatever_the_codec(library_alias: str) -> None:
    errors = counters.snapshot()["errors"]
    runs: list[int] = []

    @cache_function(300)
    def cube(n: int) -> int:
        runs.append(n)
        return n**3

    big = "x" * 5000  # long enough for the compressor to compress it
    cache_set("codec", "a", value={"nested": [1, 2.5, None], "big": big})
    cache_set("codec", "a", "b", value=b"\x00bytes")
    assert cache_get("codec", "a") == {"nested": [1, 2.5, None], "big": big}
    assert cache_get("codec", "a", "b") == b"\x00bytes"
    assert sorted(cache_keys("codec::*")) == ["codec::a", "codec::a::b"]
    assert cube(3) == 27 and cube(3) == 27
    assert runs == [3]
    cache_delete("codec", children=True)
    assert cache_get("codec", "a", default="gone") == "gone"
    assert keyedcache.cache_delete_pattern("*") >= 1  # the memoized entry
    assert cube(3) == 27 and runs == [3, 3]
    assert counters.snapshot()["errors"] == errors  # no write was refused by the codec


PICKLED = [(lib, *codec) for lib in LIBRARIES for codec in CODECS if codec[0] == "pickle"]


@pytest.mark.parametrize("library_alias", PICKLED, indirect=True, ids=str)
def test_with_a_pickle_serializer_the_library_reads_keyedcache_records(library_alias: str) -> None:
    # The client's own encode/decode were used: its compressor and pickle
    # settings apply, and the library's cache.get reads the stored record.
    cache_set("shared", value="seen by the library")
    stored = keyedcache.default_cache().adapter.storage_key("shared")
    record = caches["default"].get(stored)
    assert isinstance(record, tuple) and record[2] == "shared"
