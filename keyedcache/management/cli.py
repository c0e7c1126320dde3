"""What keyedcache's commands share: valid JSON, plain notes on stderr, a quiet closed pipe."""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import math
import os
import sys
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

#: Exit status when the reader of stdout went away (`keys | head`): 128 + SIGPIPE,
#: what a shell reports for a tool that the closed pipe stopped.
PIPE_CLOSED = 141

#: How JSON output shows the floats JSON has no literal for.
NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}
NAN = "NaN"


def _plain(text: str) -> str:
    return text


def finite(value: Any) -> Any:
    """`value` with every infinite or NaN float (in lists, tuples and dicts) made a string.

    JSON has no literal for them; Python's `json` would print `Infinity` and `NaN`,
    which strict parsers reject. They become "Infinity", "-Infinity" and "NaN",
    the words `float()` and JavaScript's `Number()` read back.
    """
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return NAN if math.isnan(value) else NON_FINITE[value]
    if isinstance(value, dict):
        return {
            finite(name) if isinstance(name, float) else name: finite(item)
            for name, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def jsonable(value: Any) -> Any:
    """A stand-in JSON can encode for `value` (dates as ISO text, anything else as repr)."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        # json.dumps calls back for elements it cannot hold, but not for floats.
        return finite(sorted(value, key=repr))
    return repr(value)


def dump_json(data: Any) -> str:
    """`data` as one line of strict JSON (see `finite` and `jsonable`)."""
    return json.dumps(finite(data), default=jsonable, ensure_ascii=False, allow_nan=False)


def verbosity_option(parser: argparse.ArgumentParser) -> None:
    """Let a subcommand take Django's `-v/--verbosity` after its name (`keys -v 2`).

    Its default is "not given", so a `-v` before the subcommand still counts.
    """
    parser.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=[0, 1, 2, 3],
        default=argparse.SUPPRESS,
        help="verbosity level; 0=minimal output, 1=normal output, 2=verbose output",
    )


class Progress:
    """A one-line progress bar on stderr, in plain text; silent when stderr is not a terminal."""

    width = 30

    def __init__(self, stream: Any, label: str, enabled: bool) -> None:
        self.stream = stream
        self.label = label
        self.enabled = enabled
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        filled = self.width * done // total
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total}", style_func=_plain, ending="")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("", style_func=_plain)  # end the bar's line


class PipeSafeCommand(BaseCommand):
    """A BaseCommand whose notes on stderr are plain text and that ends quietly, with
    status PIPE_CLOSED, when the reader of its output goes away (`| head`)."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        """Run the command; flush stdout here, so a closed pipe is seen while it can be handled."""
        try:
            output = super().execute(*args, **options)
            self.stdout.flush()
        except BrokenPipeError:
            _drop_stdout()
            raise SystemExit(PIPE_CLOSED) from None
        return output

    def note(self, text: str) -> None:
        """Write `text` to stderr as information: not in the red of Django's error style."""
        self.stderr.write(text, style_func=_plain)


def _drop_stdout() -> None:
    # Python flushes sys.stdout at exit, which would fail again on the closed pipe
    # and print "Exception ignored ...": point the descriptor at /dev/null instead.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no real stdout (replaced in tests)
        pass


def subcommands(parser: CommandParser, dest: str, required: bool) -> Any:
    """`parser.add_subparsers` with the title and metavar every keyedcache command uses."""
    return parser.add_subparsers(
        dest=dest, metavar="SUBCOMMAND", title="subcommands", required=required
    )


def render_stats(data: dict[str, Any], alias: str) -> str:
    """Readable text for a stats() report (or the per-process counters)."""
    process = data.get("process") or {}
    mine = process.get("counters") or {}
    totals = data.get("totals")
    lines = []
    if totals is not None:
        count = data.get("process_count")
        where = f"{count} process(es)" if count is not None else "all processes"
        finished = (data.get("finished") or {}).get("count")
        if finished:
            where += f", and {finished} that finished lately"
        if not data.get("cluster", True):
            where = "this process only (other processes' records cannot be read)"
        lines.append(f"keyedcache stats, cache alias {data.get('alias') or alias!r}: {where}")
        names = list(dict.fromkeys([*totals, *mine]))
        width = max([len(n) for n in names] + [8])
        lines.append(f"{'':{width}}  {'all':>12}  {'this process':>12}")
        for name in names:
            lines.append(f"{name:{width}}  {totals.get(name, 0):>12,}  {mine.get(name, 0):>12,}")
        lines.append(
            f"{'hit rate':{width}}  {_percent(data.get('hit_rate')):>12}  "
            f"{_percent(process.get('hit_rate')):>12}"
        )
        # Busiest by reads: a prefix that was only written or deleted is not busy.
        busy = [row for row in data.get("prefixes") or [] if int(row.get("calls", 0)) > 0]
        if busy:
            lines.append("")
            lines.append("busiest key prefixes:")
            pwidth = max(len(str(row.get("prefix"))) for row in busy[:10])
            lines.append(f"  {'prefix':{pwidth}}  {'calls':>10}  {'hits':>10}  {'hit rate':>8}")
            for row in busy[:10]:
                hits = int(row.get("hits", 0)) + int(row.get("local_hits", 0))
                lines.append(
                    f"  {row.get('prefix')!s:{pwidth}}  {int(row.get('calls', 0)):>10,}  "
                    f"{hits:>10,}  {_percent(row.get('hit_rate')):>8}"
                )
    else:
        lines.append(f"keyedcache counters of this process (cache alias {alias!r}):")
        width = max([len(n) for n in mine] + [8])
        lines += [f"  {name:{width}}  {value:>12,}" for name, value in mine.items()]
    return "\n".join(lines)


def _percent(rate: Any) -> str:
    return "-" if rate is None else f"{100 * float(rate):.1f}%"
