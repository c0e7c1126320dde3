"""URLs of the staff dashboard, which projects map at /cache/ (see docs/dashboard.md)."""

from __future__ import annotations

from django.urls import path

from keyedcache.views import delete_page, detail_page, stats_page, view_page

urlpatterns = [
    path("", stats_page, name="keyedcache_stats"),
    path("view/", view_page, name="keyedcache_view"),
    path("view/key/", detail_page, name="keyedcache_detail"),
    path("delete/", delete_page, name="keyedcache_delete"),
]
