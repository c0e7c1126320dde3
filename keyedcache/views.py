"""The staff dashboard at /cache/: statistics, a key browser, key details, deletes.

Every page reads the default KeyedCache (`iter_keys`, `require`, entries and
TTLs through its adapter, so the dashboard's reads are not counted as cache
traffic) and `keyedcache.stats()`; no GET changes a keyedcache entry. Deletes
are POSTs with CSRF protection that need the `keyedcache.delete_cache_keys`
permission, are logged on the "keyedcache" logger with the user's name, and
end in a redirect with a message.
See docs/dashboard.md.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import logging
import math
import pickle
import pprint
import re
import reprlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from keyedcache.backends import MISSING
from keyedcache.entry import Entry, unpack
from keyedcache.exceptions import CacheNotRespondingError
from keyedcache.forms import DELETE_FORMS, encode_key, make_form
from keyedcache.keys import KEY_DELIM
from keyedcache.stats import stats as cluster_stats
from keyedcache.store import KeyedCache, default_cache

log = logging.getLogger("keyedcache")

# The stats module itself (`keyedcache.stats` is the function; see keyedcache/__init__.py).
_stats_module = importlib.import_module("keyedcache.stats")

#: The permission a staff user needs to delete keys (CacheDashboard's, see models.py).
DELETE_PERMISSION = "keyedcache.delete_cache_keys"
#: Rows per page of the key browser.
PAGE_SIZE = 50
#: Keys read from the backend for one page of the key browser, unless the
#: user asks for a full count (setting KEYEDCACHE_DASHBOARD_SCAN_LIMIT).
DEFAULT_SCAN_LIMIT = 10_000
#: Distinct branches one listing keeps counts for, even in a full count.
MAX_BRANCHES = 10_000
#: Rows of the busiest-prefixes table.
BUSIEST_PREFIXES = 15
#: Characters of a value's representation shown on the key page.
MAX_REPR = 20_000
#: Values whose stored size is below this are pretty-printed (pprint), others reprlib'd.
PRETTY_PRINT_BYTES = 32_000

#: What a table shows where there is no figure (an en dash).
NO_FIGURE = "\u2013"

View = Callable[..., HttpResponse]


# -- access ------------------------------------------------------------------------------


def _login_url() -> str:
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
        return redirect_to_login(request.get_full_path(), _login_url())

    return wrapper


def can_delete(request: HttpRequest) -> bool:
    """Tell whether the user may delete keys (the permission; a superuser has every one)."""
    return bool(request.user.has_perm(DELETE_PERMISSION))


def _scan_limit() -> int:
    limit = getattr(settings, "KEYEDCACHE_DASHBOARD_SCAN_LIMIT", DEFAULT_SCAN_LIMIT)
    return max(int(limit), PAGE_SIZE)


def _context(request: HttpRequest, title: str, tab: str, **extra: Any) -> dict[str, Any]:
    store = default_cache()
    return {
        **admin.site.each_context(request),
        # The pages need their width for tables and the chart.
        "is_nav_sidebar_enabled": False,
        "title": title,
        "tab": tab,
        "can_delete": can_delete(request),
        "alias": store.alias,
        "caching_on": store.enabled,
        **extra,
    }


def _url(name: str, **params: Any) -> str:
    """reverse(name) with a query string of the params that are not None."""
    query = {k: v for k, v in params.items() if v is not None}
    url = reverse(name)
    return f"{url}?{urlencode(query)}" if query else url


# -- text helpers -------------------------------------------------------------------------


def shown(text: str) -> str:
    """`text` with invisible characters (controls, format marks) written as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def number(value: int | float) -> str:
    """1234567 -> '1,234,567'."""
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def percent(rate: float | None) -> str:
    return NO_FIGURE if rate is None else f"{100 * rate:.1f}%"


def duration(seconds: float | None) -> str:
    """Seconds as '42 s', '3 min 5 s', '2 h 10 min', '4 d 3 h'; None is 'never'."""
    if seconds is None:
        return "never"
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def when(timestamp: float | None) -> datetime.datetime | None:
    """A Unix timestamp as an aware datetime (the template shows it in the current zone)."""
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)


