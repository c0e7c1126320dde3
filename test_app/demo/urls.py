"""URLs of the demo pages."""

from __future__ import annotations

from django.urls import path

from demo import aviews, views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("demo/cold-warm/<int:pk>/", views.cold_warm, name="cold_warm"),
    path("demo/product/<int:pk>/", views.product_detail, name="product"),
    path("demo/async/product/<int:pk>/", aviews.product_json, name="product_json"),
    path("demo/async/products/", aviews.products_json, name="products_json"),
    path("demo/async/no-cache/", aviews.no_cache_json, name="no_cache_json"),
    path("demo/async/products-django/", aviews.products_json_django, name="products_json_django"),
    path(
        "demo/async/product-django/<int:pk>/",
        aviews.product_json_django,
        name="product_json_django",
    ),
]
