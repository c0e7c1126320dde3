"""System checks in keyedcache.checks: bad alias, namespace, key room and key function."""

from __future__ import annotations

import pytest
from django.core.checks import Error, Tags, Warning, run_checks
from django.test import override_settings
from django.test.utils import isolate_apps

from keyedcache.checks import check_keyedcache_settings

LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
PYMEMCACHE = "django.core.cache.backends.memcached.PyMemcacheCache"


def locmem(**options):
    return {"BACKEND": LOCMEM, "LOCATION": "keyedcache-checks", **options}


def custom_key_func(key, key_prefix, version):
    return f"custom|{key_prefix}|{version}|{key}"


def ids(messages):
    return [m.id for m in messages]


def keyedcache_messages(messages):
    return [m for m in messages if (m.id or "").startswith("keyedcache.")]


TWO_ALIASES = {"default": locmem(), "other": locmem(LOCATION="keyedcache-checks-2")}


@pytest.fixture(autouse=True)
def known_caches():
    """Start every test from a correct two-alias locmem setup; tests override from there."""
    with override_settings(CACHES=TWO_ALIASES):
        yield


class TestCorrectConfig:
    def test_defaults_give_no_messages(self):
        assert check_keyedcache_settings() == []

    @override_settings(KEYEDCACHE_ALIAS="other", KEYEDCACHE_NAMESPACE="my-app.cache_v2")
    def test_explicit_alias_and_namespace_give_no_messages(self):
        assert check_keyedcache_settings() == []

    @override_settings(CACHES={"default": locmem(KEY_PREFIX="p" * 100)})
    def test_moderate_key_prefix_gives_no_messages(self):
        assert check_keyedcache_settings() == []

    def test_registered_with_django_check_framework(self):
        # Run through Django's framework: the check is registered (apps.ready)
        # under the caches tag and reports nothing for a correct setup.
        assert keyedcache_messages(run_checks(tags=[Tags.caches])) == []


class TestAlias:
    @override_settings(KEYEDCACHE_ALIAS="nope")
    def test_unknown_alias_is_e001_naming_the_setting(self):
        messages = check_keyedcache_settings()
        assert ids(messages) == ["keyedcache.E001"]
        assert isinstance(messages[0], Error)
        assert "KEYEDCACHE_ALIAS" in messages[0].msg
        assert "'nope'" in messages[0].msg
        assert "default" in messages[0].msg  # lists the aliases that do exist

    @override_settings(KEYEDCACHE_ALIAS=None)
    def test_non_string_alias_is_e001(self):
        assert ids(check_keyedcache_settings()) == ["keyedcache.E001"]

    @override_settings(KEYEDCACHE_ALIAS="nope")
    def test_e001_is_reported_by_run_checks(self):
        assert ids(keyedcache_messages(run_checks(tags=[Tags.caches]))) == ["keyedcache.E001"]


class TestNamespace:
    @pytest.mark.parametrize(
        "namespace",
        ["", "has space", "a:b", "a~b", "tab\there", "ünïcode", 5, None],
        ids=["empty", "space", "colon", "tilde", "control", "non-ascii", "int", "none"],
    )
    def test_bad_namespace_is_e002(self, namespace):
        with override_settings(KEYEDCACHE_NAMESPACE=namespace):
            messages = check_keyedcache_settings()
        assert ids(messages) == ["keyedcache.E002"]
        assert isinstance(messages[0], Error)
        assert "KEYEDCACHE_NAMESPACE" in messages[0].msg


class TestLoading:
    @override_settings(CACHES={"default": {"BACKEND": "no.such.CacheBackend"}})
    def test_unloadable_alias_is_e003(self):
        messages = check_keyedcache_settings()
        assert ids(messages) == ["keyedcache.E003"]
        assert "'default'" in messages[0].msg


class TestKeyRoom:
    @override_settings(CACHES={"default": locmem(KEY_PREFIX="p" * 200)})
    def test_key_prefix_leaving_no_room_is_e004(self):
        messages = check_keyedcache_settings()
        assert ids(messages) == ["keyedcache.E004"]
        assert isinstance(messages[0], Error)
        assert "KEY_PREFIX" in messages[0].msg

    @override_settings(
        CACHES={"default": locmem(KEY_PREFIX="p" * 100)}, KEYEDCACHE_NAMESPACE="n" * 100
    )
    def test_prefix_and_namespace_together_leaving_no_room_is_e004(self):
        assert ids(check_keyedcache_settings()) == ["keyedcache.E004"]


