"""The bounded canonical-CBOR codec: round trips, canonical bytes, and hostile input."""

from __future__ import annotations

import random
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorusdht.codec import MAX_DATAGRAM, MAX_DEPTH, MAX_ITEMS, canonical, decode, encode
from chorusdht.errors import DecodeError, ErrorCode

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
SCALARS = st.none() | st.booleans() | INT64 | st.binary(max_size=48) | st.text(max_size=24)
KEYS = st.text(max_size=12) | INT64


def values(depth: int = 5) -> st.SearchStrategy[object]:
    """Values of the data model, at most `depth` containers deep (and well under MAX_ITEMS)."""
    if depth == 0:
        return SCALARS
    inner = values(depth - 1)
    return SCALARS | st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4)


VALUES = values()


def decode_or_reject(data: bytes) -> None:
    """Decode must either return a value that re-encodes, or raise DecodeError; nothing else."""
    try:
        obj = decode(data)
    except DecodeError as exc:
        assert exc.code in (ErrorCode.MALFORMED, ErrorCode.TOO_LARGE)
        return
    assert decode(canonical(obj)) == obj


def rejects(data: bytes, code: ErrorCode = ErrorCode.MALFORMED) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.code is code
    return info.value


def nested(depth: int, inner: bytes = b"\x00") -> bytes:
    return b"\x81" * depth + inner


def nested_list(depth: int, inner: object) -> object:
    for _ in range(depth):
        inner = [inner]
    return inner


# -- properties ---------------------------------------------------------------------------------


@settings(deadline=None, max_examples=300)
@given(VALUES)
def test_round_trip(value: object) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data  # type-exact: True and 1 would encode differently


@settings(deadline=None, max_examples=200)
@given(st.dictionaries(KEYS, VALUES, max_size=8), st.randoms(use_true_random=False))
def test_key_order_does_not_change_bytes(value: dict[object, object], rnd: random.Random) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    assert encode(dict(items)) == encode(value)
    assert encode({"outer": dict(reversed(items))}) == encode({"outer": value})


@settings(deadline=None, max_examples=500)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    decode_or_reject(data)


@settings(deadline=None, max_examples=300)
@given(VALUES, st.data())
def test_mutated_encodings_only_raise_decode_error(value: object, data: st.DataObject) -> None:
    blob = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "set"]))
        if op == "truncate":
            del blob[data.draw(st.integers(0, len(blob))) :]
        elif op == "insert":
            blob.insert(data.draw(st.integers(0, len(blob))), data.draw(st.integers(0, 255)))
        elif blob:
            i = data.draw(st.integers(0, len(blob) - 1))
            if op == "flip":
                blob[i] ^= 1 << data.draw(st.integers(0, 7))
            else:
                blob[i] = data.draw(st.integers(0, 255))
    decode_or_reject(bytes(blob))


# -- explicit hostile input ---------------------------------------------------------------------


def test_nesting_bomb() -> None:
    rejects(nested(10000))
    rejects(b"\xa1\x00" * 10000 + b"\x00")  # maps nested through their values
    rejects(b"\xa1" + nested(20) + b"\x00")  # nesting hidden in a map key


def test_depth_limit_is_exact() -> None:
    assert decode(nested(MAX_DEPTH)) == nested_list(MAX_DEPTH, 0)
    rejects(nested(MAX_DEPTH + 1))
    rejects(nested(MAX_DEPTH, b"\x80"))  # even an empty innermost container counts


def test_indefinite_lengths() -> None:
    rejects(b"\x9f\x00\xff")  # array
    rejects(b"\xbf\x00\x00\xff")  # map
    rejects(b"\x5f\x41a\xff")  # byte string
    rejects(b"\x7f\x61a\xff")  # text string
    rejects(b"\xff")  # a lone break


def fast_and_small(data: bytes, code: ErrorCode = ErrorCode.MALFORMED) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        rejects(data, code)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 0.5
    assert peak < 1 << 20


def test_huge_declared_string_lengths() -> None:
    fast_and_small(b"\x5b" + (2**63).to_bytes(8, "big") + b"ab")
    fast_and_small(b"\x5b" + b"\xff" * 8 + b"ab")
    fast_and_small(b"\x7a" + (2**31).to_bytes(4, "big") + b"a" * 1000)
    fast_and_small(b"\x59\x04\x00" + b"a" * 1023)  # one byte short


def test_huge_declared_container_counts() -> None:
    fast_and_small(b"\x9b" + (2**32).to_bytes(8, "big") + b"\x00" * 30000, ErrorCode.TOO_LARGE)
    fast_and_small(b"\x9a" + (2**31).to_bytes(4, "big") + b"\x00", ErrorCode.TOO_LARGE)
    fast_and_small(b"\xbb" + b"\xff" * 8 + b"\x00" * 100, ErrorCode.TOO_LARGE)


