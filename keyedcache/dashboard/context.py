"""What every dashboard page shares: its template context and its links with query strings."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse

from keyedcache.dashboard.access import can_delete
from keyedcache.registry import default_cache


def url(name: str, **params: Any) -> str:
    """reverse(name) with a query string of the params that are not None."""
    query = {k: v for k, v in params.items() if v is not None}
    path = reverse(name)
    return f"{path}?{urlencode(query)}" if query else path


def page_context(request: HttpRequest, title: str, tab: str, **extra: Any) -> dict[str, Any]:
    """The admin's context plus what the dashboard's base template needs, and `extra`."""
    store = default_cache()
    return {
        **admin.site.each_context(request),
        # The pages need their width for tables and the chart.
        "is_nav_sidebar_enabled": False,
        "title": title,
        "tab": tab,
        "can_delete": can_delete(request),
        "alias": store.alias,
        "caching_on": store.enabled,
        **extra,
    }
