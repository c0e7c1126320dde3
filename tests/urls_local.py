"""URLconf and views for tests/test_local.py: views that read and write request-specific keys."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path

from keyedcache import cache_get, cache_set
from keyedcache.local import current_scope

#: Set by a test to hold every async view until all have written (asyncio.Barrier).
ASYNC_GATE: asyncio.Barrier | None = None
#: Set by a test to hold every sync view until all have written (threading.Barrier).
SYNC_GATE: threading.Barrier | None = None
#: Upper bound on a wait at a gate: a guard against a hang, not a synchronisation.
GATE_DEADLINE = 30.0


def _write(request: HttpRequest) -> dict[str, Any]:
    """Read shared and missing keys several times, write this request's own keys."""
    n = request.GET["n"]
    # "scopeonly" never reaches the backend (the test drops those writes), so a
    # value here could only come from another request's scope.
    first = cache_get("scopeonly", default=None)
    cache_set("scopeonly", value=n)
    cache_set("req", n, value=f"mine-{n}")
    return {
        "n": n,
        "first": first,
        "products": [cache_get("product", 1, default=None) for _ in range(5)],
        "missing": [cache_get("nothing", default=None) for _ in range(3)],
    }


def _read_back(data: dict[str, Any]) -> JsonResponse:
    n = data["n"]
    data.update(
        then=cache_get("scopeonly", default=None),
        own=cache_get("req", n, default=None),
        scope_on=current_scope() is not None,
        thread=threading.get_ident(),
    )
    return JsonResponse(data)


def sync_view(request: HttpRequest) -> JsonResponse:
    data = _write(request)
    if SYNC_GATE is not None:
        SYNC_GATE.wait(GATE_DEADLINE)
    return _read_back(data)


async def async_view(request: HttpRequest) -> JsonResponse:
    data = _write(request)
    if ASYNC_GATE is not None:
        try:
            await asyncio.wait_for(ASYNC_GATE.wait(), GATE_DEADLINE)
        except (TimeoutError, asyncio.BrokenBarrierError):
            # Break the gate so the other requests fail at once instead of each
            # waiting out its own deadline (e.g. if requests got serialised).
            await ASYNC_GATE.abort()
            raise
    return _read_back(data)


def boom(request: HttpRequest) -> JsonResponse:
    cache_get("product", 1, default=None)
    raise RuntimeError("boom")


urlpatterns = [
    path("sync/", sync_view),
    path("async/", async_view),
    path("boom/", boom),
]
