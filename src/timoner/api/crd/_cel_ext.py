"""cel-go's extension libraries that Kubernetes enables: strings, sets, lists, base64.

Written here rather than taken from `cel.stdlib` because importing that module
imports the `cel` package, whose `__init__` loads its command-line front end
(typer, rich, prompt_toolkit: ~0.3 s and ~28 MB), see `_cel_library.engine`.
Semantics follow cel-go's `ext` package: strings are indexed by code point,
out-of-range indexes are errors, `split`/`replace` take Go's `n` limits.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

__all__ = ["EXT_FUNCTIONS", "ExtError"]


class ExtError(Exception):
    """An evaluation error, worded as cel-go words it."""


def _str(*values: Any) -> None:
    if not all(isinstance(v, str) for v in values):
        raise ExtError("no such overload")


def _char_at(s: str, i: int) -> str:
    _str(s)
    if i < 0 or i > len(s):
        raise ExtError(f"index out of range: {i}")
    return s[i : i + 1]


def string_index_of(s: str, sub: str, offset: int = 0) -> int:
    _str(s, sub)
    if offset < 0 or offset > len(s):
        raise ExtError(f"index out of range: {offset}")
    return s.find(sub, offset)


def string_last_index_of(s: str, sub: str, offset: int | None = None) -> int:
    _str(s, sub)
    if offset is None:
        return s.rfind(sub)
    if offset < 0 or offset > len(s):
        raise ExtError(f"index out of range: {offset}")
    return s.rfind(sub, 0, offset + len(sub))


def _ascii(s: str, upper: bool) -> str:
    _str(s)
    if upper:
        return "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in s)
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def _replace(s: str, old: str, new: str, n: int = -1) -> str:
    _str(s, old, new)
    return s.replace(old, new, n if n >= 0 else -1)


def _split(s: str, sep: str, n: int = -1) -> list[str]:
    # Go's strings.SplitN: n == 0 -> none, n < 0 -> all, an empty separator splits code points.
    _str(s, sep)
    if n == 0:
        return []
    if sep == "":
        parts = list(s)
        if 0 < n < len(parts):
            parts = parts[: n - 1] + ["".join(parts[n - 1 :])]
        return parts
    return s.split(sep, n - 1 if n > 0 else -1)


def _substring(s: str, start: int, end: int | None = None) -> str:
    _str(s)
    end = len(s) if end is None else end
    if start < 0 or start > len(s):
        raise ExtError(f"index out of range: {start}")
    if end < 0 or end > len(s):
        raise ExtError(f"index out of range: {end}")
    if start > end:
        raise ExtError(f"invalid substring range. start: {start}, end: {end}")
    return s[start:end]


def _trim(s: str) -> str:
    _str(s)
    return s.strip()


def _join(items: list[Any], sep: str = "") -> str:
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ExtError("no such overload")
    return sep.join(items)


def _reverse(value: Any) -> Any:
    if isinstance(value, str | list):
        return value[::-1]
    raise ExtError("no such overload")


def _quote(s: str) -> str:
    _str(s)
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               "\\": "\\\\", '"': '\\"'}
    return '"' + "".join(escapes.get(c, c) for c in s) + '"'


def _same(a: Any, b: Any) -> bool:
    # CEL equality: no bool/int coercion, but int and double compare numerically.
    return a == b and (isinstance(a, bool) == isinstance(b, bool))


def _has(items: list[Any], value: Any) -> bool:
    return any(_same(v, value) for v in items)


def _lists(*values: Any) -> None:
    if not all(isinstance(v, list) for v in values):
        raise ExtError("no such overload")


def _sets_contains(a: list[Any], b: list[Any]) -> bool:
    _lists(a, b)
    return all(_has(a, v) for v in b)


def _sets_intersects(a: list[Any], b: list[Any]) -> bool:
    _lists(a, b)
    return any(_has(a, v) for v in b)


def _flatten(items: list[Any], depth: int = 1) -> list[Any]:
    _lists(items)
    if depth < 0:
        raise ExtError("level must be non-negative")
    out: list[Any] = []
    for v in items:
        if isinstance(v, list) and depth > 0:
            out.extend(_flatten(v, depth - 1))
        else:
            out.append(v)
    return out


def _slice(items: list[Any], start: int, end: int) -> list[Any]:
    _lists(items)
    if start < 0 or end < 0:
        raise ExtError(f"cannot slice({start}, {end}), negative indexes not supported")
    if start > end:
        raise ExtError(f"cannot slice({start}, {end}), start index must be less than or equal to end index")
    if end > len(items):
        raise ExtError(f"cannot slice({start}, {end}), list is length {len(items)}")
    return items[start:end]


def _distinct(items: list[Any]) -> list[Any]:
    _lists(items)
    out: list[Any] = []
    for v in items:
        if not _has(out, v):
            out.append(v)
    return out


def _sort(items: list[Any]) -> list[Any]:
    _lists(items)
    kinds = {type(v) for v in items}
    if len(kinds) > 1 and not kinds <= {int, float}:
        raise ExtError("no such overload")
    return sorted(items)


def _b64_decode(text: str) -> bytes:
    _str(text)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as e:
        raise ExtError(f"illegal base64 data: {e}") from None


EXT_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "charAt": _char_at,
    "lowerAscii": lambda s: _ascii(s, upper=False),
    "upperAscii": lambda s: _ascii(s, upper=True),
    "replace": _replace,
    "split": _split,
    "substring": _substring,
    "trim": _trim,
    "join": _join,
    "reverse": _reverse,
    "strings.quote": _quote,
    "sets.contains": _sets_contains,
    "sets.equivalent": lambda a, b: _sets_contains(a, b) and _sets_contains(b, a),
    "sets.intersects": _sets_intersects,
    "flatten": _flatten,
    "slice": _slice,
    "distinct": _distinct,
    "sort": _sort,
    "lists.range": lambda n: list(range(n)),
    "base64.encode": lambda b: base64.b64encode(b).decode() if isinstance(b, bytes) else _str(b),
    "base64.decode": _b64_decode,
}
