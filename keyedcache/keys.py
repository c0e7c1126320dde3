"""Pure key functions: key parts -> logical key -> safe storage key (no Django imports)."""

from __future__ import annotations

import datetime
import decimal
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

KEY_DELIM = "::"

# Digests are hex of blake2b: 20 hex chars (80 bits) keep keys short while a
# collision among the keys of one cache stays far below anything observable.
DIGEST_CHARS = 20

# A segment longer than this is shortened to a readable head plus a digest, so
# that no single argument can eat the whole memcached key budget.
MAX_SEGMENT = 64
SEGMENT_HEAD = 16

# Storage keys never contain '~' except where keyedcache put a digest, so a
# literal segment can never be mistaken for a digested one.
DIGEST_MARK = "~"
COLLAPSE_MARK = "~~"

# What memcached (and so Django's CacheKeyWarning) accepts: printable ASCII,
# no space. '~' is reserved for digests (see above).
_SAFE_SEGMENT = re.compile(r"[!-}]*")
_UNSAFE_CHAR = re.compile(r"[^!-}]")


def digest(data: bytes) -> str:
    """Return the stable hex digest keyedcache uses inside keys."""
    return hashlib.blake2b(data, digest_size=DIGEST_CHARS // 2).hexdigest()


# --- key parts -------------------------------------------------------------


def cache_key(*keys: Any, **pairs: Any) -> str:
    """Build the logical key for `keys` and `pairs`.

    `cache_key('test', 3, more='yes') == 'test::3::more::yes'`. A single list
    or tuple argument is taken as the list of parts. Pairs are sorted by name
    and appended as `name, value`.
    """
    return key_from(keys, pairs)


def key_from(keys: tuple[Any, ...], pairs: dict[str, Any]) -> str:
    """`cache_key` without re-packing arguments: the module functions' fast path."""
    if len(keys) == 1 and isinstance(keys[0], (list, tuple)):
        keys = tuple(keys[0])
    if pairs:
        keys = (*keys, *_flatten_pairs(pairs))
    # str and int parts inline: they are nearly every part on the hot path.
    return KEY_DELIM.join(
        [
            part if type(part) is str else str(part) if type(part) is int else key_part(part)
            for part in keys
        ]
    )


def _flatten_pairs(pairs: Mapping[str, Any]) -> list[Any]:
    flat: list[Any] = []
    for name in sorted(pairs):
        flat.append(name)
        flat.append(pairs[name])
    return flat


def key_part(part: Any) -> str:
    """Return the text one key part contributes to a logical key.

    Strings and numbers are used as text, an object with `__cache_key__()` by
    what that returns, a model instance (anything with a `pk`) by its pk, and
    containers, bytes, dates and UUIDs by a digest of a canonical encoding.
    """
    # Exact type checks first: they are the hot path for str and int parts.
    kind = type(part)
    if kind is str:
        return part  # type: ignore[no-any-return]
    if kind is int or kind is float or kind is bool or part is None:
        return str(part)
    if isinstance(part, (str, int, float, decimal.Decimal)):
        return str(part)
    method = getattr(part, "__cache_key__", None)
    if method is not None:
        return key_part(method())
    if _has_pk(part):
        return key_part(part.pk)
    if isinstance(part, _DIGESTED):
        return f"{_kind_name(part)}{DIGEST_MARK}{digest(canonical_bytes(part))}"
    raise TypeError(
        f"keyedcache cannot build a stable cache key from {_describe(part)}: "
        "use str, int, float, Decimal, bool, None, a tuple/list/dict/set of those, "
        "bytes, a date, a UUID or a model instance; or give the object a `pk` "
        "attribute or a `__cache_key__()` method that returns one of those."
    )


def _has_pk(part: Any) -> bool:
    # A class has a `pk` property descriptor but is not an instance.
    if isinstance(part, type):
        return False
    try:
        return hasattr(part, "pk") and part.pk is not None
    except Exception:
        return False


_DIGESTED = (
    tuple,
    list,
    dict,
    set,
    frozenset,
    bytes,
    bytearray,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
)


def _kind_name(part: Any) -> str:
    for base in _DIGESTED:
        if isinstance(part, base):
            return base.__name__
    return type(part).__name__  # pragma: no cover - only _DIGESTED reach here


def _describe(part: Any) -> str:
    text = repr(part)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(part).__module__}.{type(part).__qualname__} {text}"


