"""Secret masking: cache locations, options and outage messages as shown, passwords hidden."""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings

from keyedcache.exceptions import CacheBackendError

_SECRET_NAME = re.compile(r"pass|secret|token|credential|auth|private|key", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_BARE_USERINFO = re.compile(r"^[^/@\s:]*:[^/@\s]*@")
_URL_USERINFO_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?P<userinfo>[^/@\s]*)@")
_QUERY_PAIR = re.compile(r"(?<=[?&;])(?P<name>[^=&;?#\s]+)=(?P<value>[^&;#\s'\"]*)")
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


def _location_secrets(location: str) -> Iterator[str]:
    """The userinfo and the secret query values written in one LOCATION."""
    url = _URL_USERINFO_TEXT.search(location)
    bare = _BARE_USERINFO.match(location)
    userinfo = url.group("userinfo") if url is not None else bare.group()[:-1] if bare else ""
    yield userinfo
    yield userinfo.partition(":")[2]  # the password alone
    for pair in _QUERY_PAIR.finditer(location):
        if _SECRET_NAME.search(pair.group("name")):
            yield pair.group("value")


def _option_secrets(options: Any, depth: int = 0) -> Iterator[str]:
    """The text values of secret-looking OPTIONS, nested dicts included."""
    if not isinstance(options, dict) or depth > 3:
        return
    for name, value in options.items():
        if isinstance(value, dict):
            yield from _option_secrets(value, depth + 1)
        elif isinstance(value, (str, bytes)) and _SECRET_NAME.search(str(name)):
            yield value.decode(errors="replace") if isinstance(value, bytes) else value


def mask_text(text: str, config: dict[str, Any] | None = None) -> str:
    """Free text (an error message) with passwords masked, the rest left as it is.

    Every secret the alias `config` holds (a LOCATION's userinfo and secret
    query values, secret-looking OPTIONS) is masked wherever it appears, and
    so is the userinfo and every secret query value of any URL in the text.
    Unlike `mask_location`, the text is not parsed as one URL.
    """
    config = config or {}
    locations = config.get("LOCATION") or []
    if not isinstance(locations, (list, tuple)):
        locations = [locations]
    secrets = {s for loc in locations for s in _location_secrets(str(loc))}
    secrets.update(_option_secrets(config.get("OPTIONS")))
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return _QUERY_PAIR.sub(
        lambda m: f"{m.group('name')}={MASK}" if _SECRET_NAME.search(m.group("name")) else m[0],
        text,
    )


def outage_message(exc: BaseException, alias: str) -> str:
    """What a failed backend call says to a person: 'could not reach cache alias X: …'.

    `exc` is a CacheBackendError (a strict operation failed) or the
    CacheNotRespondingError of `KeyedCache.require()`; the text names the
    alias, what failed and the backend's own error, with secrets masked.
    """
    if isinstance(exc, CacheBackendError):
        alias = exc.alias
        cause = exc.__cause__
        what = exc.operation if exc.key is None else f"{exc.operation} of {exc.key!r}"
        failure = f"{what} failed"
        if cause is not None:
            failure += f" ({type(cause).__name__}: {cause})"
    else:
        failure = str(exc).removeprefix(f"cache alias {alias!r} ")
    config = settings.CACHES.get(alias)
    return mask_text(f"could not reach cache alias {alias!r}: {failure}", config)
