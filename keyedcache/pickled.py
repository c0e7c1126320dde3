"""Pure: a few items of a pickled tuple (its head, its tail) read without unpickling the rest.

Listings show what is stored (size, expiry, freshness) without decoding the
values: a value may be big, slow to decode, or run code when it is unpickled
(`__reduce__`, `__setstate__`). These helpers read the opcodes around the
value and build nothing but small scalars, strings and tuples of them.

- `tuple_head(data)` runs the opcodes from the start and stops at the first one
  that would build anything else (a list, a dict, an object) or after
  `MAX_HEAD_OPS`; it returns the items the outer tuple has so far.
- `tuple_tail(data)` hops over protocol 4+ frames and over the big strings and
  bytes written between them (a 50 MB value costs a few hundred hops), then
  decodes only the last frames: the scalars that close the innermost tuple.
"""

from __future__ import annotations

import pickletools
from typing import IO, Any, cast

#: Opcodes `tuple_head` runs at most before it gives up.
MAX_HEAD_OPS = 4096
#: Strings and bytes longer than this are not built by `tuple_head` (a `Big` stands in).
MAX_HEAD_TEXT = 1 << 20

_PROTO, _FRAME, _STOP, _MARK = 0x80, 0x95, ord("."), ord("(")
# Opcodes written outside frames when their payload is big: opcode -> bytes of the length.
_BLOBS = {0x8E: 8, 0x8D: 8, 0x96: 8, ord("B"): 4, ord("X"): 4}


#: Every opcode by its byte.
_OPS = {ord(info.code): info for info in pickletools.opcodes}


class Mark:
    """The MARK of an open tuple on `tuple_head`'s stack."""

    def __repr__(self) -> str:
        return "<mark>"


MARK = Mark()


class Big:
    """A string or bytes longer than MAX_HEAD_TEXT, not built: its opcode and length."""

    def __init__(self, kind: str, length: int) -> None:
        self.kind = kind
        self.length = length

    def __repr__(self) -> str:
        return f"<{self.kind} of {self.length} bytes>"


class _Reader:
    """A file-like view of `data[start:end]` for pickletools (slices, no big copies)."""

    def __init__(self, data: bytes | memoryview, start: int, end: int) -> None:
        self.view = memoryview(data)
        self.pos = start
        self.end = end

    def read(self, n: int) -> bytes:
        stop = min(self.pos + n, self.end)
        chunk = bytes(self.view[self.pos : stop])
        self.pos = stop
        return chunk

    def readline(self) -> bytes:
        data = bytes(self.view[self.pos : self.end])
        line, sep, _rest = data.partition(b"\n")
        self.pos += len(line) + len(sep)
        return line + sep

    def tell(self) -> int:
        return self.pos


_SCALARS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_NUMBERS = {"BININT1", "BININT2", "BININT", "LONG1", "BINFLOAT"}
_TEXTS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "SHORT_BINBYTES",
    "BINBYTES",
    "BINBYTES8",
}
_SKIPPED = {"PROTO", "FRAME"}
_MEMO_PUTS = {"MEMOIZE", "BINPUT", "LONG_BINPUT"}
_MEMO_GETS = {"BINGET", "LONG_BINGET"}
_TUPLES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_HEAD_OPS = (_SKIPPED | _MEMO_PUTS | _MEMO_GETS | _NUMBERS | set(_SCALARS) | set(_TUPLES)) | {
    "MARK",
    "TUPLE",
    "STOP",
}


def _text(data: bytes | memoryview, pos: int) -> tuple[Any, int] | None:
    """The string/bytes whose opcode is at `pos` and the position after it, without
    copying a big one (a Big stands in)."""
    op = data[pos]
    sizes = {0x8C: (1, "str"), ord("X"): (4, "str"), 0x8D: (8, "str")}
    sizes.update({ord("C"): (1, "bytes"), ord("B"): (4, "bytes"), 0x8E: (8, "bytes")})
    width, kind = sizes[op]
    length = int.from_bytes(data[pos + 1 : pos + 1 + width], "little")
    start = pos + 1 + width
    if start + length > len(data):
        return None
    if length > MAX_HEAD_TEXT:
        return Big(kind, length), start + length
    raw = bytes(memoryview(data)[start : start + length])
    return (raw.decode("utf-8", "surrogatepass") if kind == "str" else raw), start + length