def canonical_bytes(obj: Any) -> bytes:
    """Encode `obj` so equal values give equal bytes in every process.

    Dict and set order do not matter; nothing depends on `hash()` or pickle,
    so PYTHONHASHSEED and the Python version cannot change a key.
    """
    out: list[bytes] = []
    _encode(obj, out)
    return b"".join(out)


def _tagged(tag: bytes, payload: bytes) -> bytes:
    # Length-prefixing makes the encoding unambiguous when concatenated.
    return tag + str(len(payload)).encode() + b":" + payload


def _encode(obj: Any, out: list[bytes]) -> None:
    if obj is None or isinstance(obj, bool):
        out.append(_tagged(b"c", repr(obj).encode()))
    elif isinstance(obj, str):
        out.append(_tagged(b"s", obj.encode("utf-8", "surrogatepass")))
    elif isinstance(obj, int):
        out.append(_tagged(b"i", str(int(obj)).encode()))
    elif isinstance(obj, float):
        out.append(_tagged(b"f", repr(obj).encode()))
    elif isinstance(obj, decimal.Decimal):
        out.append(_tagged(b"m", str(obj).encode()))
    elif isinstance(obj, (bytes, bytearray)):
        out.append(_tagged(b"y", bytes(obj)))
    elif isinstance(obj, uuid.UUID):
        out.append(_tagged(b"u", obj.hex.encode()))
    elif isinstance(obj, datetime.datetime):
        out.append(_tagged(b"T", obj.isoformat().encode()))
    elif isinstance(obj, datetime.date):
        out.append(_tagged(b"D", obj.isoformat().encode()))
    elif isinstance(obj, datetime.time):
        out.append(_tagged(b"t", obj.isoformat().encode()))
    elif isinstance(obj, datetime.timedelta):
        out.append(_tagged(b"d", f"{obj.days},{obj.seconds},{obj.microseconds}".encode()))
    elif isinstance(obj, (list, tuple)):
        _encode_items(b"l" if isinstance(obj, list) else b"p", obj, out)
    elif isinstance(obj, (set, frozenset)):
        out.append(_tagged(b"S", b"".join(sorted(canonical_bytes(item) for item in obj))))
    elif isinstance(obj, dict):
        items = sorted(canonical_bytes(k) + canonical_bytes(v) for k, v in obj.items())
        out.append(_tagged(b"M", b"".join(items)))
    elif isinstance(obj, type):
        # A class (a classmethod's `cls`) by its import path: stable everywhere.
        out.append(_tagged(b"C", f"{obj.__module__}.{obj.__qualname__}".encode()))
    elif getattr(obj, "__cache_key__", None) is not None:
        _encode(obj.__cache_key__(), out)
    elif _has_pk(obj):
        model = type(obj)
        label = f"{model.__module__}.{model.__qualname__}"
        out.append(_tagged(b"o", label.encode()))
        _encode(obj.pk, out)
    else:
        raise TypeError(
            f"keyedcache cannot build a stable cache key from {_describe(obj)} "
            "(inside a container): give it a `pk` attribute or a `__cache_key__()` "
            "method, or pass a str/int/tuple/dict instead."
        )


def _encode_items(tag: bytes, items: Iterable[Any], out: list[bytes]) -> None:
    inner: list[bytes] = []
    for item in items:
        _encode(item, inner)
    out.append(_tagged(tag, b"".join(inner)))


# --- storage keys ------------------------------------------------------------


def is_safe_segment(segment: str) -> bool:
    """Tell whether a segment can be stored as it is on every backend."""
    return len(segment) <= MAX_SEGMENT and _SAFE_SEGMENT.fullmatch(segment) is not None


