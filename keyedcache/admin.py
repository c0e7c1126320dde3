"""The dashboard's entry on the admin index: "Keyed cache > Cache dashboard", for staff.

CacheDashboard has no table; its admin only lists it for staff and sends its
"changelist" to the dashboard at /cache/ (wherever the project mapped
`keyedcache.urls`). Nothing can be added, changed or deleted through it. Where
the project has not mapped the dashboard, the entry is not shown.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, URLPattern, path, reverse

from keyedcache.models import CacheDashboard


def dashboard_url() -> str | None:
    """The URL of the dashboard's stats page, or None when the project did not map it."""
    try:
        return reverse("keyedcache_stats")
    except NoReverseMatch:
        return None


@admin.register(CacheDashboard)
class CacheDashboardAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Lists "Cache dashboard" on the admin index for staff; its link opens /cache/."""

    def _is_staff(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff) and dashboard_url() is not None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._is_staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._is_staff(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        """Only the "changelist" (the redirect): there are no rows to add, change or delete."""
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.changelist_view), name=name)]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """There is no list: go to the dashboard (the admin checked staff access)."""
        url = dashboard_url()
        if url is None or not self._is_staff(request):
            return super().changelist_view(request, extra_context)
        return HttpResponseRedirect(url)
