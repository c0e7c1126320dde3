"""The key browser's pages: "Cache Keys" (a branch or a search) and one key's detail page."""

from __future__ import annotations

import pprint
import reprlib
import time
from typing import Any

from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

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
from keyedcache.dashboard.secrets import outage_message
from keyedcache.entry import Entry
from keyedcache.exceptions import CacheNotRespondingError
from keyedcache.forms import encode_key
from keyedcache.keys import KEY_DELIM
from keyedcache.registry import default_cache

#: Characters of a value's representation shown on the key page.
MAX_REPR = 20_000
#: Values whose stored size is below this are pretty-printed (pprint), others reprlib'd.
PRETTY_PRINT_BYTES = 32_000

_value_repr = reprlib.Repr()
_value_repr.maxlevel = 6
_value_repr.maxstring = 2_000
_value_repr.maxlong = 400
_value_repr.maxother = 2_000
_value_repr.maxlist = _value_repr.maxtuple = _value_repr.maxdeque = 100
_value_repr.maxset = _value_repr.maxfrozenset = _value_repr.maxdict = 100
_value_repr.maxarray = 100


def _crumbs(branch: str | None) -> list[dict[str, str]]:
    """Links to the root and to every branch above and at `branch`."""
    crumbs = [{"label": "All keys", "url": url("keyedcache_view")}]
    if branch is None:
        return crumbs
    segments = branch.split(KEY_DELIM)
    for i, segment in enumerate(segments):
        prefix = KEY_DELIM.join(segments[: i + 1])
        crumbs.append(
            {"label": shown(segment) or "(empty)", "url": url("keyedcache_view", prefix=prefix)}
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


def _branch_url(branch: str | None) -> str:
    return url("keyedcache_view", prefix=branch)


@staff_member_only
@never_cache
@require_GET
def view_page(request: HttpRequest) -> HttpResponse:
    """Browse keys as a tree of `::` segments, or search them by glob ("Cache Keys")."""
    store = default_cache()
    if "key" in request.GET:  # 1.5's look-up form sent ?key=...
        return HttpResponseRedirect(url("keyedcache_detail", key=request.GET["key"]))
    branch = request.GET.get("prefix")
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
    params: dict[str, Any] = {"q": query} if pattern is not None else {"prefix": branch}
    if full:
        params["all"] = "1"
    rows = [
        {
            "label": shown(child.segment) if pattern is None else shown(child.key),
            "empty_segment": child.segment == "" and pattern is None,
            "count": number(child.count),
            "is_key": child.is_key and bool(child.meta),
            "is_branch": child.is_branch,
            "below": number(child.count - (1 if child.is_key else 0)),
            "branch_url": _branch_url(child.key) if child.is_branch else None,
            "key_url": url("keyedcache_detail", key=child.key) if child.is_key else None,
            **child.meta,
        }
        for child in page.object_list
    ]
    delete_url = None
    if pattern is not None:
        delete_url = url("keyedcache_delete", pattern=pattern)
    elif branch is not None:
        delete_url = url("keyedcache_delete", key=branch, children="on")
    branch_is_key = None
    if branch is not None and pattern is None and page.number == 1:
        branch_is_key = url("keyedcache_detail", key=branch) if store.get_entry(branch) else None
    context = page_context(
        request,
        "Cache Keys",
        "keys",
        branch=branch,
        branch_shown=None if branch is None else shown(branch),
        branch_is_key=branch_is_key,
        crumbs=_crumbs(branch) if pattern is None else [],
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


def safe_repr(value: Any, size: int) -> tuple[str, bool]:
    """A representation of `value` of at most MAX_REPR characters; say whether it was cut."""
    try:
        if size <= PRETTY_PRINT_BYTES:
            text = pprint.pformat(value, width=100, sort_dicts=False)
        else:
            text = _value_repr.repr(value)
    except Exception as exc:  # a __repr__ that fails must not break the page
        return f"<repr() failed: {type(exc).__name__}: {exc}>", False
    if len(text) > MAX_REPR:
        return text[:MAX_REPR] + " …", True
    return text, size > PRETTY_PRINT_BYTES and "..." in text


def describe_type(value: Any) -> str:
    """The value's type, with its length for sized values: 'dict (3 items)'."""
    kind = type(value)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    try:
        length = len(value)
    except Exception:
        return name
    if isinstance(value, str):
        unit = "characters"
    elif isinstance(value, (bytes, bytearray)):
        unit = "bytes"
    else:
        unit = "items"
    return f"{name} ({number(length)} {unit if length != 1 else unit[:-1]})"


@staff_member_only
@never_cache
@require_GET
def detail_page(request: HttpRequest) -> HttpResponse:
    """One key: its value's type, size, TTL, freshness and a safe, truncated representation."""
    store = default_cache()
    key = request.GET.get("key")
    if key is None:
        return HttpResponseRedirect(reverse("keyedcache_view"))
    parent = parent_branch(key)
    meta = key_meta(store, [key]).get(key, {})
    context = page_context(
        request,
        "Cache key",
        "keys",
        key=key,
        key_shown=shown(key),
        encoded_key=encode_key(key),
        crumbs=_crumbs(parent),
        parent_url=_branch_url(parent),
        found=bool(meta),
    )
    if not meta:
        try:
            store.require()  # "nothing is cached" only from a backend that answers
        except CacheNotRespondingError as exc:
            context["outage"] = outage_message(exc, store.alias)
            return render(request, "keyedcache/detail.html", context, status=503)
        return render(request, "keyedcache/detail.html", context, status=404)
    entry: Entry = meta["entry"]
    limit = scan_limit()
    below: Listing | None = None
    try:
        below = scan_branch(store, key, limit)
    except NotImplementedError:  # a backend keyedcache cannot list
        pass
    except CacheNotRespondingError as exc:
        context["below_error"] = outage_message(exc, store.alias)
    text, cut = safe_repr(entry.value, meta["size"])
    stale = not meta["fresh"]
    context.update(
        meta,
        value_type=describe_type(entry.value),
        value_repr=text,
        repr_cut=cut,
        stale=stale,
        fresh_until=when(entry.fresh_until),
        stale_until=when(entry.stale_until),
        expires_at=(
            when(time.time() + meta["ttl_seconds"]) if meta["ttl_seconds"] is not None else None
        ),
        cost=f"{entry.cost:.3f} s" if entry.cost else None,
        storage_key=store.storage_key(key),
        below=None if below is None else below.read,
        below_shown=None if below is None else f"{number(below.read)}{'+' * below.truncated}",
        below_url=_branch_url(key),
        next_url=_branch_url(parent),
    )
    return render(request, "keyedcache/detail.html", context)
