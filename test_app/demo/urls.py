"""URLs of the demo pages."""

from __future__ import annotations

from django.urls import path

from demo import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("demo/cold-warm/<int:pk>/", views.cold_warm, name="cold_warm"),
    path("demo/product/<int:pk>/", views.product_detail, name="product"),
]
