"""Adapter for Django's DatabaseCache: lists keys with a LIKE on the cache table, streamed."""

from __future__ import annotations

import base64
import pickle
from collections.abc import Iterator
from datetime import timedelta

from django.db import IntegrityError, connections, router, transaction
from django.utils.timezone import now as tz_now

from keyedcache.backends.stamped import StampedAdapter

# '!' rather than '\\' as the LIKE escape: backslash means different things in
# the string literals of SQLite, PostgreSQL and MySQL.
_LIKE_ESCAPE = "!"


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
        now = tz_now().replace(microsecond=0, tzinfo=None)
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
        quote = connection.ops.quote_name
        table = quote(cache._table)  # type: ignore[attr-defined]
        made = cache.make_key(self.lock_key(key))
        # The same clock as DatabaseCache, which reads these rows too (`expires < now`
        # is expired), and its whole-second expiry times.
        now = tz_now()
        adapt = connection.ops.adapt_datetimefield_value
        where = f"{quote('cache_key')} = %s AND {quote('expires')}"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {table} WHERE {where} >= %s", [made, adapt(now)])
            if cursor.fetchone() is not None:
                return False
        expires = (now + timedelta(seconds=self.lock_ttl(timeout))).replace(microsecond=0)
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