def test_item_limit_is_exact() -> None:
    assert decode(encode([0] * MAX_ITEMS)) == [0] * MAX_ITEMS
    rejects(encode([0] * MAX_ITEMS)[:-1] + b"\x00\x00", ErrorCode.MALFORMED)  # trailing
    rejects(b"\x99\x08\x01" + b"\x00" * (MAX_ITEMS + 1), ErrorCode.TOO_LARGE)
    split = [[0] * (MAX_ITEMS // 2), [0] * (MAX_ITEMS // 2)]  # 2 + 2048 items in total
    rejects(b"\x82" + encode(split[0]) + encode(split[1]), ErrorCode.TOO_LARGE)


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1\x1a\x00\x00\x00\x00",  # tag 1: epoch datetime
        b"\xc0\x74" + b"2020-01-01T00:00:00Z",  # tag 0: datetime string
        b"\xc2\x41\x01",  # tag 2: positive bignum
        b"\xc3\x41\x01",  # tag 3: negative bignum
        b"\xd9\x01\x02\x80",  # tag 258: set
        b"\xd8\x1c\x80",  # tag 28: shareable
        b"\xd8\x1d\x00",  # tag 29: shared reference
        b"\xd9\x01\x00\x80",  # tag 256: string-reference namespace
        b"\xd9\xd9\xf7\x00",  # tag 55799: self-described CBOR
        b"\xd9\x03\xe7\x00",  # an unknown tag
        b"\x81\xc1\x00",  # a tag inside an array
        b"\xd9\x03\xe7" * 5000 + b"\x00",  # a tag bomb
    ],
)
def test_tags_are_rejected(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xf9\x3c\x00",  # half float
        b"\xfa\x3f\x80\x00\x00",  # single
        b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",  # double
        b"\xf7",  # undefined
        b"\xf0",  # simple value 16
        b"\xf8\x20",  # simple value 32
        b"\x1c",  # reserved additional information
    ],
)
def test_floats_and_other_simple_values_are_rejected(data: bytes) -> None:
    rejects(data)


def test_duplicate_map_keys() -> None:
    rejects(b"\xa2\x01\x00\x01\x00")
    rejects(b"\xa2\x61a\x00\x61a\x01")


def test_bad_map_keys() -> None:
    rejects(b"\xa1\x80\x00")  # list key (cbor2 would make it a tuple)
    rejects(b"\xa1\xa0\x00")  # map key (cbor2 would make it a frozendict)
    rejects(b"\xa1\xf5\x00")  # bool key
    rejects(b"\xa1\xf6\x00")  # null key
    rejects(b"\xa1\x41k\x00")  # bytes key: keys are str or int only


def test_trailing_and_missing_bytes() -> None:
    rejects(b"\x00\x00")
    rejects(encode({"a": [1, 2]}) + b"\x00")
    rejects(b"")
    rejects(b"\x82\x00")
    rejects(b"\x19\x01")


def test_bad_utf8() -> None:
    rejects(b"\x62\xff\xfe")
    rejects(b"\x63\xed\xa0\x80")  # an encoded surrogate


def test_oversize_input() -> None:
    big = encode({"record": b"x" * 16384, "envelope": "y" * 100})
    assert decode(big)
    rejects(b"\x00" * (MAX_DATAGRAM + 1), ErrorCode.TOO_LARGE)
    rejects(encode(b"x" * MAX_DATAGRAM), ErrorCode.TOO_LARGE)
    with pytest.raises(DecodeError) as info:
        decode(encode(b"x" * 100), max_size=50)
    assert info.value.code is ErrorCode.TOO_LARGE


def test_ints_outside_64_bits() -> None:
    assert decode(b"\x1b\x7f" + b"\xff" * 7) == 2**63 - 1
    assert decode(b"\x3b\x7f" + b"\xff" * 7) == -(2**63)
    rejects(b"\x1b\x80" + b"\x00" * 7)  # 2**63
    rejects(b"\x1b" + b"\xff" * 8)  # 2**64 - 1
    rejects(b"\x3b\x80" + b"\x00" * 7)  # -2**63 - 1
    rejects(b"\x3b" + b"\xff" * 8)  # -2**64


def test_non_canonical_input_is_accepted() -> None:
    assert decode(b"\x18\x01") == 1  # 1 in a two-byte head
    assert decode(b"\x9a\x00\x00\x00\x01\x00") == [0]
    unsorted = b"\xa2\x62bb\x01\x61a\x02"
    assert decode(unsorted) == {"bb": 1, "a": 2}
    assert canonical(decode(unsorted)) == b"\xa2\x61a\x02\x62bb\x01"


# -- encode -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        {1, 2},
        frozenset(),
        (1, 2),
        [1.5],
        {"a": float("nan")},
        {(1,): 0},
        {True: 0},
        {None: 0},
        bytearray(b"x"),
        ErrorCode.TOO_LARGE,  # a str subclass: pass `.value`
        2**63,
        -(2**63) - 1,
        nested_list(MAX_DEPTH, []),  # nine containers deep
        [0] * (MAX_ITEMS + 1),
    ],
    ids=repr,
)
def test_encode_rejects_values_outside_the_model(value: object) -> None:
    with pytest.raises(TypeError):
        encode(value)


def test_encode_rejects_cycles() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError):
        encode(loop)


def test_encode_known_bytes() -> None:
    assert encode(None) == b"\xf6"
    assert encode([True, False, -1, b"", ""]) == b"\x85\xf5\xf4\x20\x40\x60"
    assert encode({"b": 1, 10: 2, "a": 3}) == b"\xa3\x0a\x02\x61a\x03\x61b\x01"
