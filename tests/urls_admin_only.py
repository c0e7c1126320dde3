"""URLconf with the admin but without keyedcache's dashboard (its admin entry must hide)."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, path

urlpatterns: list[URLPattern | URLResolver] = [path("admin/", admin.site.urls)]
