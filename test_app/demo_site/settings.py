"""Settings of the keyedcache demo: SQLite, locmem unless KEYEDCACHE_DEMO_CACHE picks another."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from demo_site.cache_config import ENV_VAR, cache_from_env

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state of the demo that must not be committed (gitignored).
STATE_DIR = BASE_DIR / ".demo"


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, or a random key kept in test_app/.demo/ so sessions survive restarts."""
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = STATE_DIR / "secret_key"
    try:
        return path.read_text().strip() or _new_key(path)
    except FileNotFoundError:
        return _new_key(path)


def _new_key(path: Path) -> str:
    key = secrets.token_urlsafe(50)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key)
        path.chmod(0o600)
    except OSError:
        pass  # read-only checkout: a per-process key still works
    return key


SECRET_KEY = _secret_key()
# A demo: debug pages on, unless KEYEDCACHE_DEMO_DEBUG=0.
DEBUG = os.environ.get("KEYEDCACHE_DEMO_DEBUG", "1").lower() not in ("0", "false", "no", "off")
# Debug pages list the settings: mask the passwords in cache locations too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "demo_site.reporting.MaskingFilter"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "keyedcache",
    "keyedcache.contrib.keyval",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"

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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}

# KEYEDCACHE_DEMO_CACHE picks the backend (see demo_site/cache_config.py);
# every choice gets TIMEOUT 300 and KEY_PREFIX "demo".
CACHES = {"default": cache_from_env(os.environ.get(ENV_VAR))}
KEYEDCACHE_ALIAS = "default"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "admin:login"
