"""A deliberately slow report, memoized with keyedcache's cache_function."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from django.utils import timezone

from demo.models import Product
from keyedcache import cache_function

#: How long the report pretends to work, in seconds.
REPORT_DELAY = 0.5
TAX_RATE = Decimal("0.20")
CENT = Decimal("0.01")


@cache_function(60)
def slow_price_report(product_id: int) -> dict[str, Any]:
    """Return a price report for one product, taking about half a second to compute."""
    time.sleep(REPORT_DELAY)
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        return {"product_id": product_id, "found": False}
    return {
        "product_id": product.pk,
        "found": True,
        "name": product.name,
        "price": str(product.price),
        "price_with_tax": str((product.price * (1 + TAX_RATE)).quantize(CENT)),
        "computed_at": timezone.now().isoformat(timespec="milliseconds"),
    }
