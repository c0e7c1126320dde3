"""manage.py keyedcache: look at and delete keyedcache entries from the command line.

    manage.py keyedcache stats                  figures of every worker process
    manage.py keyedcache keys [PATTERN]         keys matching a glob (default '*'), sorted
    manage.py keyedcache get KEY                the value cached under KEY
    manage.py keyedcache ttl KEY                seconds until KEY expires
    manage.py keyedcache delete KEY [--children]
    manage.py keyedcache delete-pattern PATTERN
    manage.py keyedcache clear [--yes]          every keyedcache entry (asks first)

Every subcommand takes --alias (default: KEYEDCACHE_ALIAS), --json and -v. KEY is
a logical key as text, e.g. `product::1`. Exit status: 0 done, 1 not found (get,
ttl) or the backend cannot do it, 2 bad arguments (nothing is deleted), 3 the
backend did not answer (nothing is reported as done; --json prints an "error"),
141 the reader of the output closed it early (`keys | head`).
"""

from __future__ import annotations

import contextlib
import pprint
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

import keyedcache
from keyedcache import conf
from keyedcache.dashboard.secrets import outage_message
from keyedcache.exceptions import CacheNotRespondingError, NotCachedError
from keyedcache.keys import glob_literal
from keyedcache.management.cli import (
    PipeSafeCommand,
    Progress,
    dump_json,
    render_stats,
    subcommands,
    verbosity_option,
)
from keyedcache.registry import get_cache

#: Exit status for "not found" / "cannot", for bad arguments, and for a backend that did not answer.
FAILED, USAGE, UNREACHABLE = 1, 2, 3


