"""Adapter for Django's DatabaseCache: lists keys with a LIKE on the cache table, streamed."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connections, router
from django.utils.timezone import now as tz_now

from keyedcache.backends.base import EnumeratingAdapter

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


class DatabaseAdapter(EnumeratingAdapter):
    """Database cache (any Django database): keys are rows, so a prefix is a LIKE query."""

    name = "database"
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
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(self.fetch_size):
                for (made,) in rows:
                    # LIKE ignores case on SQLite and MySQL's usual collations.
                    if made.startswith(wanted):
                        yield made[start:]
