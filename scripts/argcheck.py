"""Argument checks the scripts share, so bad input fails in argparse's usage format.

A script run as `python scripts/NAME.py` finds this module next to it (sys.path[0]
is scripts/). The `type=` callables reject a value with argparse's own message
("usage: ...", "NAME.py: error: argument --x: ..."; exit 2). The output checks run
right after parsing, BEFORE a long run, so a bad path does not cost the run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from chorusdht import unwritable_dir

__all__ = [
    "non_negative_float",
    "non_negative_int",
    "output_dir",
    "output_file",
    "positive_float",
    "positive_int",
    "positive_int_list",
]


def _number(text: str, kind: type[int] | type[float], floor: float, strict: bool) -> float:
    what = "a whole number" if kind is int else "a number"
    bound = f"> {floor:g}" if strict else f">= {floor:g}"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {text!r}") from None
    if value != value or (value <= floor if strict else value < floor):  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse `type=`: a whole number >= 1 (a count: nodes, runs, entries)."""
    return int(_number(text, int, 1, strict=False))


def non_negative_int(text: str) -> int:
    """argparse `type=`: a whole number >= 0."""
    return int(_number(text, int, 0, strict=False))


def positive_float(text: str) -> float:
    """argparse `type=`: a number > 0 (a duration or limit in seconds)."""
    return _number(text, float, 0, strict=True)


def non_negative_float(text: str) -> float:
    """argparse `type=`: a number >= 0."""
    return _number(text, float, 0, strict=False)


def positive_int_list(text: str) -> list[int]:
    """argparse `type=`: comma-separated whole numbers >= 1, such as "1,8,32"."""
    return [positive_int(part.strip()) for part in text.split(",")]


def output_file(parser: argparse.ArgumentParser, option: str, path: Path | None) -> None:
    """Fail now, in the usage format, if `path` (given as `option`) cannot be written later.

    Nothing is created: the directory must exist and be writable, and the path must
    not be a directory.
    """
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        parser.error(f"{option} {path}: is a directory")
    if not parent.is_dir():
        parser.error(f"{option} {path}: no such directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        parser.error(f"{option} {path}: not writable")


def output_dir(parser: argparse.ArgumentParser, option: str, path: Path | None) -> None:
    """Create the directory `path` (given as `option`) now, or fail in the usage format."""
    if path is None:
        return
    if (problem := unwritable_dir(path)) is not None:
        parser.error(f"{option} {path}: {problem}")
