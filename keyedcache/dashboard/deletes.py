"""The delete page: one key, a key and its subtree, a glob pattern, or every entry; logged."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from keyedcache.cache import KeyedCache
from keyedcache.dashboard.access import DELETE_PERMISSION, can_delete, staff_member_only
from keyedcache.dashboard.context import page_context
from keyedcache.dashboard.formatting import number, shown
from keyedcache.dashboard.http import allow
from keyedcache.dashboard.refs import resolve
from keyedcache.dashboard.secrets import outage_message
from keyedcache.exceptions import CacheNotRespondingError
from keyedcache.forms import DELETE_FORMS, KEY_FIELD_MAX, encode_key, make_form
from keyedcache.keys import glob_literal
from keyedcache.registry import default_cache

log = logging.getLogger("keyedcache")


def _count(store: KeyedCache, patterns: list[str]) -> int | None:
    """How many keys match the globs (a count taken before a delete), None if unknown.

    Raises CacheBackendError when the backend fails.
    """
    try:
        return sum(sum(1 for _ in store.iter_keys(pattern, strict=True)) for pattern in patterns)
    except NotImplementedError:
        return None


def _keys(count: int | None) -> str:
    if count is None:
        return "an unknown number of keys (this backend cannot count them)"
    return "1 key" if count == 1 else f"{number(count)} keys"


def describe(action: str, data: dict[str, Any]) -> str:
    """What a delete takes, as the message and the log line say it."""
    if action == "key":
        key = f"“{shown(data['key'])}”"
        return f"{key} and every key below it" if data.get("children") else key
    if action == "pattern":
        return f"the keys matching “{shown(data['pattern'])}”"
    if action == "all":
        return "every keyedcache entry"
    raise ValueError(f"unknown delete action {action!r}")


def perform_delete(store: KeyedCache, action: str, data: dict[str, Any]) -> tuple[int | None, str]:
    """Carry out one delete; return (keys deleted or None if unknown, what was deleted).

    A subtree or delete-all may be one token write that cannot say what it
    took, so those keys are counted just before the delete (None where the
    backend cannot list keys); a pattern delete counts what it deletes.
    Raises NotImplementedError for a pattern delete on a backend that cannot
    list keys, and CacheNotRespondingError (CacheBackendError) when the
    backend did not answer: "nothing was deleted" is only said by a backend
    that answers.
    """
    what = describe(action, data)
    count: int | None
    if action == "key" and not data.get("children"):
        count = len(store.delete(data["key"], strict=True))
    elif action == "pattern":
        count = store.delete_pattern(data["pattern"], strict=True)
    else:
        if action == "key":
            key = data["key"]
            before = _count(store, [glob_literal(key), glob_literal(key) + "::*"])
            deleted = store.delete(key, children=True, strict=True)
        else:
            before = _count(store, ["*"])
            deleted = store.delete_all(strict=True)
        count = None if before is None else max(before, len(deleted or []))
    if count == 0:
        store.require()  # an empty result looks the same as an outage on some backends
    return count, what


def _failed(request: HttpRequest, store: KeyedCache, what: str, exc: Exception) -> str:
    """Log a delete that did not reach the backend as failed; return what the page says."""
    reason = outage_message(exc, store.alias)
    log.warning(
        "keyedcache: %s could not delete %s from cache alias %r: %s",
        _user(request),
        what,
        store.alias,
        reason,
    )
    still = what[:1].upper() + what[1:]
    return (
        f"The delete did not reach the cache: {reason}. "
        f"{still} may still be cached; try again when the backend answers."
    )


def _user(request: HttpRequest) -> str:
    return str(request.user.get_username() or f"user #{request.user.pk}")


def _safe_next(request: HttpRequest, target: str) -> str | None:
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return None


def _initial(request: HttpRequest, store: KeyedCache) -> dict[str, Any]:
    """Pre-filled key and pattern forms from the query string (never the delete-all form).

    The key comes as ?key=... or as a reference (?ref=..., see refs.py); one too
    long for the text field is sent along encoded, and shown shortened.
    """
    initial: dict[str, Any] = {}
    key, _sample = resolve(store, request.GET, "key")
    if key is not None and len(key) > KEY_FIELD_MAX:
        initial["encoded_key"] = encode_key(key)
        initial["long_key"] = f"{shown(key[:200])}… ({number(len(key))} characters)"
    elif key is not None:
        initial["key"] = key
    for name in ("pattern", "next"):
        if name in request.GET:
            initial[name] = request.GET[name]
    if request.GET.get("children") in ("on", "1", "true"):
        initial["children"] = True
    return initial


@staff_member_only
@csrf_protect
@never_cache
@allow("GET", "POST")
def delete_page(request: HttpRequest) -> HttpResponse:
    """Delete a key, a key and its subtree, the keys matching a glob, or everything.

    GET only shows the forms. A POST needs the delete permission, deletes,
    logs who deleted what, and redirects with a message saying how many keys went.
    A delete the backend did not answer is logged as failed and shown as an
    error on this page (status 503), never as done.
    """
    store = default_cache()
    initial = _initial(request, store)
    bound: dict[str, Any] = {}
    status = 200
    if request.method == "POST":
        if not can_delete(request):
            raise PermissionDenied("Deleting cache keys needs the permission " + DELETE_PERMISSION)
        action = request.POST.get("action", "")
        if action not in DELETE_FORMS:
            messages.error(request, "Choose what to delete: a key, a pattern or every entry.")
            status = 400
        else:
            form = make_form(action, data=request.POST)
            if form.is_valid():
                try:
                    count, what = perform_delete(store, action, form.cleaned_data)
                except NotImplementedError:
                    form.add_error(
                        None,
                        "This cache backend cannot list its keys, so it cannot delete by pattern.",
                    )
                except CacheNotRespondingError as exc:
                    # Shown on this page (not after a redirect), with the form as sent.
                    status = 503
                    what = describe(action, form.cleaned_data)
                    messages.error(request, _failed(request, store, what, exc))
                else:
                    log.info(
                        "keyedcache: %s deleted %s (%s) from cache alias %r",
                        _user(request),
                        what,
                        _keys(count),
                        store.alias,
                    )
                    if count == 0:
                        messages.warning(request, f"Deleted 0 keys: nothing was cached for {what}.")
                    else:
                        messages.success(request, f"Deleted {_keys(count)}: {what}.")
                    target = _safe_next(request, form.cleaned_data.get("next") or "")
                    return HttpResponseRedirect(target or reverse("keyedcache_delete"))
            bound[action] = form
    forms_by_action = {
        action: bound.get(action) or make_form(action, initial=initial) for action in DELETE_FORMS
    }
    context = page_context(
        request,
        "Delete cache keys",
        "delete",
        key_form=forms_by_action["key"],
        pattern_form=forms_by_action["pattern"],
        all_form=forms_by_action["all"],
        long_key=initial.get("long_key"),
        enumerates=store.enumerates,
        adapter=store.adapter_name,
        permission=DELETE_PERMISSION,
    )
    return render(request, "keyedcache/delete.html", context, status=status)
