"""Adapter for Django's DatabaseCache: lists keys with a LIKE on the cache table, streamed."""

from __future__ import annotations

import base64
import pickle
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.core.cache.backends import db as django_db
from django.db import IntegrityError, connections, router, transaction

from keyedcache.backends.base import DECODE_ERRORS, Timeout, Undecodable
from keyedcache.backends.stamped import StampedAdapter

# The statement that turns an INSERT into an upsert, per database vendor.
_UPSERT = {
    "postgresql": (
        "ON CONFLICT (cache_key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires"
    ),
    "sqlite": (
        "ON CONFLICT (cache_key) DO UPDATE SET value = excluded.value, expires = excluded.expires"
    ),
    # MySQL/MariaDB would take "ON DUPLICATE KEY UPDATE ...": not enabled until a
    # MariaDB server is in the test matrix; they use Django's own writes meanwhile.
}

# '!' rather than '\\' as the LIKE escape: backslash means different things in
# the string literals of SQLite, PostgreSQL and MySQL.
_LIKE_ESCAPE = "!"


def _now() -> datetime:
    """Now, on the clock Django's DatabaseCache decides expiry with (rows are shared)."""
    now: datetime = django_db.tz_now()  # type: ignore[attr-defined]
    return now


def heal(connection: Any) -> None:
    """Close this thread's database connection if an earlier error broke it.

    Django reconnects on the next query, but only once the broken connection is
    closed, and it closes them at request boundaries only: a thread outside
    requests (a worker loop, a command) would keep failing after the database
    came back. Costs one attribute read unless an error occurred on it.
    """
    if not connection.errors_occurred or connection.in_atomic_block:
        return
    if connection.connection is not None and connection.is_usable():
        connection.errors_occurred = False
    else:
        connection.close()


def like_prefix(prefix: str) -> str:
    """Return a LIKE pattern (escape '!') matching every string that starts with `prefix`."""
    escaped = (
        prefix.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )
    return escaped + "%"


