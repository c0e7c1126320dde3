"""URLconf for tests/test_keyval_admin.py: Django's admin."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
