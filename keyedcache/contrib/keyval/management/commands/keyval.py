"""manage.py keyval: set, get, delete, list and flush keys of a KeyVal store."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from keyedcache.contrib.keyval.store import KeyVal

ACTIONS = ("set", "get", "del", "list", "flush")
#: Exit status for a missing key (or a value --json cannot show), and for flags that do not fit.
FAILED, USAGE = 1, 2


class Command(BaseCommand):
    """`keyval -c set|get|del -n NAME -k KEY [-V VALUE] [--json]`; `-c list|flush -n NAME`."""

    help = (
        "Work with a KeyVal store: -c set -n NAME -k KEY -V VALUE, -c get -n NAME -k KEY, "
        "-c del -n NAME -k KEY, -c list -n NAME, -c flush -n NAME. Values are text unless "
        "--json. A missing key exits with status 1, bad flags with status 2."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The flags of django_keyval (-c -n -k, capital -V for the value), plus --json."""
        parser.add_argument("-c", "--command", dest="action", choices=ACTIONS, required=True)
        parser.add_argument("-n", "--name", required=True, help="the store's name")
        parser.add_argument("-k", "--key", help="the key (set, get, del)")
        parser.add_argument("-V", "--value", help="the value to set (text unless --json)")
        parser.add_argument(
            "--json",
            action="store_true",
            help="-V is JSON; get prints JSON; list prints a JSON object of keys and values",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the action on the store; CommandError(returncode=1) for a missing key."""
        action, key, value = options["action"], options["key"], options["value"]
        as_json: bool = options["json"]
        try:
            store = KeyVal(options["name"])
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc), returncode=USAGE) from exc
        needs_key = action in ("set", "get", "del")
        if needs_key and key is None:
            raise CommandError(f"-c {action} needs a key: -k KEY", returncode=USAGE)
        if not needs_key and key is not None:
            raise CommandError(f"-c {action} takes no key (-k)", returncode=USAGE)
        if (action == "set") != (value is not None):
            problem = "needs a value: -V VALUE" if action == "set" else "takes no value (-V)"
            raise CommandError(f"-c {action} {problem}", returncode=USAGE)
        try:
            getattr(self, f"do_{action}")(store, key, value, as_json, options["verbosity"])
        except (TypeError, ValueError) as exc:  # an over-long key, say
            raise CommandError(str(exc), returncode=USAGE) from exc

    def _missing(self, store: KeyVal, key: str) -> CommandError:
        return CommandError(f"key {key!r} not found in store {store.name!r}", returncode=FAILED)

    def _show(self, value: Any, as_json: bool, what: str) -> str:
        if as_json:
            try:
                return json.dumps(value, ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise CommandError(f"{what} is not JSON: {exc}", returncode=FAILED) from exc
        return value if isinstance(value, str) else repr(value)

    def do_set(self, store: KeyVal, key: str, text: str, as_json: bool, verbosity: int) -> None:
        """Store the value; say whether the key was new."""
        value: Any = text
        if as_json:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise CommandError(f"-V is not valid JSON: {exc}", returncode=USAGE) from exc
        new = store.set(key, value)
        if verbosity:
            self.stdout.write(f"{'created' if new else 'updated'} {key!r} in store {store.name!r}")

    def do_get(self, store: KeyVal, key: str, text: None, as_json: bool, verbosity: int) -> None:
        """Print the value: text as it is, other values as repr (or JSON with --json)."""
        try:
            value = store.get(key)
        except KeyError:
            raise self._missing(store, key) from None
        self.stdout.write(self._show(value, as_json, f"the value of {key!r}"))

    def do_del(self, store: KeyVal, key: str, text: None, as_json: bool, verbosity: int) -> None:
        """Delete the key."""
        if not store.delete(key, ignore_keyerror=True):
            raise self._missing(store, key)
        if verbosity:
            self.stdout.write(f"deleted {key!r} from store {store.name!r}")

    def do_list(self, store: KeyVal, key: None, text: None, as_json: bool, verbosity: int) -> None:
        """Print the keys, one a line (with --json: an object of keys and values)."""
        if as_json:
            items = store.items()
            for name, value in items:  # name the culprit, if any
                self._show(value, True, f"the value of {name!r}")
            self.stdout.write(self._show(dict(items), True, "the store"))
            return
        for name in store:
            self.stdout.write(name)

    def do_flush(self, store: KeyVal, key: None, text: None, as_json: bool, verbosity: int) -> None:
        """Delete every key of the store."""
        count = store.flush()
        if verbosity:
            self.stdout.write(f"flushed {count} key(s) from store {store.name!r}")
