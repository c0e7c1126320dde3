"""WSGI entry point of the keyedcache demo project (`demo_site.wsgi:application`)."""

from __future__ import annotations

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

from demo_site import ensure_keyedcache_importable

ensure_keyedcache_importable()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

application: WSGIHandler = get_wsgi_application()
