"""KeyedCachePanel: the keyed reads, memoized executions and single-flight waits of one request.

The panel listens to keyedcache.signals only while a request it instruments
runs (the receivers are connected while at least one such request is in
flight), and keeps what each signal reports in the panel of the request whose
context sent it, so concurrent requests never see each other's calls.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar, Token
from typing import Any

from debug_toolbar.panels import Panel
from django.apps import apps
from django.core import checks

from keyedcache import signals

#: The panel of the request running in this context (None outside instrumented requests).
_current: ContextVar[KeyedCachePanel | None] = ContextVar("keyedcache_toolbar_panel", default=None)
_lock = threading.Lock()
#: Panels instrumenting a request right now (the receivers are connected while > 0).
_active = [0]
#: Calls the panel keeps per request; later ones are counted, not listed.
MAX_CALLS = 1000

OUTCOME_LABELS = {
    signals.HIT: "hit",
    signals.MISS: "miss",
    signals.LOCAL_HIT: "request-scope hit",
    signals.LOCAL_MISS: "request-scope miss",
}


def _on_read(sender: Any, **named: Any) -> None:
    panel = _current.get()
    if panel is not None:
        panel.add_read(named)


def _on_execution(sender: Any, **named: Any) -> None:
    panel = _current.get()
    if panel is not None:
        panel.add_execution(named)


def _on_wait(sender: Any, **named: Any) -> None:
    panel = _current.get()
    if panel is not None:
        panel.add_wait(named)


_RECEIVERS = (
    (signals.cache_read, _on_read),
    (signals.memoized_execution, _on_execution),
    (signals.single_flight_wait, _on_wait),
)


def _listen(more: int) -> None:
    """Count a panel in (+1) or out (-1); connect or disconnect the receivers at 0."""
    with _lock:
        before = _active[0]
        _active[0] = max(before + more, 0)
        if before == 0 and _active[0] > 0:
            for signal, receiver in _RECEIVERS:
                signal.connect(receiver, weak=False, dispatch_uid=f"keyedcache-panel-{id(signal)}")
        elif before > 0 and _active[0] == 0:
            for signal, _receiver in _RECEIVERS:
                signal.disconnect(dispatch_uid=f"keyedcache-panel-{id(signal)}")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class KeyedCachePanel(Panel):
    """django-debug-toolbar panel: each keyed read of the request, with its outcome and time.

    A memoized call's row also shows the single-flight wait and the executions
    of the function that followed its miss.
    """

    title = "Keyed cache"
    template = "keyedcache/debug_toolbar/panel.html"
    is_async = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[dict[str, Any]] = []
        self.dropped = 0
        self._token: Token[KeyedCachePanel | None] | None = None

    @property
    def nav_subtitle(self) -> str:
        """ "N calls, H hits in T ms" in the toolbar's side bar."""
        totals = self.get_stats().get("totals", {})  # type: ignore[no-untyped-call]
        return "{} calls, {} hits in {:.2f} ms".format(
            totals.get("calls", 0),
            totals.get("hits", 0) + totals.get("local_hits", 0),
            totals.get("ms", 0.0),
        )

    # -- instrumentation --------------------------------------------------------------

    def enable_instrumentation(self) -> None:
        """Start recording the calls made in this request's context."""
        self._token = _current.set(self)
        _listen(+1)

    def disable_instrumentation(self) -> None:
        """Stop recording (the receivers are disconnected when no request records)."""
        _listen(-1)
        token, self._token = self._token, None
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # ended in another context than it started in
                _current.set(None)

    def _row(self, named: dict[str, Any]) -> dict[str, Any] | None:
        if len(self.calls) >= MAX_CALLS:
            self.dropped += 1
            return None
        row: dict[str, Any] = {
            "key": str(named.get("key")),
            "alias": str(named.get("alias", "")),
            "operation": str(named.get("operation", "")),
            "outcome": "",
            "ms": 0.0,
            "wait_ms": None,
            "wait_timed_out": False,
            "executions": 0,
            "execution_ms": 0.0,
        }
        self.calls.append(row)
        return row

    def _last_row_of(self, key: str) -> dict[str, Any] | None:
        """The latest row of `key` (a memoized call's read), or a new row for it."""
        for index in range(len(self.calls) - 1, max(len(self.calls) - 50, 0) - 1, -1):
            if self.calls[index]["key"] == key:
                return self.calls[index]
        return self._row({"key": key, "operation": "memoized"})

    def add_read(self, named: dict[str, Any]) -> None:
        """Record a `cache_read` signal."""
        row = self._row(named)
        if row is not None:
            row["outcome"] = str(named.get("outcome", ""))
            row["ms"] = _ms(float(named.get("seconds", 0.0)))

    def add_execution(self, named: dict[str, Any]) -> None:
        """Record a `memoized_execution` signal on its call's row."""
        row = self._last_row_of(str(named.get("key")))
        if row is not None:
            row["executions"] += 1
            row["execution_ms"] = round(row["execution_ms"] + _ms(named.get("seconds", 0.0)), 3)

    def add_wait(self, named: dict[str, Any]) -> None:
        """Record a `single_flight_wait` signal on its call's row."""
        row = self._last_row_of(str(named.get("key")))
        if row is not None:
            row["wait_ms"] = round((row["wait_ms"] or 0.0) + _ms(named.get("seconds", 0.0)), 3)
            row["wait_timed_out"] = row["wait_timed_out"] or bool(named.get("timed_out"))

    # -- results ------------------------------------------------------------------------

    def generate_stats(self, request: Any, response: Any) -> None:
        """Store the request's calls and totals (plain data: the toolbar may serialize it)."""
        outcomes = [row["outcome"] for row in self.calls]
        rows = [
            {**row, "outcome_label": OUTCOME_LABELS.get(row["outcome"], "")} for row in self.calls
        ]
        totals = {
            "calls": sum(1 for outcome in outcomes if outcome),
            "hits": outcomes.count(signals.HIT),
            "misses": outcomes.count(signals.MISS) + outcomes.count(signals.LOCAL_MISS),
            "local_hits": outcomes.count(signals.LOCAL_HIT),
            "executions": sum(row["executions"] for row in self.calls),
            "waits": sum(1 for row in self.calls if row["wait_ms"] is not None),
            "ms": round(sum(row["ms"] for row in self.calls), 3),
        }
        stats = {"calls": rows, "totals": totals, "dropped": self.dropped}
        self.record_stats(stats)  # type: ignore[no-untyped-call]

    @classmethod
    def run_checks(cls) -> list[checks.CheckMessage]:
        """Error keyedcache.E111 when the panel's app (its template) is not installed."""
        if apps.is_installed("keyedcache.contrib.debug_toolbar"):
            return []
        return [
            checks.Error(
                "KeyedCachePanel is in DEBUG_TOOLBAR_PANELS but its app is not installed",
                hint='Add "keyedcache.contrib.debug_toolbar" to INSTALLED_APPS.',
                id="keyedcache.E111",
            )
        ]
