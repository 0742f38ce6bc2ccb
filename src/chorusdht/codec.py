"""A bounded, canonical CBOR codec: the only way bytes from the network become objects.

The data model is deliberately small: int (signed 64-bit), bytes, str, list, dict (keys
str or int), bool and None. No floats, no tags, no indefinite lengths, no other simple values.

`encode` writes canonical CBOR (cbor2's `canonical=True`: shortest heads, definite lengths,
map keys sorted length-first as in RFC 7049 §3.9), so equal values give equal bytes and can
be hashed or signed. It raises `TypeError` for anything outside the data model: that is a
local bug, not a remote error.

`decode` is built for hostile input. It checks the size first, then scans the item heads
without building anything (rejecting tags, floats, indefinite lengths, lengths that run past
the end, trailing bytes, too many items, too deep nesting, integers beyond 64 bits and map
keys that are not integers or text), and only then lets cbor2 build objects. What the scan
admits can only decode to the data model, so no second walk is needed. Non-canonical but otherwise
valid input is accepted; re-encode with `canonical` where bytes matter. Every failure is a
`DecodeError`, and the work done is linear in the input, which is at most `max_size` bytes.
"""

from __future__ import annotations

import re

import cbor2

from chorusdht.errors import DecodeError, ErrorCode

__all__ = [
    "MAX_DATAGRAM",
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_ITEMS",
    "canonical",
    "decode",
    "encode",
]

# The deepest legitimate message nests about 4 levels; 8 leaves room and stops nesting bombs.
MAX_DEPTH = 8
# Total array elements plus map pairs in one message; bounds the objects a peer makes us build.
MAX_ITEMS = 2048
# A 16 KiB record plus its envelope fits; real records are bounded separately.
MAX_DATAGRAM = 32768
# Integers are signed 64-bit; anything wider would need a bignum tag, which we refuse.
MAX_INT_BITS = 64

_MIN_INT = -(1 << (MAX_INT_BITS - 1))
_MAX_INT = (1 << (MAX_INT_BITS - 1)) - 1
_ALLOWED = frozenset({int, bool, bytes, str, list, dict, type(None)})
_SIMPLE_OK = frozenset({20, 21, 22})  # false, true, null
# A run of 32-byte byte strings (head 0x58 0x20): keys and hashes, the bulk of LIST pages,
# GET_MANY requests and `parents`. `_scan` skips such runs inside arrays in one regex match
# instead of one Python loop turn per item (a 256-key page: ~400 µs -> ~20 µs).
_KEY_RUN = re.compile(rb"(?:\x58\x20.{32})+", re.DOTALL)
_KEY_ITEM = 34


def encode(obj: object, *, check: bool = True) -> bytes:
    """Canonical CBOR for `obj`; `TypeError` if it is outside the data model or bounds.

    `check=False` skips the walk over the value: for hot paths that encode values they
    built themselves from checked parts (wire messages), where the walk would cost more
    than the encoding.
    """
    if check:
        problem = _problem(obj)
        if problem is not None:
            raise TypeError(f"cannot encode: {problem}")
    return cbor2.dumps(obj, canonical=True)


def canonical(obj: object) -> bytes:
    """Re-encode a (decoded) object canonically; the same as `encode`."""
    return encode(obj)


def decode(data: bytes, *, max_size: int = MAX_DATAGRAM) -> object:
    """Decode exactly one bounded CBOR item from `data`; `DecodeError` on any failure."""
    if len(data) > max_size:
        raise DecodeError(f"{len(data)} bytes is over {max_size}", ErrorCode.TOO_LARGE)
    _scan(data)
    try:
        obj: object = cbor2.loads(
            data, max_depth=MAX_DEPTH, allow_indefinite=False, allow_duplicate_keys=False
        )
    except Exception as exc:  # anything cbor2 raises on remote bytes is the peer's fault
        raise DecodeError(f"bad CBOR: {exc}") from exc
    return obj


def _scan(data: bytes) -> None:
    """Check the structure of `data` from its item heads alone, before anything is built."""
    size, pos, items = len(data), 0, 0
    open_counts: list[int] = []  # items still expected by each open array or map
    is_map: list[bool] = []  # whether each open container is a map
    while True:
        if open_counts and open_counts[-1] > 1 and not is_map[-1]:
            # Skip all but the array's last item if they are keys; the end bound keeps the
            # match inside this array, so nested arrays cannot make the work quadratic.
            end = min(size, pos + _KEY_ITEM * (open_counts[-1] - 1))
            run = _KEY_RUN.match(data, pos, end)
            if run is not None:
                n = (run.end() - pos) // _KEY_ITEM
                pos += n * _KEY_ITEM
                open_counts[-1] -= n
        if pos >= size:
            raise DecodeError("truncated CBOR")
        major, info = data[pos] >> 5, data[pos] & 0x1F
        pos += 1
        if is_map and is_map[-1] and open_counts[-1] % 2 == 0 and major not in (0, 1, 3):
            raise DecodeError("map keys must be integers or text")
        if major == 6:
            raise DecodeError("CBOR tags are not allowed")
        if major == 7 and info not in _SIMPLE_OK:
            raise DecodeError("floats and simple values other than false/true/null not allowed")
        if info >= 28:
            raise DecodeError("indefinite length or reserved CBOR head")
        arg = info
        if info >= 24:
            width = 1 << (info - 24)
            if pos + width > size:
                raise DecodeError("truncated CBOR")
            arg = int.from_bytes(data[pos : pos + width], "big")
            pos += width
            if major in (0, 1) and arg > _MAX_INT:
                raise DecodeError(f"integer outside {MAX_INT_BITS} bits")
        if major in (2, 3):  # byte or text string: must fit in what is left
            if arg > size - pos:
                raise DecodeError("string runs past the end of the input")
            pos += arg
        elif major in (4, 5):  # array or map
            if len(open_counts) >= MAX_DEPTH:
                raise DecodeError(f"nested deeper than {MAX_DEPTH}")
            items += arg
            if items > MAX_ITEMS:
                raise DecodeError(f"more than {MAX_ITEMS} items", ErrorCode.TOO_LARGE)
            if arg:
                open_counts.append(arg * 2 if major == 5 else arg)
                is_map.append(major == 5)
                continue
        while open_counts:  # one item is complete: close every container it completes
            open_counts[-1] -= 1
            if open_counts[-1]:
                break
            open_counts.pop()
            is_map.pop()
        if not open_counts:
            break
    if pos != size:
        raise DecodeError(f"{size - pos} trailing byte(s) after the CBOR item")


def _problem(obj: object) -> str | None:
    """Why `obj` is outside the data model or its bounds, or None if it is inside."""
    items = 0
    stack: list[tuple[object, int]] = [(obj, 0)]  # (value, number of enclosing containers)
    while stack:
        value, depth = stack.pop()
        if type(value) not in _ALLOWED:
            return f"type {type(value).__name__} is not allowed"
        if isinstance(value, int) and not _MIN_INT <= value <= _MAX_INT:
            return f"integer outside {MAX_INT_BITS} bits"
        if isinstance(value, list | dict):
            if depth >= MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH}"
            items += len(value)
            if items > MAX_ITEMS:
                return f"more than {MAX_ITEMS} items"
            if isinstance(value, dict):
                for key in value:
                    if type(key) is not str and type(key) is not int:
                        return f"map key of type {type(key).__name__} is not allowed"
                    stack.append((key, depth + 1))
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)
    return None