def safe_segment(segment: str) -> str:
    """Return `segment` itself when it is safe, else a readable head plus a digest."""
    if is_safe_segment(segment):
        return segment
    head = _UNSAFE_CHAR.sub("_", segment[:SEGMENT_HEAD])
    return f"{head}{DIGEST_MARK}{digest(segment.encode('utf-8', 'surrogatepass'))}"


def safe_path(key: str) -> str:
    """Make every `::` segment of a logical key safe, keeping the tree shape.

    Colons at either end of a segment stay as they are, so that
    `safe_path(k + '::' + s)` starts with `safe_path(k) + '::'` for every `k`,
    also when `k` ends in ':' (`'a b:::x'` lies below `'a b:'` as well as below
    `'a b'`, just as the plain `'a:::x'` lies below `'a:'` and `'a'`).
    """
    if _SAFE_SEGMENT.fullmatch(key) is not None and len(key) <= MAX_SEGMENT:
        return key  # fast path: short, plain keys are stored as they are
    return KEY_DELIM.join([_safe_path_segment(s) for s in key.split(KEY_DELIM)])


def _safe_path_segment(segment: str) -> str:
    if is_safe_segment(segment):
        return segment
    core = segment.strip(":")
    if len(core) == len(segment):
        return safe_segment(segment)
    lead = len(segment) - len(segment.lstrip(":"))
    return f"{segment[:lead]}{safe_segment(core)}{segment[lead + len(core) :]}"


def storage_key(key: str, namespace: str, budget: int) -> str:
    """Return the key keyedcache stores `key` under, at most `budget` characters.

    The result is `namespace:` plus the safe path. When that is too long, the
    head is cut at a segment boundary and the rest replaced by a digest of the
    whole logical key, so the result is still below its ancestors' prefix.
    """
    path = safe_path(key)
    stored = f"{namespace}:{path}"
    if len(stored) <= budget:
        return stored
    tail = f"{COLLAPSE_MARK}{digest(key.encode('utf-8', 'surrogatepass'))}"
    room = budget - len(namespace) - 1 - len(tail)
    if room < 0:
        raise ValueError(
            f"The cache key budget of {budget} characters cannot hold keyedcache's "
            f"namespace {namespace!r}; shorten KEY_PREFIX or KEYEDCACHE_NAMESPACE."
        )
    head = collapse_head(path, room)
    return f"{namespace}:{head}{tail}"


def collapse_head(path: str, room: int) -> str:
    """Return the longest prefix of `path` ending in `::` that fits in `room`."""
    cut = path.rfind(KEY_DELIM, 0, max(room, 0))
    return "" if cut < 0 else path[: cut + len(KEY_DELIM)]


def is_collapsed(stored: str) -> bool:
    """Tell whether a storage key had its tail replaced by a digest."""
    return COLLAPSE_MARK in stored


def glob_escape(text: str) -> str:
    """Escape the glob metacharacters `*?[]\\` in `text` with backslashes (Redis MATCH syntax)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def glob_literal(text: str) -> str:
    """A glob pattern matching exactly `text` (fnmatch knows no backslash escapes).

    For KeyedCache's own patterns, which are fnmatch globs: unlike
    `keyedcache.keys.glob_escape`, whose backslash escapes are Redis's MATCH
    syntax, a metacharacter is put in a one-character class (`*` -> `[*]`).
    """
    return re.sub(r"([*?\[])", r"[\1]", text)


_GLOB_META = re.compile(r"[*?\[]")


def pattern_scan_prefix(pattern: str, namespace: str) -> str:
    """Return the storage-key prefix every key matching glob `pattern` starts with.

    Only whole literal segments before the first wildcard narrow the scan:
    a partial segment may have been digested in storage.
    """
    meta = _GLOB_META.search(pattern)
    literal = pattern if meta is None else pattern[: meta.start()]
    cut = literal.rfind(KEY_DELIM)
    if cut < 0:
        return f"{namespace}:"
    return f"{namespace}:{safe_path(literal[:cut])}{KEY_DELIM}"
