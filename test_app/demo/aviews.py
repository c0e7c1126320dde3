"""The demo's async pages: a product through keyedcache, and the same through Django's cache."""

from __future__ import annotations

from django.core.cache import cache
from django.http import Http404, HttpRequest, JsonResponse

from demo.models import Product
from keyedcache.amodels import afind_by_id

GROUP_KEY = Product.__name__


#: The products of the several-fragment page.
PAGE_OF_PRODUCTS = (1, 2, 3, 4, 5)


def _fields(product: Product) -> dict[str, object]:
    return {"pk": product.pk, "name": product.name, "price": str(product.price)}


def _shown(product: Product) -> JsonResponse:
    return JsonResponse(_fields(product))


async def no_cache_json(request: HttpRequest) -> JsonResponse:
    """A page of the same size that reads no cache: the ceiling Django's handler sets."""
    return JsonResponse({"pk": 1, "name": "Cup 1", "price": "7.50"})


async def product_json(request: HttpRequest, pk: int) -> JsonResponse:
    """A product read through keyedcache's async API (no thread on locmem and Redis)."""
    product = await afind_by_id(Product, GROUP_KEY, pk)
    if product is None:
        raise Http404(f"No product {pk}")
    return _shown(product)


async def products_json(request: HttpRequest) -> JsonResponse:
    """Five products read through keyedcache: a page made of several cached fragments."""
    found = [await afind_by_id(Product, GROUP_KEY, pk) for pk in PAGE_OF_PRODUCTS]
    return JsonResponse({"products": [_fields(p) for p in found if p is not None]})


async def products_json_django(request: HttpRequest) -> JsonResponse:
    """The same five products through Django's cache API."""
    found = [await _django_product(pk) for pk in PAGE_OF_PRODUCTS]
    return JsonResponse({"products": [_fields(p) for p in found if p is not None]})


async def _django_product(pk: int) -> Product | None:
    key = f"django-{GROUP_KEY}-{pk}"
    product = await cache.aget(key)
    if product is None:
        product = await Product.objects.filter(pk=pk).afirst()
        if product is not None:
            await cache.aset(key, product)
    return product  # type: ignore[no-any-return]


async def product_json_django(request: HttpRequest, pk: int) -> JsonResponse:
    """The same page on Django's own cache API (`await cache.aget`: a thread per call)."""
    product = await _django_product(pk)
    if product is None:
        raise Http404(f"No product {pk}")
    return _shown(product)