class Command(PipeSafeCommand):
    help = (
        "Look at and delete keyedcache entries: stats, keys [PATTERN], get KEY, ttl KEY, "
        "delete KEY [--children], delete-pattern PATTERN, clear [--yes]. Each takes "
        "--alias and --json. Exit status 1 when a key is not cached, 2 for bad arguments, "
        "3 when the cache backend did not answer (nothing is reported as done)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        common = CommandParser(add_help=False)
        common.add_argument(
            "--alias",
            help="the cache alias (default: the KEYEDCACHE_ALIAS setting, else 'default')",
        )
        common.add_argument(
            "--json", action="store_true", help="print JSON for scripts instead of text"
        )
        verbosity_option(common)
        actions = subcommands(parser, "action", required=True)
        actions.add_parser(
            "stats",
            parents=[common],
            help="cache figures of every worker process",
            description="Calls, hits, misses, sets, deletes and errors, summed over processes.",
        )
        keys = actions.add_parser(
            "keys",
            parents=[common],
            help="list keys matching a glob",
            description="List the keys of keyedcache entries matching a glob, sorted.",
        )
        keys.add_argument(
            "pattern", nargs="?", default="*", help="glob: *, ?, [...] (default: '*')"
        )
        get = actions.add_parser("get", parents=[common], help="print the value cached under KEY")
        get.add_argument("key", help="a logical key, e.g. product::1")
        ttl = actions.add_parser(
            "ttl", parents=[common], help="print the seconds until KEY expires"
        )
        ttl.add_argument("key", help="a logical key, e.g. product::1")
        delete = actions.add_parser("delete", parents=[common], help="delete KEY")
        delete.add_argument("key", help="a logical key, e.g. product::1")
        delete.add_argument(
            "--children",
            action="store_true",
            help="also delete every key below KEY (product::1 takes product::1::x)",
        )
        pattern = actions.add_parser(
            "delete-pattern", parents=[common], help="delete the keys matching a glob"
        )
        pattern.add_argument("pattern", help="glob: *, ?, [...]")
        clear = actions.add_parser(
            "clear",
            parents=[common],
            help="delete every keyedcache entry (other data in the cache stays)",
        )
        clear.add_argument(
            "--yes",
            "-y",
            "--no-input",
            "--noinput",
            dest="yes",
            action="store_true",
            help="do not ask for confirmation",
        )

    # -- plumbing -------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        action: str = options["action"]
        self.as_json: bool = options["json"]
        self.verbosity: int = options["verbosity"]
        self.alias: str = options.get("alias") or conf.alias()
        if self.alias not in settings.CACHES:
            known = ", ".join(repr(a) for a in settings.CACHES) or "none"
            raise CommandError(
                f"unknown cache alias {self.alias!r} (CACHES has {known})", returncode=USAGE
            )
        for name in ("key", "pattern"):
            if name in options and not options[name]:
                raise CommandError(f"{action}: {name.upper()} must not be empty", returncode=USAGE)
        self.store = get_cache(self.alias)
        if action == "stats":
            self.do_stats()
            return
        if not self.store.enabled:
            raise CommandError(
                f"cache alias {self.alias!r} does not cache (dummy backend or TIMEOUT 0)",
                returncode=FAILED,
            )
        if action == "clear":
            self.confirm_clear(options["yes"])
        handler: Callable[..., None] = getattr(self, "do_" + action.replace("-", "_"))
        try:
            handler(**options)
        except NotImplementedError as exc:  # a backend that cannot list keys
            raise CommandError(str(exc), returncode=FAILED) from exc

    def emit(self, data: Any, text: str | None) -> None:
        """Print `data` as JSON with --json, else `text` (if any, and not -v 0)."""
        if self.as_json:
            self.stdout.write(dump_json(data))
        elif text is not None and self.verbosity:
            self.stdout.write(text)

    def progress(self, label: str) -> Progress:
        return Progress(self.stderr, label, self.verbosity > 0 and self.stderr.isatty())

    @contextlib.contextmanager
    def reaching(self, consequence: str, **data: Any) -> Iterator[None]:
        """A backend failure in the block exits with status 3, naming the alias and the failure
        (with --json, `data` and an "error" field are printed first). An empty result (a miss,
        no keys, nothing deleted) looks the same as an outage, so the block then calls
        `store.require()`, a set/get round trip that raises when the backend does not answer."""
        try:
            yield
        except CacheNotRespondingError as exc:
            message = f"{outage_message(exc, self.alias).rstrip('.')}. {consequence}"
            if self.as_json:
                self.stdout.write(dump_json({"alias": self.alias, **data, "error": message}))
            raise CommandError(message, returncode=UNREACHABLE) from exc

    # -- subcommands ------------------------------------------------------------------

    def do_stats(self) -> None:
        """Print keyedcache.stats() (or, where it does not exist, this process's counters)."""
        report = getattr(keyedcache, "stats", None)
        if callable(report) and not isinstance(report, types.ModuleType):
            data = report(alias=self.alias)
        else:
            from keyedcache.counters import counters

            data = {"process": {"counters": counters.snapshot()}, "cluster": False}
        # Records that could not be read look like fewer processes: check the backend.
        with self.reaching("Only this process's figures are known.", **data):
            self.store.require()
        if self.as_json:
            self.stdout.write(dump_json(data))
            return
        self.stdout.write(render_stats(data, self.alias))

    def do_keys(self, pattern: str, **options: Any) -> None:
        with self.reaching("No keys were listed.", pattern=pattern, keys=None):
            keys = self.store.keys(pattern, strict=True)
            if not keys:
                self.store.require()
        if self.as_json:
            self.stdout.write(dump_json(keys))
            return
        for key in keys:
            self.stdout.write(key)
        if self.verbosity > 1:
            self.note(f"{len(keys)} key(s) matching {pattern!r}")

    def do_get(self, key: str, **options: Any) -> None:
        try:
            value = self.store.get(key)
        except NotCachedError:
            self.not_cached(key)
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        data = {"key": key, "found": True, "value": value, "type": kind}
        if self.as_json:
            self.stdout.write(dump_json(data))
        else:
            self.stdout.write(value if isinstance(value, str) else pprint.pformat(value))

    def do_ttl(self, key: str, **options: Any) -> None:
        millis = self.store.pttl(key)
        if millis == 0:
            self.not_cached(key)
        seconds = None if millis is None else -(-millis // 1000)
        text = "never expires" if seconds is None else f"{seconds} s"
        self.emit({"key": key, "found": True, "ttl": seconds, "pttl": millis}, text)

    def do_delete(self, key: str, children: bool, **options: Any) -> None:
        # A subtree goes in one token write that cannot name what it took: backends that
        # list keys name it from a listing just before; memcached and file cannot.
        exact = not children or self.store.enumerates
        data: dict[str, Any] = {"key": key, "children": children, "exact": exact}
        what = f"{key!r} and the keys below it" if children else repr(key)
        with self.reaching(f"{what} may still be cached.", **data, deleted=None, count=None):
            below = glob_literal(key) + "::*"
            listed = self.store.keys(below, strict=True) if children and exact else []
            deleted = self.store.delete(key, children=children, strict=True)
            deleted += [name for name in listed if name not in deleted]
            if not deleted:
                self.store.require()
        if not deleted:
            text = f"nothing was cached under {key!r}"
            if children and not exact:
                text = f"deleted everything below {key!r} ({key!r} itself was not cached)"
        elif not children:
            text = f"deleted {key!r}"
        elif exact:
            text = f"deleted {len(deleted)} key(s): {key!r} and below"
        else:
            text = f"deleted {key!r} and everything below it"
        self.emit({**data, "deleted": deleted, "count": len(deleted)}, text)
        if self.verbosity > 1 and not self.as_json:
            for name in deleted:
                self.stdout.write(f"  {name}")

    def do_delete_pattern(self, pattern: str, **options: Any) -> None:
        bar = self.progress("deleting")
        consequence = f"Keys matching {pattern!r} may still be cached (some may be deleted)."
        with self.reaching(consequence, pattern=pattern, deleted=None):
            try:
                count = self.store.delete_pattern(pattern, progress=bar, strict=True)
            finally:
                bar.finish()
            if not count:
                self.store.require()
        text = f"deleted {count} key(s) matching {pattern!r}"
        self.emit({"pattern": pattern, "deleted": count}, text)

    def confirm_clear(self, yes: bool) -> None:
        """Ask on a terminal; without one, refuse unless --yes (exit status 2)."""
        if yes:
            return
        if not _stdin_is_a_terminal():
            raise CommandError(
                f"clear deletes every keyedcache entry of cache alias {self.alias!r}; "
                "there is no terminal to confirm it on: pass --yes. Nothing was deleted.",
                returncode=USAGE,
            )
        answer = input(
            f"Delete every keyedcache entry of cache alias {self.alias!r} "
            f"({self.store.adapter_name})? Other data in that cache stays. [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandError("clear cancelled; nothing was deleted", returncode=FAILED)

    def do_clear(self, **options: Any) -> None:
        count: int | None = None
        consequence = "keyedcache entries may still be cached: run clear again once it answers."
        with self.reaching(consequence, cleared=False, deleted=None):
            if self.store.enumerates:
                # Listed and deleted in batches (a progress bar); delete_all then
                # takes whatever the listing could not name.
                bar = self.progress("clearing")
                try:
                    count = self.store.delete_pattern("*", progress=bar, strict=True)
                finally:
                    bar.finish()
                count += len(self.store.delete_all(strict=True))
            else:
                # Generation tokens: one write drops every entry, nothing to count.
                self.store.delete_all(strict=True)
        text = (
            f"deleted every keyedcache entry of cache alias {self.alias!r}"
            if count is None
            else f"deleted {count} key(s) from cache alias {self.alias!r}"
        )
        self.emit({"alias": self.alias, "cleared": True, "deleted": count}, text)

    def not_cached(self, key: str) -> NoReturn:
        # A read that fails is a miss: make sure this one is not an outage.
        with self.reaching(f"Cannot tell whether {key!r} is cached.", key=key, found=None):
            self.store.require()
        if self.as_json:
            self.stdout.write(dump_json({"key": key, "found": False}))
        raise CommandError(
            f"{key!r} is not cached in cache alias {self.alias!r}", returncode=FAILED
        )


def _stdin_is_a_terminal() -> bool:
    try:
        return bool(sys.stdin and sys.stdin.isatty())
    except (AttributeError, ValueError):  # replaced or closed
        return False
