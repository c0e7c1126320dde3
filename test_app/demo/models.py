"""The demo's Product model, cached through keyedcache's CachedObjectMixin."""

from __future__ import annotations

from django.db import models
from django.urls import reverse

from keyedcache.models import CachedObjectMixin


class Product(CachedObjectMixin, models.Model):
    """A product; saving it replaces its cached copy under `Product::<pk>`."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        """The demo page of this product."""
        return reverse("demo:product", args=[self.pk])
