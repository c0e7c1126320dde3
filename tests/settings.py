"""Django settings for the test suite; child processes get the parent's setup through env vars.

Environment variables (set by `tests.conftest.BackendConfig.env()` for child processes):

- KEYEDCACHE_TEST_TMP: the session's scratch directory (test databases, file caches, logs).
- KEYEDCACHE_TEST_CACHES: JSON for CACHES (default: one locmem alias).
- KEYEDCACHE_TEST_CACHE_DB: database alias the `django_cache` app (DatabaseCache) is routed to.
- KEYEDCACHE_TEST_DB_NAME: NAME of the default (SQLite) database, the parent's test database.
- KEYEDCACHE_TEST_PG: "1"/"0" says whether the "pg" alias exists (no probe in children).
- KEYEDCACHE_TEST_PG_NAME: NAME of the "pg" database, the parent's test database.
- KEYEDCACHE_TEST_SETTINGS: JSON object of extra settings (e.g. KEYEDCACHE_ALIAS).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import django

ROOT = Path(__file__).resolve().parent.parent

# The scratch directory of this test session: created by tests/conftest.py in the
# pytest process and removed at its end; children inherit it through the env.
TEST_TMP = os.environ.get("KEYEDCACHE_TEST_TMP") or os.path.join(
    tempfile.gettempdir(), f"keyedcache-tests-{os.getpid()}"
)
# The file the test runner creates the default test database in (a file, not
# ":memory:", so that child processes can open the very same database).
TEST_DB_PATH = os.path.join(TEST_TMP, "test-db.sqlite3")

PG_HOST = "127.0.0.1"
PG_PORT = 5432
# Per session, so that two test runs on one machine never share (or drop) a database.
PG_TEST_NAME = os.environ.get("KEYEDCACHE_TEST_PG_NAME") or f"test_keyedcache_{os.getpid()}"


def postgres_reachable(timeout: float = 0.5) -> bool:
    """Tell whether something accepts connections on the PostgreSQL port."""
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=timeout):
            return True
    except OSError:
        return False


if "KEYEDCACHE_TEST_PG" in os.environ:
    HAVE_POSTGRES = os.environ["KEYEDCACHE_TEST_PG"] == "1"
else:
    HAVE_POSTGRES = postgres_reachable()

SECRET_KEY = "keyedcache-tests-not-secret"
DEBUG = False
USE_TZ = True
# No background stats ticker in tests: test_stats.py turns it on where it tests
# it, and child workers stay single-threaded (tests/procs.py checks that).
KEYEDCACHE_STATS_FLUSH_INTERVAL = None
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "keyedcache",
    "keyedcache.contrib.keyval",
    "tests",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

STATIC_URL = "/static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # A child process opens the parent's test database directly.
        "NAME": os.environ.get("KEYEDCACHE_TEST_DB_NAME") or os.path.join(TEST_TMP, "db.sqlite3"),
        "TEST": {"NAME": TEST_DB_PATH},
        "OPTIONS": {
            # Parent and children write the same file: wait for a lock instead of
            # failing, and let readers and a writer work at the same time (WAL).
            "timeout": 30,
        },
    },
}
if django.VERSION >= (5, 1):
    # A test database need not survive a power cut: no fsync per commit.
    # (init_command for SQLite arrived in Django 5.1; 4.2 runs without it.)
    DATABASES["default"]["OPTIONS"]["init_command"] = (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
    )
if HAVE_POSTGRES:
    DATABASES["pg"] = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": PG_HOST,
        "PORT": PG_PORT,
        "USER": "postgres",
        "PASSWORD": "",
        # In the pytest process the runner creates and drops TEST NAME; a child
        # gets that name as NAME through KEYEDCACHE_TEST_PG_NAME.
        "NAME": os.environ.get("KEYEDCACHE_TEST_PG_NAME") or "keyedcache",
        # A test database need not survive a crash: do not wait for the WAL flush.
        "OPTIONS": {"options": "-c synchronous_commit=off"},
        "TEST": {"NAME": PG_TEST_NAME},
    }

DATABASE_ROUTERS = ["tests.settings.CacheTableRouter"]

#: Database alias the DatabaseCache table lives in (see CacheTableRouter).
KEYEDCACHE_TEST_CACHE_DB = os.environ.get("KEYEDCACHE_TEST_CACHE_DB", "default")


class CacheTableRouter:
    """Route Django's DatabaseCache (app label `django_cache`) to KEYEDCACHE_TEST_CACHE_DB."""

    app_label = "django_cache"

    def _alias(self) -> str:
        from django.conf import settings

        return getattr(settings, "KEYEDCACHE_TEST_CACHE_DB", "default")

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return self._alias() if model._meta.app_label == self.app_label else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return self._alias() if model._meta.app_label == self.app_label else None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label == self.app_label:
            return db == self._alias()
        return None


def default_caches() -> dict[str, dict[str, Any]]:
    """The CACHES of a plain test run: one locmem alias."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "keyedcache-tests",
        }
    }


CACHES = (
    json.loads(os.environ["KEYEDCACHE_TEST_CACHES"])
    if os.environ.get("KEYEDCACHE_TEST_CACHES")
    else default_caches()
)

if os.environ.get("KEYEDCACHE_TEST_SETTINGS"):
    globals().update(json.loads(os.environ["KEYEDCACHE_TEST_SETTINGS"]))
