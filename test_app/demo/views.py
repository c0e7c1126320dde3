"""The demo pages: product list, cold/warm timing of a memoized report, a cached product."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

import keyedcache
from demo.forms import PriceForm
from demo.models import Product
from demo.reports import slow_price_report
from keyedcache.counters import counters
from keyedcache.dashboard.secrets import mask_location
from keyedcache.models import find_by_id

# find_by_id caches under (groupkey, pk). Using the class name as the group key
# makes that the very key CachedObjectMixin refreshes when a Product is saved
# (`Product::<pk>`); any other group key would keep serving the old copy.
GROUP_KEY = Product.__name__


def cache_backend(request: HttpRequest) -> str:
    """Describe the cache keyedcache uses here: its alias and backend class for everyone;
    the location (passwords masked) only for staff, as on the dashboard."""
    alias = getattr(settings, "KEYEDCACHE_ALIAS", "default")
    config = settings.CACHES[alias]
    backend = str(config.get("BACKEND", "?")).rsplit(".", 1)[-1]
    user = getattr(request, "user", None)
    location = config.get("LOCATION")
    if location and user is not None and user.is_active and user.is_staff:
        return f"{alias}: {backend} ({mask_location(location)})"
    return f"{alias}: {backend}"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def index(request: HttpRequest) -> HttpResponse:
    """List the products with links to their demo pages, and show the cache in use."""
    context: dict[str, Any] = {
        "products": Product.objects.all(),
        "backend": cache_backend(request),
        "enabled": keyedcache.cache_enabled(),
        "counters": counters.snapshot(),
    }
    return render(request, "demo/index.html", context)


def cold_warm(request: HttpRequest, pk: int) -> HttpResponse:
    """Forget the product's report, then time a cold (computing) and a warm (cached) call."""
    product = get_object_or_404(Product, pk=pk)
    slow_price_report.invalidate(pk)  # type: ignore[attr-defined]
    start = time.perf_counter()
    report = slow_price_report(pk)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    warm_report = slow_price_report(pk)
    warm = time.perf_counter() - start
    context = {
        "product": product,
        "report": report,
        "same_result": warm_report == report,
        "cold_ms": _ms(cold),
        "warm_ms": _ms(warm),
        "ratio": round(cold / warm) if warm > 0 else None,
        "key": slow_price_report.key(pk),  # type: ignore[attr-defined]
        "backend": cache_backend(request),
    }
    return render(request, "demo/cold_warm.html", context)


@require_http_methods(["GET", "POST"])
def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a product read through the cache; POST changes its price (and so the cached copy)."""
    if request.method == "POST":
        stored = get_object_or_404(Product, pk=pk)
        form = PriceForm(request.POST, instance=stored)
        if form.is_valid():
            form.save()  # post_save (on commit) replaces the cached Product::<pk>
            slow_price_report.invalidate(pk)  # type: ignore[attr-defined]
            messages.success(
                request,
                f"Saved {stored.name} at {stored.price}. The cached copy was replaced on save.",
            )
            return redirect("demo:product", pk=pk)
    else:
        form = None
    was_cached = keyedcache.is_cached(GROUP_KEY, pk)
    product = find_by_id(Product, GROUP_KEY, pk)
    if product is None:
        raise Http404(f"No product {pk}")
    context = {
        "product": product,
        "was_cached": was_cached,
        "key": keyedcache.cache_key(GROUP_KEY, pk),
        "form": form if form is not None else PriceForm(instance=product),
        "backend": cache_backend(request),
    }
    return render(request, "demo/product.html", context)
