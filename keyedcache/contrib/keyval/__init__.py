"""keyedcache.contrib.keyval: persistent named key-value stores read through the cache."""

from keyedcache.contrib.keyval.records import Field, Record
from keyedcache.contrib.keyval.store import (
    MAX_KEY_LENGTH,
    MAX_STORE_LENGTH,
    DisconnectedError,
    KeyVal,
)

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_STORE_LENGTH",
    "DisconnectedError",
    "Field",
    "KeyVal",
    "Record",
]