def ago(timestamp: Any, now: float | None = None) -> str:
    """'just now', '42 s ago', '3 min ago', ... for a Unix timestamp; NO_FIGURE if none."""
    if not isinstance(timestamp, (int, float)):
        return NO_FIGURE
    seconds = (time.time() if now is None else now) - timestamp
    if seconds < 5:
        return "just now"
    return f"{duration(seconds)} ago"


def _clock(timestamp: float) -> str:
    """HH:MM of a Unix timestamp in the current time zone."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    if settings.USE_TZ:
        moment = timezone.localtime(moment)
    return moment.strftime("%H:%M")


# -- secrets ------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"pass|secret|token|credential|auth|private|key", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_BARE_USERINFO = re.compile(r"^[^/@\s:]*:[^/@\s]*@")
MASK = "********"


def mask_location(value: Any) -> str:
    """A LOCATION (string, or list of them) without passwords: userinfo and secret query values."""
    if isinstance(value, (list, tuple)):
        return ", ".join(mask_location(item) for item in value)
    text = str(value)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _BARE_USERINFO.sub(f"{MASK}@", text)
    if "?" in text:
        try:
            parts = urlsplit(text)
        except ValueError:  # not a URL after all: hide what follows the "?"
            return text.split("?", 1)[0] + "?" + MASK
        if parts.query:
            query = [
                (name, MASK if _SECRET_NAME.search(name) else item)
                for name, item in parse_qsl(parts.query, keep_blank_values=True)
            ]
            text = urlunsplit(parts._replace(query=urlencode(query, safe="*")))
    return text


def mask_options(options: Any, depth: int = 0) -> list[tuple[str, str]]:
    """(name, value) of cache OPTIONS, secret-looking values masked, nested dicts flattened."""
    if not isinstance(options, dict) or depth > 3:
        return []
    shown_options: list[tuple[str, str]] = []
    for name, value in sorted(options.items(), key=lambda item: str(item[0])):
        label = str(name)
        if _SECRET_NAME.search(label):
            shown_options.append((label, MASK))
        elif isinstance(value, dict):
            shown_options += [
                (f"{label}.{sub}", text) for sub, text in mask_options(value, depth + 1)
            ]
        elif isinstance(value, str):
            shown_options.append((label, mask_location(value)))
        else:
            shown_options.append((label, _brief_repr.repr(value)))
    return shown_options


_brief_repr = reprlib.Repr()
_brief_repr.maxstring = _brief_repr.maxother = 80


def backend_info(store: KeyedCache) -> dict[str, Any]:
    """What the stats page says about the backend: class, location (masked), health, round trip."""
    config: dict[str, Any] = settings.CACHES.get(store.alias, {})
    started = time.perf_counter()
    error = ""
    try:
        answered = store.require()
    except CacheNotRespondingError as exc:
        answered = False
        error = mask_location(str(exc))
    round_trip = (time.perf_counter() - started) * 1000
    health = "off" if answered is None else "up" if answered else "down"
    return {
        "alias": store.alias,
        "backend": str(config.get("BACKEND", "")),
        "location": mask_location(config.get("LOCATION", "")),
        "options": mask_options(config.get("OPTIONS", {})),
        "key_prefix": str(config.get("KEY_PREFIX", "")),
        "timeout": duration(config["TIMEOUT"]) if "TIMEOUT" in config else duration(300),
        "adapter": store.adapter.name,
        "enumerates": store.adapter.enumerates,
        "namespace": store.namespace,
        "health": health,
        "error": error,
        "round_trip": f"{round_trip:.1f} ms" if round_trip >= 1 else f"{round_trip:.2f} ms",
    }


# -- stats --------------------------------------------------------------------------------

#: The counters the stats page shows, in order, with their labels.
COUNTERS = (
    ("calls", "Calls"),
    ("hits", "Hits"),
    ("local_hits", "First-level hits"),
    ("misses", "Misses"),
    ("sets", "Sets"),
    ("deletes", "Deletes"),
    ("errors", "Errors"),
    ("executions", "Memoized-body executions"),
    ("wait_timeouts", "Single-flight wait timeouts"),
)


def _figures(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    found: dict[str, int] = {}
    for name, value in raw.items():
        try:
            found[str(name)] = int(value)
        except (TypeError, ValueError):
            continue
    return found


def _rate(figures: dict[str, int]) -> float | None:
    calls = figures.get("calls", 0)
    if not calls:
        return None
    return (figures.get("hits", 0) + figures.get("local_hits", 0)) / calls


def read_stats() -> dict[str, Any]:
    """`keyedcache.stats()` in the shape the stats page uses.

    The only function that knows the shape of `keyedcache.stats()`: every
    field is read with a default, so a change there costs one figure, not the page.
    """
    try:
        raw: dict[str, Any] = cluster_stats()
    except Exception as exc:  # the page must render even when stats cannot be read
        log.warning("keyedcache: the dashboard could not read the stats (%r)", exc)
        raw = {}
    process = raw.get("process")
    if not isinstance(process, dict):
        process = {}
    totals = _figures(raw.get("totals"))
    mine = _figures(process.get("counters"))
    processes = [p for p in raw.get("processes") or [] if isinstance(p, dict)]
    series = []
    for point in raw.get("minutes") or []:
        if isinstance(point, dict) and "minute" in point:
            figures = _figures(point)
            series.append({**figures, "minute": float(point["minute"])})
    prefixes = []
    for row in raw.get("prefixes") or []:
        if isinstance(row, dict) and "prefix" in row:
            figures = _figures(row)
            prefixes.append({**figures, "prefix": str(row["prefix"]), "hit_rate": _rate(figures)})
    interval = getattr(_stats_module, "flush_interval", None)
    try:
        flush_every = (
            interval()
            if callable(interval)
            else getattr(settings, "KEYEDCACHE_STATS_FLUSH_INTERVAL", 5.0)
        )
    except Exception:
        flush_every = None
    return {
        "totals": totals,
        "process": mine,
        "flush_interval": flush_every,
        "cluster": bool(raw.get("cluster")),
        "process_count": int(raw.get("process_count") or len(processes) or 1),
        "processes": processes,
        "series": series,
        "prefixes": prefixes,
        "time": float(raw.get("time") or time.time()),
    }


def counter_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the counters table: label, cluster figure, this process's figure."""
    totals, mine = figures["totals"], figures["process"]
    rows = [
        {
            "name": name,
            "label": label,
            "cluster": number(totals.get(name, 0)),
            "process": number(mine.get(name, 0)),
        }
        for name, label in COUNTERS
        if name in totals or name in mine
    ]
    # The hit rate goes right after the reads it is made of (calls, hits, first-level hits).
    rows.insert(
        3,
        {
            "name": "hit_rate",
            "label": "Cache Hit Rate",
            "cluster": percent(_rate(totals)),
            "process": percent(_rate(mine)),
        },
    )
    return rows


