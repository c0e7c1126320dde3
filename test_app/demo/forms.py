"""The demo's form for changing a product's price."""

from __future__ import annotations

from django import forms

from demo.models import Product


class PriceForm(forms.ModelForm):  # type: ignore[type-arg]
    """Edit one product's price."""

    class Meta:
        model = Product
        fields = ["price"]
