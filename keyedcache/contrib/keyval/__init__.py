"""keyedcache.contrib.keyval: persistent named key-value stores read through the cache."""

from keyedcache.contrib.keyval.limits import MAX_KEY_LENGTH, MAX_STORE_LENGTH
from keyedcache.contrib.keyval.records import Field, Record
from keyedcache.contrib.keyval.store import DisconnectedError, KeyVal

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_STORE_LENGTH",
    "DisconnectedError",
    "Field",
    "KeyVal",
    "Record",
]
