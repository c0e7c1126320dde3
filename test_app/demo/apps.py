"""App configuration of the demo app."""

from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The keyedcache demo app."""

    name = "demo"
    verbose_name = "keyedcache demo"
    default_auto_field = "django.db.models.BigAutoField"