# Chart geometry (SVG user units).
CHART_WIDTH, CHART_HEIGHT = 760, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 54, 18, 36


#: Steps between two grid lines (times a power of ten): every quarter of the scale is round.
_STEPS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 8, 10)


def _nice_ceiling(value: float) -> int:
    """The top of a scale of four round steps that holds `value` (at least 4)."""
    if value <= 4:
        return 4
    quarter = value / 4
    power = 10.0 ** math.floor(math.log10(quarter))
    # Whole calls only: no step of 1.5 calls on small scales.
    step = next(s * power for s in _STEPS if s * power >= quarter and float(s * power).is_integer())
    return math.ceil(4 * step)


def build_chart(series: list[dict[str, Any]]) -> dict[str, Any]:
    """The SVG geometry of the per-minute chart: bars of calls, a line of the hit rate."""
    plot_w = CHART_WIDTH - _LEFT - _RIGHT
    plot_h = CHART_HEIGHT - _TOP - _BOTTOM
    count = max(len(series), 1)
    slot = plot_w / count
    peak = max((p.get("calls", 0) for p in series), default=0)
    top = _nice_ceiling(peak)
    base = _TOP + plot_h
    bars: list[dict[str, Any]] = []
    runs: list[list[tuple[float, float]]] = [[]]
    for i, point in enumerate(series):
        calls = point.get("calls", 0)
        rate = _rate(point)
        x = _LEFT + i * slot
        height = plot_h * calls / top
        label = f"{_clock(point['minute'])}: {number(calls)} calls"
        if rate is not None:
            label += f", hit rate {percent(rate)}"
        bars.append(
            {
                "x": round(x + slot * 0.14, 1),
                "y": round(base - height, 1),
                "width": round(slot * 0.72, 1),
                "height": round(height, 1),
                "label": label,
                "slot_x": round(x, 1),
                "slot_width": round(slot, 1),
            }
        )
        if rate is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((round(x + slot / 2, 1), round(_TOP + plot_h * (1 - rate), 1)))
    lines = ["M " + " L ".join(f"{x} {y}" for x, y in run) for run in runs if len(run) > 1]
    dots = [{"x": run[0][0], "y": run[0][1]} for run in runs if len(run) == 1]
    y_ticks = [
        {
            "y": round(_TOP + plot_h * (1 - share), 1),
            "calls": number(int(top * share)),
            "rate": f"{int(share * 100)}%",
        }
        for share in (0, 0.25, 0.5, 0.75, 1)
    ]
    x_ticks = [
        {"x": round(_LEFT + i * slot + slot / 2, 1), "label": _clock(point["minute"])}
        for i, point in enumerate(series)
        if (point["minute"] // 60) % 10 == 0
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": _LEFT,
        "right": CHART_WIDTH - _RIGHT,
        "top": _TOP,
        "bottom": base,
        "plot_width": plot_w,
        "plot_height": plot_h,
        "label_y": base + 22,
        "left_label_x": _LEFT - 8,
        "center_x": round(_LEFT + plot_w / 2, 1),
        "center_y": round(_TOP + plot_h / 2, 1),
        "right_label_x": CHART_WIDTH - _RIGHT + 8,
        "bars": bars,
        "lines": lines,
        "dots": dots,
        "y_ticks": y_ticks,
        "x_ticks": x_ticks,
        "empty": peak == 0,
        "peak": number(peak),
        "total": number(sum(p.get("calls", 0) for p in series)),
    }


#: Prefixes stats counts under that are not key prefixes (no branch to open).
_PSEUDO_PREFIX = re.compile(r"^\(.*\)$")
_BAR_WIDTH = 160


def _quality(rate: float | None) -> str:
    """The colour class of a hit-rate bar."""
    if rate is None:
        return "none"
    return "good" if rate >= 0.8 else "fair" if rate >= 0.5 else "poor"


def prefix_rows(prefixes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The busiest prefixes with their hit-rate bars (widths in SVG units)."""
    rows = []
    for row in sorted(prefixes, key=lambda r: -r.get("calls", 0))[:BUSIEST_PREFIXES]:
        rate = row["hit_rate"]
        prefix = row["prefix"]
        rows.append(
            {
                "prefix": shown(prefix),
                "url": _url("keyedcache_view", prefix=prefix)
                if not _PSEUDO_PREFIX.match(prefix)
                else None,
                "calls": number(row.get("calls", 0)),
                "hits": number(row.get("hits", 0) + row.get("local_hits", 0)),
                "misses": number(row.get("misses", 0)),
                "errors": number(row.get("errors", 0)),
                "rate": percent(rate),
                "bar": 0 if rate is None else round(_BAR_WIDTH * rate, 1),
                "quality": _quality(rate),
            }
        )
    return rows


def process_rows(processes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for proc in processes:
        figures = _figures(proc)
        rows.append(
            {
                "host": str(proc.get("host") or "?"),
                "pid": str(proc.get("pid") or "?"),
                "started": ago(proc.get("started")),
                "flushed": ago(proc.get("flushed")),
                "current": bool(proc.get("current")),
                "calls": number(figures.get("calls", 0)),
                "rate": percent(_rate(figures)),
                "errors": number(figures.get("errors", 0)),
            }
        )
    return rows


@staff_member_only
@never_cache
@require_GET
def stats_page(request: HttpRequest) -> HttpResponse:
    """Cache statistics of the whole cluster and of this process, the backend and its health."""
    store = default_cache()
    figures = read_stats()
    totals, mine = figures["totals"], figures["process"]
    context = _context(
        request,
        "Cache statistics",
        "stats",
        figures=figures,
        counters=counter_rows(figures),
        hit_rate=percent(_rate(totals)),
        process_hit_rate=percent(_rate(mine)),
        calls=number(totals.get("calls", 0)),
        process_calls=number(mine.get("calls", 0)),
        errors=number(totals.get("errors", 0)),
        process_errors=number(mine.get("errors", 0)),
        chart=build_chart(figures["series"]),
        prefixes=prefix_rows(figures["prefixes"]),
        processes=process_rows(figures["processes"]),
        backend=backend_info(store),
        as_of=when(figures["time"]),
    )
    return render(request, "keyedcache/stats.html", context)


# -- the key browser ----------------------------------------------------------------------

_GLOB_META = re.compile(r"([*?\[])")


def glob_literal(text: str) -> str:
    """A glob pattern matching exactly `text` (fnmatch knows no backslash escapes)."""
    return _GLOB_META.sub(r"[\1]", text)


_DIGITS = re.compile(r"([0-9]+)")


def natural(text: str) -> tuple[Any, ...]:
    """Sort key putting 2 before 10 and page2 before page10 (numbers first, then text)."""
    if text.isdecimal() and text.isascii():  # most segments are ids: the fast path
        return (0, int(text), text)
    return (1, [int(part) if i % 2 else part for i, part in enumerate(_DIGITS.split(text))])


@dataclass(slots=True)
class Child:
    """One row of a branch: the next key segment, the keys below it, and whether it is a key."""

    segment: str
    key: str
    count: int = 0
    is_key: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_branch(self) -> bool:
        return self.count > (1 if self.is_key else 0)


@dataclass
class Listing:
    """What one scan of a branch (or a search) found."""

    rows: list[Child]
    read: int
    truncated: bool
    overflow: int = 0


def _closing(keys: Iterator[str]) -> Callable[[], None]:
    close = getattr(keys, "close", None)
    return close if callable(close) else (lambda: None)


def scan_branch(store: KeyedCache, branch: str | None, limit: int | None) -> Listing:
    """Count the keys below `branch` (None: the root) per next segment, streaming.

    Reads at most `limit` keys (None: all of them) and keeps counts for at
    most MAX_BRANCHES distinct segments; the rest are only counted.
    """
    pattern = "*" if branch is None else glob_literal(branch) + KEY_DELIM + "*"
    cut = 0 if branch is None else len(branch) + len(KEY_DELIM)
    base = "" if branch is None else branch + KEY_DELIM
    children: dict[str, Child] = {}
    read = overflow = 0
    truncated = False
    keys = store.iter_keys(pattern)
    try:
        for key in keys:
            if limit is not None and read >= limit:
                truncated = True
                break
            read += 1
            segment, sep, _rest = key[cut:].partition(KEY_DELIM)
            child = children.get(segment)
            if child is None:
                if len(children) >= MAX_BRANCHES:
                    overflow += 1
                    continue
                child = children[segment] = Child(segment, base + segment)
            child.count += 1
            if not sep:
                child.is_key = True
    finally:
        _closing(keys)()
    rows = sorted(children.values(), key=lambda c: natural(c.segment))
    return Listing(rows, read, truncated, overflow)


def search_keys(store: KeyedCache, pattern: str, limit: int | None) -> Listing:
    """The keys matching glob `pattern`, at most `limit` of them, in natural order."""
    found: list[Child] = []
    truncated = False
    keys = store.iter_keys(pattern)
    try:
        for key in keys:
            if limit is not None and len(found) >= limit:
                truncated = True
                break
            found.append(Child(key, key, 1, True))
    finally:
        _closing(keys)()
    found.sort(key=lambda c: natural(c.key))
    return Listing(found, len(found), truncated)


def search_pattern(query: str) -> str:
    """The glob a search box query stands for: as typed, or `*query*` without wildcards."""
    return query if _GLOB_META.search(query) else f"*{glob_literal(query)}*"


def entry_size(entry: Entry) -> int:
    """Bytes of the stored envelope, pickled as Django's backends pickle it."""
    try:
        return len(pickle.dumps(entry.pack(), pickle.HIGHEST_PROTOCOL))
    except Exception:
        return 0


def read_entries(store: KeyedCache, keys: list[str]) -> dict[str, Entry]:
    """The stored entries (stale ones too) of `keys`, in one backend call where it can.

    Reads through the adapter, so the dashboard's reads are not counted as
    cache traffic; if the batch read fails, each key is read on its own
    through the store, which logs and counts the failure.
    """
    if not keys or not store.enabled:
        return {}
    try:
        found = store.adapter.get_many(keys)
    except Exception:
        return {key: entry for key in keys if (entry := store.get_entry(key)) is not None}
    return {key: entry for key, raw in found.items() if (entry := unpack(raw)) is not None}


def seconds_left(store: KeyedCache, key: str, entry: Entry) -> float | None:
    """Seconds until `key` expires (None: never): the backend's own TTL where it has one."""
    try:
        native = store.adapter.native_ttl(key)
    except Exception:
        native = NotImplemented
    if native is NotImplemented or native is MISSING:
        return entry.seconds_left()  # no native TTL: the envelope's, without another read
    return None if native is None else float(native)


def key_meta(store: KeyedCache, keys: list[str]) -> dict[str, dict[str, Any]]:
    """TTL, size and freshness of stored keys: {key: meta}; keys no longer stored are left out."""
    metas = {}
    for key, entry in read_entries(store, keys).items():
        ttl = seconds_left(store, key, entry)
        metas[key] = {
            "entry": entry,
            "ttl": duration(ttl),
            "ttl_seconds": ttl,
            "size": entry_size(entry),
            "fresh": entry.is_fresh(),
        }
    return metas


def _crumbs(branch: str | None) -> list[dict[str, str]]:
    """Links to the root and to every branch above and at `branch`."""
    crumbs = [{"label": "All keys", "url": _url("keyedcache_view")}]
    if branch is None:
        return crumbs
    segments = branch.split(KEY_DELIM)
    for i, segment in enumerate(segments):
        prefix = KEY_DELIM.join(segments[: i + 1])
        crumbs.append(
            {"label": shown(segment) or "(empty)", "url": _url("keyedcache_view", prefix=prefix)}
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
                    "url": _url("keyedcache_view", **params, page=number_),
                    "current": number_ == page.number,
                }
            )
    return links


def parent_branch(key: str) -> str | None:
    """The branch a key is listed in (None: the root)."""
    head, sep, _tail = key.rpartition(KEY_DELIM)
    return head if sep else None


def _branch_url(branch: str | None) -> str:
    return _url("keyedcache_view", prefix=branch)


@staff_member_only
@never_cache
@require_GET
def view_page(request: HttpRequest) -> HttpResponse:
    """Browse keys as a tree of `::` segments, or search them by glob ("Cache Keys")."""
    store = default_cache()
    if "key" in request.GET:  # 1.5's look-up form sent ?key=...
        return HttpResponseRedirect(_url("keyedcache_detail", key=request.GET["key"]))
    branch = request.GET.get("prefix")
    query = request.GET.get("q", "")
    full = request.GET.get("all") == "1"
    limit = None if full else _scan_limit()
    unlistable = ""
    pattern = search_pattern(query) if query.strip() else None
    try:
        if pattern is not None:
            listing = search_keys(store, pattern, limit)
        else:
            listing = scan_branch(store, branch, limit)
    except NotImplementedError as exc:
        listing = Listing([], 0, False)
        unlistable = str(exc)
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
            "key_url": _url("keyedcache_detail", key=child.key) if child.is_key else None,
            **child.meta,
        }
        for child in page.object_list
    ]
    health = None
    if not listing.rows and not unlistable and store.enabled:
        try:
            store.require()
            health = "up"
        except CacheNotRespondingError as exc:
            health = mask_location(str(exc))
    delete_url = None
    if pattern is not None:
        delete_url = _url("keyedcache_delete", pattern=pattern)
    elif branch is not None:
        delete_url = _url("keyedcache_delete", key=branch, children="on")
    branch_is_key = None
    if branch is not None and pattern is None and page.number == 1:
        branch_is_key = _url("keyedcache_detail", key=branch) if store.get_entry(branch) else None
    context = _context(
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
        count_all_url=_url("keyedcache_view", **{**params, "all": "1"}),
        unlistable=unlistable,
        health=health,
        delete_url=delete_url,
    )
    return render(request, "keyedcache/view.html", context)


