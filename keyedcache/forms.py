"""Forms of the dashboard's delete page: one key (or its subtree), a glob pattern, everything."""

from __future__ import annotations

import base64
from typing import Any

from django import forms

#: What a user types to confirm deleting every keyedcache entry.
CONFIRM_WORD = "DELETE"
#: Characters the key field takes; longer keys travel encoded (`encoded_key`).
KEY_FIELD_MAX = 10_000


def _visible(text: str) -> bool:
    return bool(text.strip())


#: Highest code point: a character class covering 0..MAX_CHAR matches any character.
MAX_CHAR = 0x10FFFF


def _class_end(pattern: str, start: int) -> int:
    """Index just past the "]" closing the class opened at `start`, or -1 (fnmatch's rules:
    a "!" then a "]" right after "[" are part of the class; no closing "]": a literal "[")."""
    j = start + 1
    if j < len(pattern) and pattern[j] == "!":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    end = pattern.find("]", j)
    return -1 if end < 0 else end + 1


def _class_is_universal(body: str) -> bool:
    """Whether the class `[body]` matches every character (its ranges cover all of Unicode)."""
    if body.startswith("!"):
        return False  # "[!...]" always leaves out at least one character
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = ord(body[i]), ord(body[i + 2])
            if low <= high:
                spans.append((low, high))
            i += 3
        else:
            spans.append((ord(body[i]), ord(body[i])))
            i += 1
    covered = 0
    for low, high in sorted(spans):
        if low > covered:
            return False
        covered = max(covered, high + 1)
    return covered > MAX_CHAR


def matches_every_key(pattern: str) -> bool:
    """Whether glob `pattern` matches every key (bar the few shorter than its `?`s).

    A key need not contain any literal character of the pattern, nor any
    character a class leaves out, so a pattern with either cannot match every
    key; what is left is made of `*`, `?` and classes that take any character.
    With at least one `*`, it matches every key at least as long as its `?`s.
    """
    star = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            star = True
            i += 1
        elif char == "?":
            i += 1
        elif char == "[" and (end := _class_end(pattern, i)) > 0:
            if not _class_is_universal(pattern[i + 1 : end - 1]):
                return False
            i = end
        else:
            return False
    return star


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
        max_length=KEY_FIELD_MAX,
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
        typed = cleaned.get("key")
        if typed is not None and _visible(typed):
            return cleaned  # a key typed over a pre-filled (encoded) one wins
        if encoded:
            try:
                cleaned["key"] = decode_key(encoded)
            except ValueError:
                raise forms.ValidationError("The key sent by the form is damaged.") from None
        elif "key" in cleaned:
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
    confirm = forms.CharField(
        label=f"This pattern matches every key. Type {CONFIRM_WORD} to confirm:",
        required=False,
        widget=forms.TextInput(attrs={"size": 12, "autocomplete": "off", "spellcheck": "false"}),
    )
    next = forms.CharField(widget=forms.HiddenInput, required=False)

    @property
    def matches_everything(self) -> bool:
        """Whether the pattern sent (or pre-filled) matches every key: the page then asks
        for the typed confirmation."""
        if self.is_bound:
            pattern = self.data.get(self.add_prefix("pattern"), "")
        else:
            pattern = self.initial.get("pattern", "")
        return matches_every_key(str(pattern))

    def clean_pattern(self) -> str:
        pattern: str = self.cleaned_data["pattern"]
        if not _visible(pattern):
            raise forms.ValidationError("Enter a pattern.")
        return pattern

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        pattern = cleaned.get("pattern")
        confirmed = (cleaned.get("confirm") or "").strip() == CONFIRM_WORD
        if pattern is not None and matches_every_key(pattern) and not confirmed:
            self.add_error(
                "confirm",
                f"“{pattern}” matches every key: type {CONFIRM_WORD} (in capitals) to "
                "delete them all.",
            )
        return cleaned


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
