"""Settings of the ASGI benchmark: the demo's, on a scratch SQLite file, without debug."""

from __future__ import annotations

import os

from demo_site.settings import *  # noqa: F403 - the demo's settings, then these changes

DEBUG = False
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["KEYEDCACHE_BENCH_DB"],
    }
}
