"""Keyval's size limits, in a leaf module: the model and the store both need them."""

from __future__ import annotations

#: Longest store name (characters). Store and key together stay within the
#: index-entry limits of PostgreSQL (about 2,700 bytes) and MySQL/InnoDB
#: (3,072 bytes) at four bytes per character.
MAX_STORE_LENGTH = 128
#: Longest key (characters).
MAX_KEY_LENGTH = 512
