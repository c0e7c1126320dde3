"""Secret masking: cache locations, options and outage messages as shown, passwords hidden."""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote

from django.conf import settings

from keyedcache.exceptions import CacheBackendError

_SECRET_NAME = re.compile(r"pass|secret|token|credential|auth|private|key", re.IGNORECASE)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_QUERY_PAIR = re.compile(r"(?<=[?&;])(?P<name>[^=&;?#\s]+)=(?P<value>[^&;#\s'\"]*)")
# A query is cut into pairs at "&" or ";" only where a new "name=" follows, so a
# secret value holding "&", "#" or "?" is masked whole.
_QUERY_CUT = re.compile(r"([&;])(?=[^=&;#\s]+=)")
#: What a secret is shown as.
MASK = "********"

_brief_repr = reprlib.Repr()
_brief_repr.maxstring = _brief_repr.maxother = 80


def _urls(text: str) -> list[tuple[str, str, str]]:
    """`text` cut into (scheme, userinfo or None-as-"", rest): one piece per URL.

    A URL's userinfo is everything between its "scheme://" and the last "@"
    before the next URL, whatever characters the password holds ("@", "/",
    "?", "#", ":", spaces). Without a scheme, everything up to the last "@" is
    the userinfo ("user:password@host:port"). Text before the first URL is a
    piece with an empty scheme.
    """
    starts = [m.start() for m in _SCHEME.finditer(text)]
    bounds = [0, *starts] if not starts or starts[0] else starts
    pieces = []
    for i, start in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else len(text)
        piece = text[start:end]
        scheme = _SCHEME.match(piece)
        head = scheme.group() if scheme else ""
        body = piece[len(head) :]
        at = body.rfind("@")
        if at < 0:
            pieces.append((head, "", body))
        else:
            pieces.append((head, body[:at] or "\0", body[at:]))
    return pieces


def _query_pairs(rest: str) -> tuple[str, list[str]]:
    """(what precedes the query, the query's pieces: pairs and the separators between them)."""
    head, mark, query = rest.partition("?")
    if not mark:
        return rest, []
    return head, _QUERY_CUT.split(query)


def _is_secret_pair(pair: str) -> bool:
    name, eq, _value = pair.partition("=")
    return bool(eq) and bool(_SECRET_NAME.search(unquote(name)))


def _mask_rest(rest: str) -> str:
    head, pieces = _query_pairs(rest)
    if not pieces:
        return rest
    shown = [
        f"{piece.partition('=')[0]}={MASK}" if _is_secret_pair(piece) else piece for piece in pieces
    ]
    return f"{head}?{''.join(shown)}"


def mask_location(value: Any) -> str:
    """A LOCATION (string, or list of them) without passwords: userinfo and secret query values.

    Every URL's userinfo goes, whatever characters the password holds; so do the
    values of query parameters with secret-looking names (password, token, ...).
    """
    if isinstance(value, (list, tuple)):
        return ", ".join(mask_location(item) for item in value)
    return "".join(
        f"{scheme}{MASK if userinfo else ''}{_mask_rest(rest)}"
        for scheme, userinfo, rest in _urls(str(value))
    )


def _mask_value(value: Any, secrets: set[str], depth: int) -> str:
    """One OPTIONS value as shown: strings as locations, lists item by item, secrets masked."""
    if isinstance(value, str):
        text = mask_location(value)
    elif isinstance(value, (list, tuple)) and depth <= 3:
        items = ", ".join(_mask_value(item, secrets, depth + 1) for item in value[:20])
        more = ", …" if len(value) > 20 else ""
        text = f"[{items}{more}]" if isinstance(value, list) else f"({items}{more})"
    else:
        text = _brief_repr.repr(value)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def mask_options(options: Any, depth: int = 0) -> list[tuple[str, str]]:
    """(name, value) of cache OPTIONS, secret-looking values masked, nested dicts flattened."""
    if not isinstance(options, dict) or depth > 3:
        return []
    secrets = {s for s in _option_secrets(options) if s}
    shown_options: list[tuple[str, str]] = []
    for name, value in sorted(options.items(), key=lambda item: str(item[0])):
        label = str(name)
        if _SECRET_NAME.search(label):
            shown_options.append((label, MASK))
        elif isinstance(value, dict):
            shown_options += [
                (f"{label}.{sub}", text) for sub, text in mask_options(value, depth + 1)
            ]
        else:
            shown_options.append((label, _mask_value(value, secrets, depth)))
    return shown_options


def _variants(secret: str) -> set[str]:
    """A secret as written, percent-decoded and percent-encoded (error texts use any)."""
    return {secret, unquote(secret), quote(secret, safe=""), quote(unquote(secret), safe="")}


def _location_secrets(location: str) -> Iterator[str]:
    """The userinfo, the password and the secret query values written in one LOCATION."""
    for _scheme, userinfo, rest in _urls(location):
        if userinfo and userinfo != "\0":
            yield from _variants(userinfo)
            password = userinfo.partition(":")[2]
            if password:
                yield from _variants(password)
        for piece in _query_pairs(rest)[1]:
            if _is_secret_pair(piece):
                value = piece.partition("=")[2]
                if value:
                    yield from _variants(value)


def _option_secrets(options: Any, depth: int = 0) -> Iterator[str]:
    """The text values of secret-looking OPTIONS (nested dicts and lists included), and the
    secrets of every URL among the option values."""
    if depth > 3:
        return
    if isinstance(options, (list, tuple)):
        for item in options:
            if isinstance(item, str):
                yield from _location_secrets(item)
            else:
                yield from _option_secrets(item, depth + 1)
        return
    if not isinstance(options, dict):
        return
    for name, value in options.items():
        if isinstance(value, (dict, list, tuple)):
            yield from _option_secrets(value, depth + 1)
        elif isinstance(value, (str, bytes)) and _SECRET_NAME.search(str(name)):
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            yield from _variants(text)
        elif isinstance(value, str):
            yield from _location_secrets(value)


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
    # Short fragments ("a", ":") would garble the text without hiding anything.
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
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
