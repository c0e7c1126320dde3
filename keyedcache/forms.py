"""Forms of the dashboard's delete page: one key (or its subtree), a glob pattern, everything."""

from __future__ import annotations

import base64
from typing import Any

from django import forms

#: What a user types to confirm deleting every keyedcache entry.
CONFIRM_WORD = "DELETE"


def _visible(text: str) -> bool:
    return bool(text.strip())


def encode_key(key: str) -> str:
    """`key` as URL-safe base64 of its UTF-8: survives any form field, control characters too."""
    return base64.urlsafe_b64encode(key.encode("utf-8", "surrogatepass")).decode("ascii")


def decode_key(encoded: str) -> str:
    """The key `encode_key` encoded; ValueError when `encoded` is not such a key."""
    try:
        return base64.urlsafe_b64decode(encoded.encode("ascii")).decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeError) as exc:
        raise ValueError(f"not an encoded key: {encoded!r}") from exc


class KeyDeleteForm(forms.Form):
    """Delete one key; with `children`, also every key below it (`a::b` takes `a::b::c`).

    The key comes typed in `key`, or from a key page's buttons in `encoded_key`
    (see encode_key): browsers rewrite line breaks in submitted values and
    Django's fields refuse NUL, but any key must be deletable.
    """

    action = forms.CharField(widget=forms.HiddenInput, initial="key")
    encoded_key = forms.CharField(widget=forms.HiddenInput, required=False)
    # Keys are used exactly as typed: a key may begin or end with a space.
    key = forms.CharField(
        label="Key to delete:",
        required=False,
        strip=False,
        max_length=10_000,
        widget=forms.TextInput(
            attrs={"size": 60, "autocomplete": "off", "spellcheck": "false", "class": "vTextField"}
        ),
    )
    children = forms.BooleanField(
        label="Also delete every key below it",
        required=False,
        help_text="For product::3 this also deletes product::3::reviews, not product::30.",
    )
    next = forms.CharField(widget=forms.HiddenInput, required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        encoded = cleaned.get("encoded_key")
        if encoded:
            try:
                cleaned["key"] = decode_key(encoded)
            except ValueError:
                raise forms.ValidationError("The key sent by the form is damaged.") from None
        elif "key" in cleaned and not _visible(cleaned["key"]):
            self.add_error("key", "Enter the key to delete.")
        return cleaned


class PatternDeleteForm(forms.Form):
    """Delete every key matching a glob pattern (`*`, `?`, `[...]`)."""

    action = forms.CharField(widget=forms.HiddenInput, initial="pattern")
    pattern = forms.CharField(
        label="Pattern:",
        strip=False,
        max_length=10_000,
        help_text="* matches any characters (:: included), ? one character, [abc] one of them.",
        widget=forms.TextInput(
            attrs={
                "size": 60,
                "autocomplete": "off",
                "spellcheck": "false",
                "class": "vTextField",
                "placeholder": "product::*::reviews",
            }
        ),
    )
    next = forms.CharField(widget=forms.HiddenInput, required=False)

    def clean_pattern(self) -> str:
        pattern: str = self.cleaned_data["pattern"]
        if not _visible(pattern):
            raise forms.ValidationError("Enter a pattern.")
        if not pattern.strip("*"):
            raise forms.ValidationError(
                "This pattern matches every key: use “Delete every keyedcache entry” below."
            )
        return pattern


class DeleteAllForm(forms.Form):
    """Delete every keyedcache entry; the user must type CONFIRM_WORD."""

    action = forms.CharField(widget=forms.HiddenInput, initial="all")
    confirm = forms.CharField(
        label=f"Type {CONFIRM_WORD} to confirm:",
        widget=forms.TextInput(attrs={"size": 12, "autocomplete": "off", "spellcheck": "false"}),
    )
    next = forms.CharField(widget=forms.HiddenInput, required=False)

    def clean_confirm(self) -> str:
        confirm: str = self.cleaned_data["confirm"]
        if confirm.strip() != CONFIRM_WORD:
            raise forms.ValidationError(f"Type {CONFIRM_WORD} (in capitals) to delete everything.")
        return confirm


#: The delete forms by the value of their `action` field.
DELETE_FORMS: dict[str, type[forms.Form]] = {
    "key": KeyDeleteForm,
    "pattern": PatternDeleteForm,
    "all": DeleteAllForm,
}


#: HTML id pattern of each form's fields (one page shows all three; ids must not clash).
_AUTO_IDS = {"key": "id_%s", "pattern": "id_pattern_%s", "all": "id_all_%s"}


def make_form(action: str, data: Any = None, initial: dict[str, Any] | None = None) -> forms.Form:
    """The delete form for `action` ("key", "pattern" or "all"), bound to `data` if given.

    `initial` pre-fills the key and pattern forms (from a query string); the
    delete-all form never takes initial data, so it is never pre-filled.
    """
    cls = DELETE_FORMS[action]
    if action == "all":
        initial = None
    return cls(data=data, initial=initial, auto_id=_AUTO_IDS[action])
