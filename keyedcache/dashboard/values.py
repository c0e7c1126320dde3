"""How the key page shows a value: a bounded representation, its type, a model's fields."""

from __future__ import annotations

import pprint
import reprlib
from typing import Any

from django.db import models

from keyedcache.dashboard.formatting import number

#: Characters of a value's representation shown on the key page.
MAX_REPR = 20_000
#: Values whose stored size is below this are pretty-printed (pprint), others reprlib'd.
PRETTY_PRINT_BYTES = 32_000
#: Fields of a model instance listed on the key page.
MAX_FIELDS = 100


class _BoundedRepr(reprlib.Repr):
    """reprlib's Repr, with bytes and bytearrays cut before they are written out (reprlib
    would write all 50 MB of a bytes value, then cut the text)."""

    def _cut(self, x: bytes | bytearray) -> str:
        if len(x) <= self.maxstring:
            return repr(x)
        half = max(0, (self.maxstring - 3) // 2)
        return f"{x[:half]!r}...{x[len(x) - half :]!r}"

    def repr_bytes(self, x: bytes, level: int) -> str:
        return self._cut(x)

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        return self._cut(x)


_value_repr = _BoundedRepr()
_value_repr.maxlevel = 6
_value_repr.maxstring = 2_000
_value_repr.maxlong = 400
_value_repr.maxother = 2_000
_value_repr.maxlist = _value_repr.maxtuple = _value_repr.maxdeque = 100
_value_repr.maxset = _value_repr.maxfrozenset = _value_repr.maxdict = 100
_value_repr.maxarray = 100

_field_repr = _BoundedRepr()
_field_repr.maxstring = _field_repr.maxother = 500
_field_repr.maxlist = _field_repr.maxtuple = _field_repr.maxdict = 20


def safe_repr(value: Any, size: int) -> tuple[str, bool]:
    """A representation of `value` of at most MAX_REPR characters; say whether it was cut.

    Big values (stored size above PRETTY_PRINT_BYTES) go through reprlib,
    which cuts long strings and collections before building the text.
    """
    try:
        if size <= PRETTY_PRINT_BYTES:
            text = pprint.pformat(value, width=100, sort_dicts=False)
        else:
            text = _value_repr.repr(value)
    except Exception as exc:  # a __repr__ that fails must not break the page
        return f"<repr() failed: {type(exc).__name__}: {exc}>", False
    if len(text) > MAX_REPR:
        return text[:MAX_REPR] + " …", True
    return text, size > PRETTY_PRINT_BYTES and "..." in text


def describe_type(value: Any) -> str:
    """The value's type, with its length for sized values: 'dict (3 items)'."""
    kind = type(value)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    if isinstance(value, models.Model):
        return f"{name} (model {value._meta.label}, pk {value.pk!r})"
    try:
        length = len(value)
    except Exception:
        return name
    if isinstance(value, str):
        unit = "characters"
    elif isinstance(value, (bytes, bytearray)):
        unit = "bytes"
    else:
        unit = "items"
    return f"{name} ({number(length)} {unit if length != 1 else unit[:-1]})"


def model_facts(value: Any) -> dict[str, Any] | None:
    """For a model instance: its label, pk, and (name, value) of its concrete fields as
    stored in the instance (foreign keys as their id); None for anything else."""
    if not isinstance(value, models.Model):
        return None
    fields = []
    for field in value._meta.concrete_fields[:MAX_FIELDS]:
        try:
            shown = _field_repr.repr(value.__dict__.get(field.attname, "<not loaded>"))
        except Exception as exc:
            shown = f"<repr() failed: {type(exc).__name__}>"
        fields.append({"name": field.attname, "value": shown})
    return {
        "label": value._meta.label,
        "verbose_name": str(value._meta.verbose_name),
        "pk": _field_repr.repr(value.pk),
        "fields": fields,
        "more": max(len(value._meta.concrete_fields) - MAX_FIELDS, 0),
    }