# -- one key ------------------------------------------------------------------------------

_value_repr = reprlib.Repr()
_value_repr.maxlevel = 6
_value_repr.maxstring = 2_000
_value_repr.maxlong = 400
_value_repr.maxother = 2_000
_value_repr.maxlist = _value_repr.maxtuple = _value_repr.maxdeque = 100
_value_repr.maxset = _value_repr.maxfrozenset = _value_repr.maxdict = 100
_value_repr.maxarray = 100


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
    context = _context(
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
        return render(request, "keyedcache/detail.html", context, status=404)
    entry: Entry = meta["entry"]
    limit = _scan_limit()
    try:
        below: Listing | None = scan_branch(store, key, limit)
    except NotImplementedError:  # a backend keyedcache cannot list
        below = None
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
        storage_key=store.adapter.storage_key(key),
        below=None if below is None else below.read,
        below_shown=None if below is None else f"{number(below.read)}{'+' * below.truncated}",
        below_url=_branch_url(key),
        next_url=_branch_url(parent),
    )
    return render(request, "keyedcache/detail.html", context)


# -- deletes ------------------------------------------------------------------------------


def _count(store: KeyedCache, patterns: list[str]) -> int | None:
    """How many keys match the globs (a count taken before a delete), None if unknown."""
    try:
        return sum(sum(1 for _ in store.iter_keys(pattern)) for pattern in patterns)
    except NotImplementedError:
        return None


