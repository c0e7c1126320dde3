"""RequestCacheMiddleware: one first-level cache scope per request, for WSGI and ASGI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from keyedcache.local import request_cache


class RequestCacheMiddleware:
    """Wrap each request in `request_cache()`; sync and async capable, so no thread hop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        with request_cache():
            return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        with request_cache():
            response: Awaitable[HttpResponseBase] = self.get_response(request)
            return await response
