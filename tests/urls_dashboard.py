"""URLconf of the dashboard tests: the admin at /admin/ and keyedcache's dashboard at /cache/."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("cache/", include("keyedcache.urls")),
]
