"""The JSONPath subset CRD printer columns use (k8s.io/client-go/util/jsonpath, without templates).

`compile_path(".status.conditions[?(@.type==\"Ready\")].status")` returns a
function from an object to the list of values the path selects:

- `.field` and `['field']` (names with dots), `..field` is not supported;
- `[n]` and negative indexes, `[*]` over lists and maps, `[a:b]` slices;
- `[?(@.x == "v")]` filters with `==`, `!=`, `<`, `>`, `<=`, `>=` against a
  string or number literal, and `[?(@.x)]` for presence.

An optional `{...}` wrapper is accepted. A path that does not parse raises
`ValueError` with the reason.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

__all__ = ["compile_path", "find"]

Step = Callable[[list[Any]], list[Any]]

_NAME = re.compile(r"[A-Za-z0-9_\-$]+")
_FILTER = re.compile(r"""\?\(@((?:\.[A-Za-z0-9_\-]+)+)\s*(?:(==|!=|<=|>=|<|>)\s*('([^']*)'|"([^"]*)"|-?\d+(?:\.\d+)?))?\s*\)""")
_SLICE = re.compile(r"(-?\d*)\s*:\s*(-?\d*)")


def _field(name: str) -> Step:
    def step(values: list[Any]) -> list[Any]:
        return [v[name] for v in values if isinstance(v, dict) and name in v]
    return step


def _index(i: int) -> Step:
    def step(values: list[Any]) -> list[Any]:
        out = []
        for v in values:
            if isinstance(v, list) and -len(v) <= i < len(v):
                out.append(v[i])
        return out
    return step


def _slice(start: int | None, stop: int | None) -> Step:
    def step(values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if isinstance(v, list):
                out.extend(v[start:stop])
        return out
    return step


def _all(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, list):
            out.extend(v)
        elif isinstance(v, dict):
            out.extend(v.values())
    return out


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    try:
        return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]
    except TypeError:
        return False


def _filter(fields: list[str], op: str | None, literal: Any) -> Step:
    def pick(item: Any) -> tuple[bool, Any]:
        node = item
        for name in fields:
            if not isinstance(node, dict) or name not in node:
                return False, None
            node = node[name]
        return True, node

    def step(values: list[Any]) -> list[Any]:
        out = []
        for v in values:
            for item in v if isinstance(v, list) else [v]:
                found, value = pick(item)
                if found and (op is None or _compare(value, op, literal)):
                    out.append(item)
        return out
    return step


@functools.lru_cache(maxsize=1024)
def compile_path(path: str) -> Callable[[Any], list[Any]]:
    """Parse `path` once; the result maps an object to the values selected (empty when none)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if not text.startswith(".") and not text.startswith("["):
        raise ValueError(f"unrecognized character in action: {text[:1]!r}" if text else "empty path")
    steps: list[Step] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == ".":
            if text[i + 1:i + 2] == ".":
                raise ValueError("recursive descent (..) is not supported")
            match = _NAME.match(text, i + 1)
            if match is None:
                if i + 1 == len(text) and not steps:
                    i += 1
                    continue  # "." alone: the object itself
                raise ValueError(f"invalid field name at {i + 1}: {text[i + 1:i + 10]!r}")
            steps.append(_field(match.group(0)))
            i = match.end()
        elif char == "[":
            end = text.find("]", i)
            if end < 0:
                raise ValueError("unterminated array")
            inner = text[i + 1:end].strip()
            if inner.startswith("?"):
                # a filter may contain "]" only inside quotes; keep it simple and find the closing ")]"
                end = text.find(")]", i)
                if end < 0:
                    raise ValueError("unterminated filter")
                inner = text[i + 1:end + 1].strip()
                end += 1
                match = _FILTER.fullmatch(inner)
                if match is None:
                    raise ValueError(f"unsupported filter: {inner}")
                fields = match.group(1).strip(".").split(".")
                op = match.group(2)
                literal: Any = None
                if op is not None:
                    if match.group(4) is not None:
                        literal = match.group(4)
                    elif match.group(5) is not None:
                        literal = match.group(5)
                    else:
                        raw = match.group(3)
                        literal = float(raw) if "." in raw else int(raw)
                steps.append(_filter(fields, op, literal))
            elif inner == "*":
                steps.append(_all)
            elif inner[:1] in ("'", '"') and inner[-1:] == inner[:1] and len(inner) >= 2:
                steps.append(_field(inner[1:-1]))
            elif (slice_match := _SLICE.fullmatch(inner)) is not None:
                a, b = slice_match.groups()
                steps.append(_slice(int(a) if a else None, int(b) if b else None))
            else:
                try:
                    steps.append(_index(int(inner)))
                except ValueError:
                    raise ValueError(f"invalid array index {inner!r}") from None
            i = end + 1
        elif char.isspace():
            i += 1
        else:
            raise ValueError(f"unrecognized character in action: {char!r}")

    def run(obj: Any) -> list[Any]:
        values = [obj]
        for step in steps:
            values = step(values)
            if not values:
                return []
        return values

    return run


def find(obj: Any, path: str) -> list[Any]:
    """The values `path` selects in `obj`."""
    return compile_path(path)(obj)
