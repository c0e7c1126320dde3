"""The Django app config of keyedcache.contrib.prometheus: registers the collector once."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks


class PrometheusConfig(AppConfig):
    """Exports keyedcache's counters on prometheus_client's default REGISTRY when ready."""

    name = "keyedcache.contrib.prometheus"
    label = "keyedcache_prometheus"
    verbose_name = "Keyed cache metrics (Prometheus)"

    def ready(self) -> None:
        checks.register(check_client_installed)
        from keyedcache.contrib.prometheus import collector

        if collector.client_installed():
            collector.register()  # idempotent: a second ready() registers nothing


def check_client_installed(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Error keyedcache.E101 when the app is installed but prometheus-client is not."""
    from keyedcache.contrib.prometheus.collector import client_installed

    if client_installed():
        return []
    return [
        checks.Error(
            "keyedcache.contrib.prometheus is in INSTALLED_APPS but prometheus-client is "
            "not installed, so no keyedcache metrics are exported",
            hint="pip install 'django-keyedcache[prometheus]' (or prometheus-client)",
            id="keyedcache.E101",
        )
    ]
