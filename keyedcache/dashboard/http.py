"""HTTP methods of the pages: HEAD answered as GET (same status and headers, no body)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

View = Callable[..., HttpResponse]


def allow(*methods: str) -> Callable[[View], View]:
    """Let only `methods` through (405 otherwise); HEAD too wherever GET is allowed.

    A HEAD request runs the view as a GET would and gets the same status and
    headers (Content-Length included) with an empty body, whatever server
    runs the project.
    """
    allowed = [m.upper() for m in methods]
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.append("HEAD")

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                return HttpResponseNotAllowed(allowed)
            response = view(request, *args, **kwargs)
            if request.method == "HEAD" and not response.streaming:
                response["Content-Length"] = str(len(response.content))
                response.content = b""
            return response

        return wrapper

    return decorator
