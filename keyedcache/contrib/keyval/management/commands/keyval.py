"""manage.py keyval: set, get, delete, list and flush keys of a KeyVal store.

    manage.py keyval set NAME KEY VALUE        (or: -c set -n NAME -k KEY -V VALUE)
    manage.py keyval get NAME KEY              (or: -c get -n NAME -k KEY)
    manage.py keyval del NAME KEY              (or: -c del -n NAME -k KEY; `delete` too)
    manage.py keyval list NAME                 (or: -c list -n NAME)
    manage.py keyval flush NAME                (or: -c flush -n NAME)

Subcommands as `manage.py keyedcache` has them, and django_keyval's flags with
their long forms (`--command`, `--store_name`, `--key`/`--ke`, `--value`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from keyedcache.contrib.keyval.store import KeyVal
from keyedcache.management.cli import PipeSafeCommand, dump_json, subcommands, verbosity_option

ACTIONS = ("set", "get", "del", "list", "flush")
#: Exit status for a missing key (or a value --json cannot show), and for flags that do not fit.
FAILED, USAGE = 1, 2
#: The positional arguments of each subcommand, as (dest, metavar, help).
_NAME = ("name", "NAME", "the store's name")
_KEY = ("key", "KEY", "the key")
_VALUE = ("value", "VALUE", "the value (text unless --json)")
POSITIONALS = {
    "set": (_NAME, _KEY, _VALUE),
    "get": (_NAME, _KEY),
    "del": (_NAME, _KEY),
    "list": (_NAME,),
    "flush": (_NAME,),
}
#: What each flag is called in messages.
FLAGS = {"name": "-n NAME", "key": "-k KEY", "value": "-V VALUE"}


def _flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """django_keyval's flags with their long forms, and --json (`default`: of each flag)."""
    parser.add_argument(
        "-n",
        "--name",
        "--store_name",
        "--store-name",
        dest="name",
        default=default,
        help="the store's name",
    )
    parser.add_argument(
        "-k", "--key", "--ke", dest="key", default=default, help="the key (set, get, del)"
    )
    parser.add_argument(
        "-V", "--value", dest="value", default=default, help="the value (text unless --json)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="VALUE is JSON; get prints JSON; list prints a JSON object of keys and values",
    )


def _ask(dest: str, how: str) -> str:
    """How to give `dest`: the flag, or the argument (or the flag) after a subcommand."""
    flag = FLAGS[dest]
    return flag if how.startswith("-c ") else f"{flag.split()[1]} (or {flag})"


class Command(PipeSafeCommand):
    """`keyval set|get|del|list|flush NAME [KEY [VALUE]] [--json]`, or django_keyval's
    `keyval -c ACTION -n NAME [-k KEY] [-V VALUE]`."""

    help = (
        "Work with a KeyVal store: set NAME KEY VALUE, get NAME KEY, del NAME KEY, list NAME, "
        "flush NAME; or django_keyval's flags: -c set -n NAME -k KEY -V VALUE, and so on. "
        "Values are text unless --json. A missing key exits with status 1, bad arguments "
        "with status 2."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Subcommands, and django_keyval's flags (-c -n -k, capital -V for the value)."""
        parser.add_argument(
            "-c", "--command", dest="action", choices=ACTIONS, help="the action (django_keyval)"
        )
        _flags(parser, None)
        actions = subcommands(parser, "subcommand", required=False)
        for action, positionals in POSITIONALS.items():
            aliases = ["delete"] if action == "del" else []
            sub = actions.add_parser(action, aliases=aliases, help=f"{action} (see -h)")
            for dest, metavar, text in positionals:
                sub.add_argument(f"{dest}_arg", metavar=metavar, nargs="?", help=text)
            _flags(sub, argparse.SUPPRESS)
            verbosity_option(sub)

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the action on the store; CommandError(returncode=1) for a missing key."""
        action = self._action(options)
        # How the action was asked for, in messages: "-c get" or "get".
        how = action if options.get("subcommand") else f"-c {action}"
        for dest in ("name", "key", "value"):
            given = options.get(f"{dest}_arg")
            if given is not None:
                if options[dest] is not None:
                    raise CommandError(
                        f"{how}: {dest.upper()} is given twice (as an argument and as "
                        f"{FLAGS[dest]})",
                        returncode=USAGE,
                    )
                options[dest] = given
        name, key, value = options["name"], options["key"], options["value"]
        as_json: bool = options["json"]
        if name is None:
            raise CommandError(f"{how} needs a store name: {_ask('name', how)}", returncode=USAGE)
        try:
            store = KeyVal(name)
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc), returncode=USAGE) from exc
        needs_key = action in ("set", "get", "del")
        if needs_key and key is None:
            raise CommandError(f"{how} needs a key: {_ask('key', how)}", returncode=USAGE)
        if not needs_key and key is not None:
            raise CommandError(f"{how} takes no key (-k)", returncode=USAGE)
        if action == "set" and value is None:
            raise CommandError(f"{how} needs a value: {_ask('value', how)}", returncode=USAGE)
        if action != "set" and value is not None:
            raise CommandError(f"{how} takes no value (-V)", returncode=USAGE)
        try:
            getattr(self, f"do_{action}")(store, key, value, as_json, options["verbosity"])
        except (TypeError, ValueError) as exc:  # an over-long key, say
            raise CommandError(str(exc), returncode=USAGE) from exc

    def _action(self, options: dict[str, Any]) -> str:
        subcommand, flag = options.get("subcommand"), options.get("action")
        if subcommand is not None and flag is not None:
            raise CommandError(
                f"give the action once: subcommand {subcommand!r} or -c {flag}", returncode=USAGE
            )
        if subcommand is None and flag is None:
            raise CommandError(
                "no action: give a subcommand (set, get, del, list, flush) or -c ACTION",
                returncode=USAGE,
            )
        action = str(subcommand or flag)
        return "del" if action == "delete" else action

    def _missing(self, store: KeyVal, key: str) -> CommandError:
        return CommandError(f"key {key!r} not found in store {store.name!r}", returncode=FAILED)

    def _show(self, value: Any, as_json: bool, what: str) -> str:
        if as_json:
            try:
                json.dumps(value)  # only what JSON holds: no sets, dates or objects
                return dump_json(value)  # infinities and NaN as strings (docs/keyval.md)
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
