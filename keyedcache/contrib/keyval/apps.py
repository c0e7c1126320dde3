"""The Django app config of keyedcache.contrib.keyval: registers its system checks."""

from django.apps import AppConfig


class KeyValConfig(AppConfig):
    """Persistent named key-value stores: add "keyedcache.contrib.keyval" to INSTALLED_APPS."""

    name = "keyedcache.contrib.keyval"
    # Not "keyval": that label is the natural one for other key-value apps
    # (django_keyval among them), and two apps may not share a label.
    label = "keyedcache_keyval"
    verbose_name = "Key-value stores"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from keyedcache.contrib.keyval import checks  # noqa: F401  (registers the checks)
