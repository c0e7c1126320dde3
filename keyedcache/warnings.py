"""The warning category for keyedcache's own warnings (tests turn them into errors)."""


class KeyedCacheWarning(UserWarning):
    """Base class of every warning keyedcache issues."""
