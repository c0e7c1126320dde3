"""ASGI entry point of the keyedcache demo project (`demo_site.asgi:application`)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler

from demo_site import ensure_keyedcache_importable

ensure_keyedcache_importable()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

application: ASGIHandler = get_asgi_application()
