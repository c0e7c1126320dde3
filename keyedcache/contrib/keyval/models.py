"""KeyValEntry: one row per key of a database-backed KeyVal store."""

from __future__ import annotations

import pickle
from typing import Any

from django.db import models

from keyedcache.contrib.keyval.limits import MAX_KEY_LENGTH, MAX_STORE_LENGTH


class KeyValEntry(models.Model):
    """One key of one store; `value` holds the pickled value.

    Write through `KeyVal` (or the admin, or `manage.py keyval`): they keep the
    cache in step. A row changed with the ORM or SQL directly is not seen by
    readers until their cached copy expires.
    """

    store = models.CharField(max_length=MAX_STORE_LENGTH)
    key = models.CharField(max_length=MAX_KEY_LENGTH)
    value = models.BinaryField(help_text="The pickled value.")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "keyedcache_keyval_entry"
        verbose_name = "key-value entry"
        verbose_name_plural = "key-value entries"
        # Its index leads with `store`, so it also serves the per-store
        # queries (keys, count, flush): a separate index on store would only
        # slow down writes.
        constraints = [
            models.UniqueConstraint(fields=["store", "key"], name="keyedcache_keyval_store_key")
        ]

    def __str__(self) -> str:
        return f"{self.store}: {self.key}"

    def load(self) -> Any:
        """Return the stored value, unpickled."""
        return pickle.loads(self.value)
