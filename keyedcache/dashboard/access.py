"""Who may see the dashboard (active staff) and who may delete keys (the permission)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch, reverse

#: The permission a staff user needs to delete keys (CacheDashboard's, see models.py).
DELETE_PERMISSION = "keyedcache.delete_cache_keys"

View = Callable[..., HttpResponse]


def login_url() -> str:
    """The admin's login page where the admin is mapped, else settings.LOGIN_URL."""
    try:
        return reverse("admin:login")
    except NoReverseMatch:
        return str(resolve_url(settings.LOGIN_URL))


def staff_member_only(view: View) -> View:
    """Let active staff users through; send everyone else to the (admin) login page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if user.is_active and user.is_staff:
            return view(request, *args, **kwargs)
        return redirect_to_login(request.get_full_path(), login_url())

    return wrapper


def can_delete(request: HttpRequest) -> bool:
    """Tell whether the user may delete keys (the permission; a superuser has every one)."""
    return bool(request.user.has_perm(DELETE_PERMISSION))