def tuple_head(data: bytes | memoryview, count: int | None = None) -> list[Any] | None:
    """The items of the pickled outer tuple in `data` decoded before the first opcode
    that builds something other than a scalar, a string or a tuple of them.

    Open tuples show as their MARK followed by their items so far. With `count`,
    stops once the outer tuple has `count` items and the next one has opened. None
    when `data` does not start like a pickled tuple.
    """
    stack: list[Any] = []
    memo: list[Any] = []
    indexed: dict[int, Any] = {}
    pos = 0
    for _ in range(MAX_HEAD_OPS):
        if pos >= len(data):
            break
        if (
            count is not None
            and len(stack) > count + 1
            and stack[0] is MARK
            and stack[count + 1] is MARK
            and MARK not in stack[1 : count + 1]
        ):
            break
        op = data[pos]
        info = _OPS.get(op)
        if info is None:
            return None
        name = info.name
        if name in _TEXTS:
            found = _text(data, pos)
            if found is None:
                # Cut short (a prefix of a big pickle): fine once `count` items are in.
                done = count is not None and len(stack) == count + 1 and stack[0] is MARK
                if done and MARK not in stack[1:]:
                    break
                return None
            value, pos = found
            stack.append(value)
            continue
        if name not in _HEAD_OPS:
            break
        reader = _Reader(data, pos + 1, len(data))
        try:
            arg = info.arg.reader(cast(IO[bytes], reader)) if info.arg is not None else None
        except ValueError:  # cut short
            return None
        pos = reader.pos
        if name in _SKIPPED:
            continue
        if name == "STOP":
            break
        if name == "MARK":
            stack.append(MARK)
        elif name in _SCALARS:
            stack.append(_SCALARS[name])
        elif name in _NUMBERS:
            stack.append(arg)
        elif name == "MEMOIZE":
            if not stack:
                return None
            memo.append(stack[-1])
        elif name in ("BINPUT", "LONG_BINPUT"):
            if not stack:
                return None
            indexed[int(arg or 0)] = stack[-1]
        elif name in _MEMO_GETS:
            index = int(arg or 0)
            if index in indexed:
                stack.append(indexed[index])
            elif 0 <= index < len(memo):
                stack.append(memo[index])
            else:
                return None
        elif name == "TUPLE":
            if MARK not in stack:
                return None
            cut = len(stack) - 1 - stack[::-1].index(MARK)
            items = tuple(stack[cut + 1 :])
            del stack[cut:]
            stack.append(items)
        else:  # EMPTY_TUPLE, TUPLE1-3
            size = _TUPLES[name]  # not `count`: that is the caller's limit
            if len(stack) < size or any(item is MARK for item in stack[len(stack) - size :]):
                return None
            items = tuple(stack[len(stack) - size :])
            del stack[len(stack) - size :]
            stack.append(items)
    if stack and stack[0] is MARK:
        return stack[1:]
    if len(stack) == 1 and type(stack[0]) is tuple:
        return list(stack[0])
    return None


def _segments(data: bytes | memoryview) -> list[tuple[int, int] | None] | None:
    """The top level of a framed pickle (protocol 4+): (start, end) of each run of
    opcodes (a frame's contents, or a few opcodes left outside frames), None for each
    big string or bytes written between frames. None when `data` is not framed."""
    if len(data) < 2 or data[0] != _PROTO or data[1] < 4:
        return None
    found: list[tuple[int, int] | None] = []
    pos, size = 2, len(data)
    while pos < size:
        op = data[pos]
        if op == _FRAME:
            length = int.from_bytes(data[pos + 1 : pos + 9], "little")
            found.append((pos + 9, pos + 9 + length))
            pos += 9 + length
        elif op in _BLOBS:
            width = _BLOBS[op]
            length = int.from_bytes(data[pos + 1 : pos + 1 + width], "little")
            found.append(None)
            pos += 1 + width + length
        else:
            # A frame of fewer than 4 bytes is written without its header: decode
            # opcodes one at a time up to the next frame or big payload.
            start = pos
            while pos < size and data[pos] != _FRAME and data[pos] not in _BLOBS:
                info = _OPS.get(data[pos])
                if info is None:
                    return None
                reader = _Reader(data, pos + 1, size)
                try:
                    if info.arg is not None:
                        info.arg.reader(cast(IO[bytes], reader))
                except ValueError:  # cut short
                    return None
                pos = reader.pos
                if info.name == "STOP":
                    break
            found.append((start, pos))
    if pos != size:
        return None
    return found


