"""The key browser's pages: "Cache Keys" (a branch or a search) and one key's detail page."""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import caches
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from keyedcache.cache import KeyedCache
from keyedcache.dashboard.access import staff_member_only
from keyedcache.dashboard.browser import (
    PAGE_SIZE,
    Listing,
    key_meta,
    scan_branch,
    scan_limit,
    search_keys,
    search_pattern,
)
from keyedcache.dashboard.context import page_context, url
from keyedcache.dashboard.formatting import number, shown, when
from keyedcache.dashboard.http import allow
from keyedcache.dashboard.refs import LONG_KEY, branch_params, key_params, resolve
from keyedcache.dashboard.secrets import outage_message
from keyedcache.dashboard.values import MAX_REPR, describe_type, model_facts, safe_repr
from keyedcache.exceptions import CacheNotRespondingError
from keyedcache.forms import encode_key
from keyedcache.keys import KEY_DELIM
from keyedcache.registry import default_cache

__all__ = ["MAX_REPR", "detail_page", "view_page"]

#: Characters of a key shown in a row, a crumb or the key page's heading; longer ones are cut.
MAX_LABEL = 300
MAX_HEADING = 2_000


def label(text: str, limit: int = MAX_LABEL) -> str:
    """`text` as shown (invisible characters escaped), cut to `limit` characters."""
    if len(text) > limit:
        return f"{shown(text[:limit])}… ({number(len(text))} characters)"
    return shown(text)


def _crumbs(store: KeyedCache, branch: str | None, sample: str | None) -> list[dict[str, str]]:
    """Links to the root and to every branch above and at `branch`."""
    crumbs = [{"label": "All keys", "url": url("keyedcache_view")}]
    if branch is None:
        return crumbs
    segments = branch.split(KEY_DELIM)
    for i, segment in enumerate(segments):
        prefix = KEY_DELIM.join(segments[: i + 1])
        crumbs.append(
            {
                "label": label(segment, 60) or "(empty)",
                "url": url("keyedcache_view", **branch_params(store, prefix, sample or branch)),
            }
        )
    return crumbs


def page_links(page: Page[Any], **params: Any) -> list[dict[str, Any]]:
    """Numbered page links (with ellipses) keeping the other query parameters."""
    links = []
    for number_ in page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1):
        if not isinstance(number_, int):  # Paginator.ELLIPSIS
            links.append({"label": str(number_), "url": None, "current": False})
        else:
            links.append(
                {
                    "label": str(number_),
                    "url": url("keyedcache_view", **params, page=number_),
                    "current": number_ == page.number,
                }
            )
    return links


def parent_branch(key: str) -> str | None:
    """The branch a key is listed in (None: the root)."""
    head, sep, _tail = key.rpartition(KEY_DELIM)
    return head if sep else None


def _branch_url(store: KeyedCache, branch: str | None, sample: str | None = None) -> str:
    return url("keyedcache_view", **branch_params(store, branch, sample))


def _key_url(store: KeyedCache, key: str) -> str:
    return url("keyedcache_detail", **key_params(store, key))


