"""Admin for database stores: browse and search rows, edit values that are text or JSON."""

from __future__ import annotations

import json
import math
import reprlib
from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from keyedcache.contrib.keyval.backends import DatabaseBackend, get_backend
from keyedcache.contrib.keyval.models import KeyValEntry
from keyedcache.contrib.keyval.store import dumps

_short = reprlib.Repr()
_short.maxstring = 100
_short.maxother = 100
_short.maxlist = _short.maxtuple = _short.maxset = _short.maxdict = 8

TEXT, JSON = "text", "json"


def _json_compatible(value: Any) -> bool:
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_json_compatible(item) for item in value)
    if kind is dict:
        return all(type(k) is str and _json_compatible(v) for k, v in value.items())
    return False


def edit_kind(value: Any) -> str | None:
    """How `value` is edited in the admin: TEXT (a str), JSON, or None (read-only).

    Only values that come back with the same type are editable: str, int,
    float, bool, None and lists/dicts of them (dict keys str). Text with a
    carriage return or NUL is edited as JSON, so browsers cannot alter it.
    """
    if type(value) is str and "\r" not in value and "\x00" not in value:
        return TEXT
    return JSON if _json_compatible(value) else None


def _load(entry: KeyValEntry) -> tuple[Any, Exception | None]:
    try:
        return entry.load(), None
    except Exception as exc:  # a class that no longer imports, say
        return None, exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def admin_backend() -> DatabaseBackend:
    """The database store the admin shows: the configured one, else plain 'db://'."""
    backend = get_backend()
    if not isinstance(backend, DatabaseBackend):
        backend = get_backend("db://")
    assert isinstance(backend, DatabaseBackend)
    return backend


class KeyValEntryForm(forms.ModelForm):  # type: ignore[type-arg]
    """Store and key (for new rows), and the value as text or JSON when its type allows."""

    kind = forms.ChoiceField(
        label="Value type",
        choices=[
            (TEXT, "Text (saved as a string)"),
            (JSON, "JSON (number, true/false, null, list, object)"),
        ],
        initial=TEXT,
    )
    text = forms.CharField(
        label="Value",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
    )

    class Meta:
        model = KeyValEntry
        fields = ("store", "key")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new_value: Any = None
        self.value_editable = True
        if self.instance._state.adding:
            # The unique (store, key) check runs on the database of the instance.
            self.instance._state.db = admin_backend().using
        else:
            value, error = _load(self.instance)
            kind = None if error else edit_kind(value)
            if kind is None:
                self.value_editable = False
                self.fields.pop("kind", None)
                self.fields.pop("text", None)
            else:
                self.fields["kind"].initial = kind
                self.fields["text"].initial = (
                    value if kind == TEXT else json.dumps(value, indent=2, ensure_ascii=False)
                )

    def clean(self) -> dict[str, Any]:
        """Turn the submitted text into the value to store, per the chosen type."""
        data: dict[str, Any] = super().clean() or {}
        if not self.value_editable or "text" not in data:
            return data
        text = data["text"].replace("\r\n", "\n")  # browsers send CRLF line ends
        if data.get("kind") == JSON:
            try:
                self.new_value = json.loads(text, parse_constant=_no_constant)
            except ValueError as exc:
                self.add_error("text", f"Not valid JSON: {exc}")
        else:
            self.new_value = text
        return data


@admin.register(KeyValEntry)
class KeyValEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The rows of every database store; saving and deleting here keep the cache in step."""

    form = KeyValEntryForm
    list_display = ("store", "key", "value_preview", "updated")
    list_display_links = ("store", "key")
    list_filter = ("store",)
    search_fields = ("store", "key")
    ordering = ("store", "key")
    list_per_page = 100

    def get_queryset(self, request: HttpRequest) -> QuerySet[KeyValEntry]:
        """Rows of the database the configured store uses."""
        return super().get_queryset(request).using(admin_backend().using)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        """Store, key and value; the value as a text field only when its type allows."""
        if obj is None:
            return ["store", "key", "kind", "text"]
        value, error = _load(obj)
        editable = error is None and edit_kind(value) is not None
        value_fields = ["kind", "text"] if editable else ["value_repr"]
        return ["store", "key", "value_type", *value_fields, "updated"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        """Everything but the value, once a row exists (a new key is a new row)."""
        if obj is None:
            return ()
        return ("store", "key", "value_type", "value_repr", "updated")

    @admin.display(description="value")
    def value_preview(self, obj: KeyValEntry) -> str:
        """A shortened repr of the value (escaped by the admin)."""
        value, error = _load(obj)
        return f"<cannot unpickle: {error!r}>" if error else _short.repr(value)

    @admin.display(description="type")
    def value_type(self, obj: KeyValEntry) -> str:
        """The value's type, or why it cannot be read."""
        value, error = _load(obj)
        if error:
            return f"cannot unpickle: {error!r}"
        kind = type(value)
        name = kind.__qualname__
        if kind.__module__ != "builtins":
            name = f"{kind.__module__}.{name}"
        return name if edit_kind(value) else f"{name} (read-only here)"

    @admin.display(description="value")
    def value_repr(self, obj: KeyValEntry) -> SafeString:
        """The full repr of a value that cannot be edited here."""
        value, error = _load(obj)
        shown = f"<cannot unpickle: {error!r}>" if error else repr(value)
        return format_html("<pre>{}</pre>", shown)

    def save_model(self, request: HttpRequest, obj: KeyValEntry, form: Any, change: bool) -> None:
        """Write through the store (which invalidates cached copies on commit)."""
        if not form.value_editable:
            return  # nothing on the page could change
        backend = admin_backend()
        backend.save(obj.store, obj.key, dumps(obj.store, obj.key, form.new_value))
        rows = backend.model._default_manager.using(backend.using)
        saved = rows.get(store=obj.store, key=obj.key)
        obj.pk, obj.value, obj.updated = saved.pk, saved.value, saved.updated
        obj._state.adding, obj._state.db = False, backend.using

    def delete_model(self, request: HttpRequest, obj: KeyValEntry) -> None:
        """Delete through the store, so cached copies go too."""
        admin_backend().remove(obj.store, obj.key)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[KeyValEntry]) -> None:
        """Delete the selected rows through the store, in one transaction."""
        backend = admin_backend()
        with transaction.atomic(using=backend.using):
            for store, key in queryset.values_list("store", "key"):
                backend.remove(store, key)
