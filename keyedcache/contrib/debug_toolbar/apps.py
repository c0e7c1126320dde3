"""The Django app config of keyedcache.contrib.debug_toolbar (its template lives in the app)."""

from django.apps import AppConfig


class DebugToolbarPanelConfig(AppConfig):
    """Ships KeyedCachePanel's template (add the app to INSTALLED_APPS)."""

    name = "keyedcache.contrib.debug_toolbar"
    # Not "debug_toolbar": that label is django-debug-toolbar's own.
    label = "keyedcache_debug_toolbar"
    verbose_name = "Keyed cache panel (django-debug-toolbar)"
