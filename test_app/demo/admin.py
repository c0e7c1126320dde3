"""Admin registration of the demo's Product model."""

from __future__ import annotations

from django.contrib import admin

from demo.models import Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Products in the admin; saving here refreshes the cached copy too."""

    list_display = ("name", "slug", "price", "updated")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
