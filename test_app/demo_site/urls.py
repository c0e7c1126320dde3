"""URLs of the demo project: /admin/, the keyedcache dashboard at /cache/, and the demo pages."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("cache/", include("keyedcache.urls")),
    path("", include("demo.urls")),
]