def _keys(count: int | None) -> str:
    if count is None:
        return "an unknown number of keys (this backend cannot count them)"
    return "1 key" if count == 1 else f"{number(count)} keys"


def perform_delete(store: KeyedCache, action: str, data: dict[str, Any]) -> tuple[int | None, str]:
    """Carry out one delete; return (keys deleted or None if unknown, what was deleted).

    Backends that list keys report exactly what they deleted; on the others
    (memcached, file-based) the keys are counted just before the delete.
    Raises NotImplementedError for a pattern delete on a backend that cannot list keys.
    """
    exact = store.adapter.enumerates
    if action == "key":
        key = data["key"]
        if data.get("children"):
            before = (
                None if exact else _count(store, [glob_literal(key), glob_literal(key) + "::*"])
            )
            deleted = store.delete(key, children=True)
            return (len(deleted) if exact else before), f"“{shown(key)}” and every key below it"
        return len(store.delete(key)), f"“{shown(key)}”"
    if action == "pattern":
        pattern = data["pattern"]
        return store.delete_pattern(pattern), f"the keys matching “{shown(pattern)}”"
    if action == "all":
        before = None if exact else _count(store, ["*"])
        deleted = store.delete_all()
        return (len(deleted) if exact else before), "every keyedcache entry"
    raise ValueError(f"unknown delete action {action!r}")