@staff_member_only
@never_cache
@allow("GET")
def view_page(request: HttpRequest) -> HttpResponse:
    """Browse keys as a tree of `::` segments, or search them by glob ("Cache Keys")."""
    store = default_cache()
    if "key" in request.GET:  # 1.5's look-up form sent ?key=...
        return HttpResponseRedirect(_key_url(store, request.GET["key"]))
    branch, sample = resolve(store, request.GET, "prefix")
    if branch is None and "ref" in request.GET:
        return HttpResponseRedirect(reverse("keyedcache_view"))  # its entry is gone
    query = request.GET.get("q", "")
    full = request.GET.get("all") == "1"
    limit = None if full else scan_limit()
    unlistable = outage = ""
    pattern = search_pattern(query) if query.strip() else None
    try:
        if pattern is not None:
            listing = search_keys(store, pattern, limit)
        else:
            listing = scan_branch(store, branch, limit)
        if not listing.rows:
            store.require()  # "no keys" only from a backend that answers
    except NotImplementedError as exc:
        listing = Listing([], 0, False)
        unlistable = str(exc)
    except CacheNotRespondingError as exc:
        listing = Listing([], 0, False)
        outage = outage_message(exc, store.alias)
    paginator = Paginator(listing.rows, PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    metas = key_meta(store, [child.key for child in page.object_list if child.is_key])
    for child in page.object_list:
        child.meta = metas.get(child.key, {})
    params: dict[str, Any] = (
        {"q": query} if pattern is not None else branch_params(store, branch, sample)
    )
    if full:
        params["all"] = "1"
    rows = [
        {
            "label": label(child.segment) if pattern is None else label(child.key),
            "empty_segment": child.segment == "" and pattern is None,
            "count": number(child.count),
            "is_key": child.is_key and bool(child.meta),
            "is_branch": child.is_branch,
            "below": number(child.count - (1 if child.is_key else 0)),
            "branch_url": _branch_url(store, child.key, child.sample) if child.is_branch else None,
            "key_url": _key_url(store, child.key) if child.is_key else None,
            **child.meta,
        }
        for child in page.object_list
    ]
    delete_url = None
    if pattern is not None:
        delete_url = url("keyedcache_delete", pattern=pattern)
    elif branch is not None:
        named = key_params(store, branch) if len(branch) <= LONG_KEY else None
        named = named or branch_params(store, branch, sample)
        delete_url = url("keyedcache_delete", **named, children="on")
    branch_is_key = None
    if branch is not None and pattern is None and page.number == 1 and store.peek_stored([branch]):
        branch_is_key = _key_url(store, branch)
    context = page_context(
        request,
        "Cache Keys",
        "keys",
        branch=branch,
        branch_shown=None if branch is None else label(branch),
        branch_is_key=branch_is_key,
        crumbs=_crumbs(store, branch, sample) if pattern is None else [],
        query=query,
        pattern=pattern,
        rows=rows,
        page=page,
        page_links=page_links(page, **params) if paginator.num_pages > 1 else [],
        read=number(listing.read),
        read_count=listing.read,
        branches=sum(1 for c in listing.rows if c.is_branch),
        truncated=listing.truncated,
        overflow=number(listing.overflow),
        overflow_count=listing.overflow,
        limit=number(limit) if limit is not None else None,
        full=full,
        count_all_url=url("keyedcache_view", **{**params, "all": "1"}),
        unlistable=unlistable,
        outage=outage,
        delete_url=delete_url,
    )
    return render(request, "keyedcache/view.html", context, status=503 if outage else 200)


# -- one key ------------------------------------------------------------------------------


@staff_member_only
@never_cache
@allow("GET")
def detail_page(request: HttpRequest) -> HttpResponse:
    """One key: its value's type, size, TTL, freshness and a safe, truncated representation.

    The key comes as ?key=..., or for a long key as ?ref=<storage key> (see refs.py).
    """
    store = default_cache()
    key, _sample = resolve(store, request.GET, "key")
    if key is None:
        return HttpResponseRedirect(reverse("keyedcache_view"))
    parent = parent_branch(key)
    meta = key_meta(store, [key]).get(key, {})
    entry = store.peek_many([key]).get(key) if meta else None
    context = page_context(
        request,
        "Cache key",
        "keys",
        key=key,
        key_shown=label(key, MAX_HEADING),
        key_crumb=label(key, 60),
        encoded_key=encode_key(key),
        crumbs=_crumbs(store, parent, key),
        parent_url=_branch_url(store, parent, key),
        found=entry is not None,
    )
    if entry is None:
        try:
            store.require()  # "nothing is cached" only from a backend that answers
        except CacheNotRespondingError as exc:
            context["outage"] = outage_message(exc, store.alias)
            return render(request, "keyedcache/detail.html", context, status=503)
        return render(request, "keyedcache/detail.html", context, status=404)
    limit = scan_limit()
    below: Listing | None = None
    try:
        below = scan_branch(store, key, limit)
    except NotImplementedError:  # a backend keyedcache cannot list
        pass
    except CacheNotRespondingError as exc:
        context["below_error"] = outage_message(exc, store.alias)
    text, cut = safe_repr(entry.value, meta["size"])
    stale = not entry.is_fresh()
    context.update(
        meta,
        value_type=describe_type(entry.value),
        value_repr=text,
        repr_cut=cut,
        model=model_facts(entry.value),
        stale=stale,
        fresh_until=when(entry.fresh_until),
        stale_until=when(entry.stale_until),
        expires_at=(
            when(time.time() + meta["ttl_seconds"]) if meta["ttl_seconds"] is not None else None
        ),
        cost=f"{entry.cost:.3f} s" if entry.cost else None,
        storage_key=caches[store.alias].make_key(store.storage_key(key)),
        below=None if below is None else below.read,
        below_shown=None if below is None else f"{number(below.read)}{'+' * below.truncated}",
        below_url=_branch_url(store, key, key),
        next_url=_branch_url(store, parent, key),
    )
    return render(request, "keyedcache/detail.html", context)