class DatabaseAdapter(StampedAdapter):
    """Database cache (any Django database): keys are rows, so a prefix is a LIKE query."""

    name = "database"
    enumerates = True
    fetch_size = 2000

    def scan(self, stored_prefix: str) -> Iterator[str]:
        made_prefix = self.made_prefix
        if made_prefix is None:
            return
        cache = self.cache
        model = cache.cache_model_class  # type: ignore[attr-defined]
        # The write database: a lagging replica could hide keys a delete must see.
        connection = connections[router.db_for_write(model)]
        quote = connection.ops.quote_name
        # Same "not expired" test as DatabaseCache.has_key.
        now = _now().replace(microsecond=0, tzinfo=None)
        sql = (
            f"SELECT {quote('cache_key')} FROM {quote(cache._table)} "  # type: ignore[attr-defined]
            f"WHERE {quote('cache_key')} LIKE %s ESCAPE '{_LIKE_ESCAPE}' "
            f"AND {quote('expires')} > %s"
        )
        params = [
            like_prefix(made_prefix + stored_prefix),
            connection.ops.adapt_datetimefield_value(now),
        ]
        start = len(made_prefix)
        wanted = made_prefix + stored_prefix
        # A server-side cursor where the database has one (PostgreSQL), as
        # QuerySet.iterator() uses: rows arrive fetch_size at a time instead of
        # the whole result landing in the client at execute().
        chunked = not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
        with connection.chunked_cursor() if chunked else connection.cursor() as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(self.fetch_size):
                for (made,) in rows:
                    # LIKE ignores case on SQLite and MySQL's usual collations.
                    if made.startswith(wanted):
                        yield made[start:]

    # -- the raw layer: one statement per batch, no COUNT(*) -----------------------
    # Django's DatabaseCache runs SELECT COUNT(*) on the whole table before every
    # set, add and touch (to decide whether to cull): O(rows), which at a million
    # rows costs more than everything else a write does. keyedcache writes its
    # rows itself, in Django's format (base64 of the pickle, the same expiry), with
    # one upsert per batch, and deletes expired rows every `cleanup_every` writes
    # (an index range on `expires`, O(expired rows)). MAX_ENTRIES culling does not
    # run for these writes; see docs/backends.md.

    #: Writes between two deletes of expired rows.
    cleanup_every = 1000

    def _sql(self) -> tuple[Any, Any, str, str] | None:
        """(connection, db alias, quoted table, vendor) where the upsert is known, else None."""
        cache: Any = self.cache
        db = router.db_for_write(cache.cache_model_class)
        connection = connections[db]
        heal(connection)
        if self.made_prefix is None or connection.vendor not in _UPSERT:
            return None
        return connection, db, connection.ops.quote_name(cache._table), connection.vendor

    def _row(self, value: Any, expires: Any, connection: Any) -> tuple[str, Any]:
        cache: Any = self.cache
        pickled = pickle.dumps(value, cache.pickle_protocol)
        return base64.b64encode(pickled).decode("latin1"), connection.ops.adapt_datetimefield_value(
            expires
        )

    def _expiry(self, timeout: Timeout) -> datetime:
        seconds = self.cache.get_backend_timeout(timeout)
        if seconds is None:
            return datetime.max.replace(microsecond=0)
        tz = dt_timezone.utc if settings.USE_TZ else None
        return datetime.fromtimestamp(seconds, tz=tz).replace(microsecond=0)

    def raw_get_many(self, stored_keys: list[str]) -> dict[str, Any]:
        found = self._sql()
        if found is None or not stored_keys:
            return super().raw_get_many(stored_keys)
        connection, _db, table, _vendor = found
        quote = connection.ops.quote_name
        prefix = self.made_prefix or ""
        by_made = {prefix + stored: stored for stored in stored_keys}
        now = connection.ops.adapt_datetimefield_value(_now().replace(microsecond=0))
        marks = ", ".join(["%s"] * len(by_made))
        # Django's get_many, minus make_key/validate_key and with one decode per
        # row, so a row that cannot be decoded spoils only itself. Expired rows
        # read as absent and are deleted, as Django's get does.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {quote('cache_key')}, {quote('value')}, {quote('expires')} < %s "
                f"FROM {table} WHERE {quote('cache_key')} IN ({marks})",
                [now, *by_made],
            )
            rows = cursor.fetchall()
        values: dict[str, Any] = {}
        expired = [made for made, _encoded, gone in rows if gone]
        if expired:
            self._delete_expired(connection, table, expired, now)
        for made, encoded, gone in rows:
            stored = by_made.get(made)
            if stored is None or gone:
                continue  # expired, or a case-insensitive collation matched another key
            try:
                values[stored] = pickle.loads(
                    base64.b64decode(connection.ops.process_clob(encoded))
                )
            except DECODE_ERRORS as exc:
                values[stored] = Undecodable(exc)
        return values

    @staticmethod
    def _delete_expired(connection: Any, table: str, made_keys: list[str], now: Any) -> None:
        quote = connection.ops.quote_name
        marks = ", ".join(["%s"] * len(made_keys))
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE {quote('cache_key')} IN ({marks}) "
                f"AND {quote('expires')} < %s",
                [*made_keys, now],
            )

    def raw_set_many(self, values: dict[str, Any], timeout: Timeout) -> None:
        found = self._sql()
        if found is None or not values:
            super().raw_set_many(values, timeout)
            return
        connection, db, table, vendor = found
        quote = connection.ops.quote_name
        expires = self._expiry(timeout)
        prefix = self.made_prefix or ""  # _sql() answered: it is set
        rows: list[Any] = []
        for stored, value in values.items():
            rows.extend([prefix + stored, *self._row(value, expires, connection)])
        marks = ", ".join(["(%s, %s, %s)"] * len(values))
        sql = (
            f"INSERT INTO {table} ({quote('cache_key')}, {quote('value')}, {quote('expires')}) "
            f"VALUES {marks} {_UPSERT[vendor]}"
        )
        with transaction.atomic(using=db), connection.cursor() as cursor:
            cursor.execute(sql, rows)
        self._after_writes(len(values), connection, table)

    def raw_add(self, stored: str, value: Any, timeout: Timeout) -> bool:
        found = self._sql()
        if found is None:
            return super().raw_add(stored, value, timeout)
        connection, db, table, _vendor = found
        quote = connection.ops.quote_name
        made = (self.made_prefix or "") + stored
        now = connection.ops.adapt_datetimefield_value(_now().replace(microsecond=0))
        encoded, expires = self._row(value, self._expiry(timeout), connection)
        columns = f"{quote('cache_key')}, {quote('value')}, {quote('expires')}"
        try:
            with transaction.atomic(using=db), connection.cursor() as cursor:
                # An expired row does not count as stored (as in Django's add).
                cursor.execute(
                    f"DELETE FROM {table} WHERE {quote('cache_key')} = %s "
                    f"AND {quote('expires')} < %s",
                    [made, now],
                )
                cursor.execute(
                    f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s)",
                    [made, encoded, expires],
                )
        except IntegrityError:
            return False  # a live row holds the key (or a racing add won)
        self._after_writes(1, connection, table)
        return True

    def raw_touch(self, stored: str, timeout: Timeout) -> None:
        found = self._sql()
        if found is None:
            super().raw_touch(stored, timeout)
            return
        connection, _db, table, _vendor = found
        quote = connection.ops.quote_name
        expires = connection.ops.adapt_datetimefield_value(self._expiry(timeout))
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {quote('expires')} = %s WHERE {quote('cache_key')} = %s",
                [expires, (self.made_prefix or "") + stored],
            )

    def _after_writes(self, count: int, connection: Any, table: str) -> None:
        self._writes = getattr(self, "_writes", 0) + count
        if self._writes < self.cleanup_every:
            return
        self._writes = 0
        quote = connection.ops.quote_name
        now = connection.ops.adapt_datetimefield_value(_now().replace(microsecond=0))
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE {quote('expires')} < %s", [now])

    # -- locks ------------------------------------------------------------------

    def lock_acquire(self, key: str, token: str, timeout: float) -> bool:
        """Take the lock: one INSERT decides, on the primary key, among racing callers.

        Django's `add` reads the row and then either inserts or, over an
        expired row, UPDATEs it: two callers taking over the same expired lock
        (its holder died) can both succeed, as PostgreSQL re-runs the second
        UPDATE once the first commits. Here an expired lock row is deleted and
        ours inserted in one transaction, so exactly one caller's INSERT wins.
        A live lock is seen with a plain read first (not `cache.get`, which
        deletes a row it read as expired even if it was replaced meanwhile):
        waiters that poll queue no write transactions while it is held, which
        SQLite would serialise ahead of the holder's own writes.
        """
        cache = self.cache
        db = router.db_for_write(cache.cache_model_class)  # type: ignore[attr-defined]
        connection = connections[db]
        heal(connection)
        quote = connection.ops.quote_name
        table = quote(cache._table)  # type: ignore[attr-defined]
        made = cache.make_key(self.lock_key(key))
        # The same clock as DatabaseCache, which reads these rows too (`expires < now`
        # is expired), and its whole-second expiry times.
        now = _now()
        adapt = connection.ops.adapt_datetimefield_value
        where = f"{quote('cache_key')} = %s AND {quote('expires')}"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {table} WHERE {where} >= %s", [made, adapt(now)])
            if cursor.fetchone() is not None:
                return False
        # Whole seconds, as the cache table stores them: round the deadline up,
        # so the lock excludes others for at least `timeout`.
        deadline = now + timedelta(seconds=timeout)
        expires = deadline.replace(microsecond=0)
        if expires < deadline:
            expires += timedelta(seconds=1)
        pickled = pickle.dumps(token, cache.pickle_protocol)  # type: ignore[attr-defined]
        value = base64.b64encode(pickled).decode("latin1")
        try:
            with transaction.atomic(using=db), connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {table} WHERE {where} < %s", [made, adapt(now)])
                cursor.execute(
                    f"INSERT INTO {table} ({quote('cache_key')}, {quote('value')}, "
                    f"{quote('expires')}) VALUES (%s, %s, %s)",
                    [made, value, adapt(expires)],
                )
        except IntegrityError:
            return False  # another caller's INSERT won
        return True