def _safe_next(request: HttpRequest, target: str) -> str | None:
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return None


def _initial(request: HttpRequest) -> dict[str, Any]:
    """Pre-filled key and pattern forms from the query string (never the delete-all form)."""
    initial: dict[str, Any] = {}
    for name in ("key", "pattern", "next"):
        if name in request.GET:
            initial[name] = request.GET[name]
    if request.GET.get("children") in ("on", "1", "true"):
        initial["children"] = True
    return initial


@staff_member_only
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def delete_page(request: HttpRequest) -> HttpResponse:
    """Delete a key, a key and its subtree, the keys matching a glob, or everything.

    GET only shows the forms. A POST needs the delete permission, deletes,
    logs who deleted what, and redirects with a message saying how many keys went.
    """
    store = default_cache()
    initial = _initial(request)
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
                else:
                    log.info(
                        "keyedcache: %s deleted %s (%s) from cache alias %r",
                        request.user.get_username() or f"user #{request.user.pk}",
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
    context = _context(
        request,
        "Delete cache keys",
        "delete",
        key_form=forms_by_action["key"],
        pattern_form=forms_by_action["pattern"],
        all_form=forms_by_action["all"],
        enumerates=store.adapter.enumerates,
        adapter=store.adapter.name,
        permission=DELETE_PERMISSION,
    )
    return render(request, "keyedcache/delete.html", context, status=status)