class TestKeyFunction:
    @override_settings(CACHES={"default": locmem(KEY_FUNCTION=custom_key_func)})
    def test_custom_key_function_on_locmem_is_w001(self):
        messages = check_keyedcache_settings()
        assert ids(messages) == ["keyedcache.W001"]
        assert isinstance(messages[0], Warning)
        assert "KEY_FUNCTION" in messages[0].msg

    @override_settings(CACHES={"default": locmem(KEY_FUNCTION="tests.test_checks.custom_key_func")})
    def test_custom_key_function_given_as_dotted_path_is_w001(self):
        assert ids(check_keyedcache_settings()) == ["keyedcache.W001"]

    @override_settings(
        CACHES={
            "default": {
                "BACKEND": PYMEMCACHE,
                "LOCATION": "127.0.0.1:9",
                "KEY_FUNCTION": custom_key_func,
            }
        }
    )
    def test_custom_key_function_on_memcached_is_not_w001(self):
        # memcached never lists keys, so a custom KEY_FUNCTION costs nothing there.
        assert check_keyedcache_settings() == []


class TestRedisFamilyOnTheGenericAdapter:
    # The check reads BACKEND and OPTIONS from settings only: no cache object, no server.
    @pytest.mark.parametrize(
        ("backend_path", "options", "named"),
        [
            (
                "django_redis.cache.RedisCache",
                {"CLIENT_CLASS": "django_redis.client.HerdClient"},
                "HerdClient",
            ),
            (
                "django_redis.cache.RedisCache",
                {"CLIENT_CLASS": "django_redis.client.ShardClient"},
                "ShardClient",
            ),
            (
                "django_valkey.cache.ValkeyCache",
                {"CLIENT_CLASS": "django_valkey.client.HerdClient"},
                "HerdClient",
            ),
            ("redis_cache.RedisCache", {}, "no native adapter"),
            ("django_valkey.async_cache.cache.AsyncValkeyCache", {}, "no native adapter"),
        ],
    )
    def test_a_redis_family_alias_on_the_generic_adapter_is_w002(
        self, backend_path, options, named
    ):
        config = {"BACKEND": backend_path, "LOCATION": "x", "OPTIONS": options}
        with override_settings(CACHES={**TWO_ALIASES, "sessions": config}):
            from keyedcache.checks import check_generic_redis_aliases

            messages = check_generic_redis_aliases()
        assert ids(messages) == ["keyedcache.W002"]
        assert isinstance(messages[0], Warning)
        assert "'sessions'" in messages[0].msg and named in messages[0].msg
        assert "cache_keys()" in messages[0].msg  # says what will not work

    @pytest.mark.parametrize(
        ("backend_path", "options"),
        [
            ("django.core.cache.backends.redis.RedisCache", {}),
            ("django_redis.cache.RedisCache", {}),
            (
                "django_redis.cache.RedisCache",
                {"CLIENT_CLASS": "django_redis.client.SentinelClient"},
            ),
            ("django_valkey.cache.ValkeyCache", {}),
            (
                "django_valkey.cache.ValkeyCache",
                {"CLIENT_CLASS": "django_valkey.client.SentinelClient"},
            ),
            ("django_valkey.cluster_cache.cache.ClusterValkeyCache", {}),
        ],
    )
    def test_native_backends_are_not_w002(self, backend_path, options):
        from keyedcache.checks import check_generic_redis_aliases

        config = {"BACKEND": backend_path, "LOCATION": "x", "OPTIONS": options}
        with override_settings(CACHES={**TWO_ALIASES, "redis": config}):
            assert check_generic_redis_aliases() == []


class TestCachedModelNames:
    """keyedcache.W003: two cached models whose keys would be the same."""

    def test_the_test_models_give_no_warning(self):
        from keyedcache.checks import check_cached_model_names

        assert check_cached_model_names() == []
        assert not [m for m in run_checks(tags=[Tags.models]) if m.id == "keyedcache.W003"]

    def test_two_cached_models_named_alike_in_two_apps_are_w003(self):
        with isolate_apps("tests", "keyedcache.contrib.keyval") as registry:
            self.check_two_models_named_alike(registry)

    def check_two_models_named_alike(self, registry):
        from django.db import models

        from keyedcache.checks import check_cached_model_names
        from keyedcache.models import CachedObjectMixin

        class Product(CachedObjectMixin, models.Model):
            class Meta:
                app_label = "tests"

        class Product2(CachedObjectMixin, models.Model):
            class Meta:
                app_label = "keyedcache_keyval"

        Product2.__name__ = "Product"  # a model class of the same name in another app

        class Plain(models.Model):  # not cached: its name is nobody's business
            class Meta:
                app_label = "keyedcache_keyval"

        configs = [registry.get_app_config(label) for label in ("tests", "keyedcache_keyval")]
        (message,) = check_cached_model_names(app_configs=configs)
        assert isinstance(message, Warning) and message.id == "keyedcache.W003"
        assert "keyedcache_keyval.Product2" in message.msg and "tests.Product" in message.msg
        assert "'Product'::<pk>" in message.msg and "cache_group_key" in message.hint

        Product2.cache_group_key = "keyval.Product"  # the remedy the hint gives
        assert check_cached_model_names(app_configs=configs) == []
