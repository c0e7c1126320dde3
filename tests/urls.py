"""URLconf for the test settings: empty unless a test needs more."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
