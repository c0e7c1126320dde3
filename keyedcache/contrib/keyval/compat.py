"""django_keyval's KeyVal exactly as it answered, for code ported without a change."""

from __future__ import annotations

from keyedcache.contrib.keyval.store import KeyVal as _KeyVal


class KeyVal(_KeyVal):
    """`KeyVal` with django_keyval 0.1.2's return values: `flush()` returns None.

    `from keyedcache.contrib.keyval.compat import KeyVal` replaces
    `from django_keyval.models import KeyVal` where code depends on that; every
    other call answers as `keyedcache.contrib.keyval.KeyVal` does (docs/keyval.md).
    """

    __slots__ = ()

    def flush(self) -> None:  # type: ignore[override]  # django_keyval's signature
        """Delete every key of this store; return None, as django_keyval did."""
        super().flush()
