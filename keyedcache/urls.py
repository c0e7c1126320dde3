"""PLACEHOLDER dashboard URLs and views (stats, key lookup, delete) until the real one lands."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_http_methods

from keyedcache.stats import counters
from keyedcache.store import cache_delete, default_cache

_MISS = object()


def _context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    return {**admin.site.each_context(request), "title": title, **extra}


@staff_member_required
def stats_page(request: HttpRequest) -> HttpResponse:
    """Show this process's cache counters and the hit rate."""
    snapshot = counters.snapshot()
    calls = snapshot["calls"]
    rate = f"{100 * snapshot['hits'] / calls:.1f}%" if calls else "n/a"
    context = _context(request, "Cache statistics", counters=snapshot, hit_rate=rate)
    return render(request, "keyedcache/stats.html", context)


@staff_member_required
def view_page(request: HttpRequest) -> HttpResponse:
    """Look one key up: is it cached, and what is stored there."""
    key = request.GET.get("key", "").strip()
    found: Any = default_cache().get(key, _MISS) if key else _MISS
    context = _context(
        request,
        "Cache Keys",
        key=key,
        cached=found is not _MISS,
        value=repr(found)[:2000] if found is not _MISS else "",
    )
    return render(request, "keyedcache/view.html", context)


@staff_member_required
@require_http_methods(["GET", "POST"])
def delete_page(request: HttpRequest) -> HttpResponse:
    """Delete one key, and with `children` every key below it."""
    deleted: list[str] | None = None
    key = request.POST.get("key", "").strip() if request.method == "POST" else ""
    children = request.POST.get("children") == "on"
    if request.method == "POST":
        if key:
            deleted = cache_delete(key, children=children)
            messages.info(request, f"Deleted {len(deleted)} key(s) for {key!r}.")
        else:
            messages.error(request, "Enter a key to delete.")
    context = _context(request, "Delete cache keys", key=key, children=children, deleted=deleted)
    return render(request, "keyedcache/delete.html", context)


urlpatterns = [
    path("", stats_page, name="keyedcache_stats"),
    path("view/", view_page, name="keyedcache_view"),
    path("delete/", delete_page, name="keyedcache_delete"),
]
