"""Models the tests cache: Widget refreshes its cached copy on save, ManualWidget does not."""

from __future__ import annotations

from django.db import models

from keyedcache.models import CachedObjectMixin


class Widget(CachedObjectMixin, models.Model):
    """A model cached through CachedObjectMixin with the default refresh-on-save."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    key = models.CharField(max_length=100, unique=True)

    class Meta:
        app_label = "tests"

    def __str__(self) -> str:
        return self.name


class ManualWidget(CachedObjectMixin, models.Model):
    """Like Widget, but the cache is managed by hand (1.5 behaviour)."""

    cache_refresh_on_save = False

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    key = models.CharField(max_length=100, unique=True)

    class Meta:
        app_label = "tests"

    def __str__(self) -> str:
        return self.name
