"""Field sets, the unit of ownership in server-side apply, and their `fieldsV1` encoding.

A field set is a set of paths into an object, as structured-merge-diff's
`fieldpath.Set` is. A path is a tuple of elements, each one of:

- `("f", name)`: a field of a map or struct (`f:name`),
- `("k", ((key, json), ...))`: the item of an associative list whose key
  fields have these values, keys sorted by name (`k:{"name":"nginx"}`),
- `("v", json)`: the item of a set list with this value (`v:"a"`),
- `("i", index)`: an item of a list by position (`i:0`).

Values inside `k:` and `v:` elements are kept as their compact JSON text, so
elements hash and compare without caring about Python's `1 == 1.0 == True`.

`fieldsV1` is the nested JSON object upstream writes into
`metadata.managedFields[].fieldsV1`: one `"<element>": {...}` member per child,
and `".": {}` in a child that is itself a member of the set and also has
children. `encode_fields` writes children in upstream's order (field names
first, then keys, values and indexes, each sorted), so the bytes match what
kube-apiserver writes for the same set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from timoner.api.errors import BadRequest

__all__ = [
    "Element",
    "Path",
    "decode_fields",
    "element_string",
    "encode_fields",
    "json_text",
    "path_string",
]

Element = tuple[str, Any]
Path = tuple[Element, ...]

_ORDER = {"f": 0, "k": 1, "v": 2, "i": 3}


def json_text(value: Any) -> str:
    """Compact JSON with sorted keys: the identity of a value inside a path element."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def element_string(element: Element) -> str:
    """One element as `fieldsV1` spells its key: `f:name`, `k:{...}`, `v:...`, `i:0`."""
    kind, value = element
    if kind == "f":
        return f"f:{value}"
    if kind == "k":
        return "k:{" + ",".join(f"{json_text(name)}:{text}" for name, text in value) + "}"
    return f"{kind}:{value}"


def path_string(path: Path) -> str:
    """A path as upstream prints it in conflict messages: `.spec.containers[name="nginx"].image`."""
    out = []
    for kind, value in path:
        if kind == "f":
            out.append(f".{value}")
        elif kind == "k":
            out.append("[" + ",".join(f"{name}={text}" for name, text in value) + "]")
        elif kind == "v":
            out.append(f"[={value}]")
        else:
            out.append(f"[{value}]")
    return "".join(out)


def _sort_key(element: Element) -> tuple[int, Any]:
    kind, value = element
    return (_ORDER[kind], value)


def encode_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """The `fieldsV1` object of a set of paths."""
    tree: dict[Element, Any] = {}
    members: set[Path] = set()
    for path in paths:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        members.add(path)

    def emit(node: dict[Element, Any], prefix: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if node and prefix in members and prefix:
            out["."] = {}
        for element in sorted(node, key=_sort_key):
            out[element_string(element)] = emit(node[element], (*prefix, element))
        return out

    return emit(tree, ())


def _decode_element(text: str) -> Element:
    kind, sep, rest = text.partition(":")
    if not sep or kind not in _ORDER:
        raise ValueError(f"unknown path element type in {text!r}")
    if kind == "f":
        return ("f", rest)
    if kind == "i":
        return ("i", int(rest))
    value = orjson.loads(rest)
    if kind == "v":
        return ("v", json_text(value))
    if not isinstance(value, dict) or not value:
        raise ValueError(f"key element {text!r} is not a non-empty object")
    return ("k", tuple(sorted((name, json_text(v)) for name, v in value.items())))


def decode_fields(fields: Any) -> frozenset[Path]:
    """The set of paths a `fieldsV1` object stands for; BadRequest when it is malformed."""
    out: set[Path] = set()

    def walk(node: Any, prefix: Path) -> None:
        if not isinstance(node, Mapping):
            raise ValueError("expected an object")
        if not node and prefix:
            out.add(prefix)
        for key, child in node.items():
            if key == ".":
                if prefix:
                    out.add(prefix)
                continue
            walk(child, (*prefix, _decode_element(key)))

    try:
        walk(fields, ())
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise BadRequest(f"error decoding fieldsV1: {exc}") from None
    return frozenset(out)
