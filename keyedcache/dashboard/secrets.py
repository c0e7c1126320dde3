"""Secret masking: cache locations and options as the stats page may show them, passwords hidden."""

from __future__ import annotations

import re
import reprlib
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_NAME = re.compile(r"pass|secret|token|credential|auth|private|key", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_BARE_USERINFO = re.compile(r"^[^/@\s:]*:[^/@\s]*@")
#: What a secret is shown as.
MASK = "********"

_brief_repr = reprlib.Repr()
_brief_repr.maxstring = _brief_repr.maxother = 80


def mask_location(value: Any) -> str:
    """A LOCATION (string, or list of them) without passwords: userinfo and secret query values."""
    if isinstance(value, (list, tuple)):
        return ", ".join(mask_location(item) for item in value)
    text = str(value)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _BARE_USERINFO.sub(f"{MASK}@", text)
    if "?" in text:
        try:
            parts = urlsplit(text)
        except ValueError:  # not a URL after all: hide what follows the "?"
            return text.split("?", 1)[0] + "?" + MASK
        if parts.query:
            query = [
                (name, MASK if _SECRET_NAME.search(name) else item)
                for name, item in parse_qsl(parts.query, keep_blank_values=True)
            ]
            text = urlunsplit(parts._replace(query=urlencode(query, safe="*")))
    return text


def mask_options(options: Any, depth: int = 0) -> list[tuple[str, str]]:
    """(name, value) of cache OPTIONS, secret-looking values masked, nested dicts flattened."""
    if not isinstance(options, dict) or depth > 3:
        return []
    shown_options: list[tuple[str, str]] = []
    for name, value in sorted(options.items(), key=lambda item: str(item[0])):
        label = str(name)
        if _SECRET_NAME.search(label):
            shown_options.append((label, MASK))
        elif isinstance(value, dict):
            shown_options += [
                (f"{label}.{sub}", text) for sub, text in mask_options(value, depth + 1)
            ]
        elif isinstance(value, str):
            shown_options.append((label, mask_location(value)))
        else:
            shown_options.append((label, _brief_repr.repr(value)))
    return shown_options
