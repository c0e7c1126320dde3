"""URLconf, views and toolbar callback for tests/test_debug_toolbar.py (a page of keyed calls)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.utils.html import escape

from keyedcache import cache_function, cache_get, cache_set, request_cache

#: A key part a page must show escaped, never as markup.
HOSTILE = "<script>alert(1)</script>"


def show_toolbar(request: HttpRequest) -> bool:
    """Every request of the tests gets the toolbar (no DEBUG, no INTERNAL_IPS needed)."""
    return True


@cache_function(60)
def price(product: int) -> str:
    """A memoized function the page calls once (a miss, then an execution)."""
    return f"{product * 1.5:.2f}"


def page(request: HttpRequest) -> HttpResponse:
    """Known keyed traffic: a hit, a miss, a request-scope hit, a memoized call."""
    cache_set("toolbar", "product", 1, value="Mug")
    price.invalidate(7)
    with request_cache():
        name = cache_get("toolbar", "product", 1)  # a hit (the scope reads the backend)
        cache_get("toolbar", "product", 1)  # a request-scope hit
    cache_get("toolbar", HOSTILE, default=None)  # a miss, with markup in the key
    cost = price(7)  # a memoized miss, then one execution
    body = f"<h1>{escape(name)}</h1><p>price {escape(cost)}</p>"
    return HttpResponse(
        f"<!DOCTYPE html><html><head><title>Shop</title></head><body>{body}</body></html>"
    )


# The toolbar's own URLs, whatever DEBUG is (debug_toolbar_urls() adds them only with DEBUG).
urlpatterns = [
    path("page/", page, name="toolbar_page"),
    path("__debug__/", include("debug_toolbar.urls")),
]