def _arg_sizes() -> dict[int, tuple[int, int]]:
    """opcode -> (kind, size): kind 0 fixed size, 1 length-prefixed (size = prefix bytes,
    unsigned, or -size when signed), 2 up to a newline (size: how many lines)."""
    table: dict[int, tuple[int, int]] = {}
    prefixed = {-2: 1, -3: 4, -4: 4, -5: 8}
    for info in pickletools.opcodes:
        arg = info.arg
        if arg is None:
            table[ord(info.code)] = (0, 0)
        elif arg.n >= 0:
            table[ord(info.code)] = (0, arg.n)
        elif arg.n in prefixed:
            table[ord(info.code)] = (1, prefixed[arg.n])
        else:
            table[ord(info.code)] = (2, 2 if arg.name == "stringnl_noescape_pair" else 1)
    return table


_ARG_SIZES = _arg_sizes()


def _op_end(data: bytes | memoryview, pos: int) -> int:
    """Where the opcode at `pos` ends (KeyError for an unknown opcode)."""
    kind, size = _ARG_SIZES[data[pos]]
    if kind == 0:
        return pos + 1 + size
    if kind == 1:
        length = int.from_bytes(
            data[pos + 1 : pos + 1 + size], "little", signed=size == 4 and data[pos] == 0x8B
        )
        return pos + 1 + size + max(length, 0)
    end = pos + 1
    for _ in range(size):
        end = bytes(memoryview(data)[end : end + 4096]).index(b"\n") + end + 1
    return end


def _ops(data: bytes | memoryview, start: int, end: int, last: int) -> list[tuple[str, Any]] | None:
    """(name, argument) of the last `last` opcodes in data[start:end] (whole opcodes)."""
    starts = []
    pos = start
    try:
        while pos < end:
            starts.append(pos)
            pos = _op_end(data, pos)
    except (KeyError, ValueError):
        return None
    if pos != end:
        return None
    found = []
    for at in starts[-last:]:
        info = _OPS[data[at]]
        reader = _Reader(data, at + 1, end)
        try:
            arg = (
                info.arg.reader(cast(IO[bytes], reader))
                if info.arg is not None and info.name not in _TEXTS
                else None
            )
        except ValueError:
            return None
        found.append((info.name, arg))
    return found


_CLOSERS = {"STOP", "TUPLE", "FRAME"} | _MEMO_PUTS
_KEYS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"} | _MEMO_GETS


def tuple_tail(data: bytes | memoryview, count: int) -> list[Any] | None:
    """The last `count` scalar items (None, numbers) of the innermost tuple that closes
    the pickle in `data`, skipping one string item after them (an optional key).

    For a pickled envelope `(format, value, fresh_until, stale_until, cost)`, or a
    record ending in one, `tuple_tail(data, 3)` is `[fresh_until, stale_until, cost]`.
    None when the pickle is not framed or does not end that way.
    """
    segments = _segments(data)
    if not segments:
        return None
    ops: list[tuple[str, Any]] = []
    for segment in reversed(segments):
        if segment is None:
            break  # a big string or bytes: part of the value, the scalars come after it
        found = _ops(data, *segment, last=count + 16)
        if found is None:
            return None
        ops[:0] = found
        if sum(1 for name, _arg in ops if name in _NUMBERS or name in _SCALARS) > count:
            break
    names = [(name, arg) for name, arg in ops if name != "FRAME"]
    while names and names[-1][0] in _CLOSERS:
        names.pop()
    if names and names[-1][0] in _KEYS:
        names.pop()
        while names and names[-1][0] in _MEMO_PUTS:
            names.pop()
    if len(names) < count:
        return None
    tail = names[len(names) - count :]
    if any(name not in _NUMBERS and name != "NONE" for name, _arg in tail):
        return None
    return [arg for _name, arg in tail]


def float_or_none(value: Any) -> float | None:
    """`value` as a float (ints too), None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
