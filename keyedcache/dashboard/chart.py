"""The SVG geometry of the stats page's per-minute chart: bars of calls, a line of the hit rate."""

from __future__ import annotations

import math
from typing import Any

from keyedcache.counters import hit_rate
from keyedcache.dashboard.formatting import clock, number, percent

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
        rate = hit_rate(point)
        x = _LEFT + i * slot
        height = plot_h * calls / top
        label = f"{clock(point['minute'])}: {number(calls)} calls"
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
        {"x": round(_LEFT + i * slot + slot / 2, 1), "label": clock(point["minute"])}
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
