"""The Django app config: registers the system checks."""

from django.apps import AppConfig


class KeyedCacheConfig(AppConfig):
    """keyedcache's app: add "keyedcache" to INSTALLED_APPS for checks, dashboard and commands."""

    name = "keyedcache"
    verbose_name = "Keyed cache"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from keyedcache import checks  # noqa: F401  (registers the checks)
