"""JSON patch (RFC 6902) with the behaviour of the library kube-apiserver uses.

kube-apiserver applies `application/json-patch+json` bodies with
gopkg.in/evanphx/json-patch.v4, and clients depend on its exact behaviour
more than on the RFC, so this follows the library where they differ:

- array indexes may be negative (counted from the end) and `-` appends;
- `replace` of a missing object member adds it, and `copy` from a missing
  member copies `null` (the library looks members up without failing);
- `test` of a missing member passes when the expected value is `null`;
  numbers compare by type and value, so `1` and `1.0` differ as their JSON
  text does;
- an operation whose `value` is absent uses `null`.

Errors carry upstream's classification: a body that is not a list of
objects is a 400 with Go's decoding message, more than 10000 operations is a
413, and an operation that does not apply is a 422 whose wire message is
generic (`PatchFailed.detail` keeps the library's explanation).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from timoner.api.errors import BadRequest, TooLarge
from timoner.api.patch._errors import PatchFailed
from timoner.api.patch._gofmt import json_kind

__all__ = ["MAX_JSON_PATCH_OPERATIONS", "apply_json_patch"]

MAX_JSON_PATCH_OPERATIONS = 10000
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class _Location:
    """Where a pointer lands: the container holding the target and the target's key in it."""

    container: dict[str, Any] | list[Any]
    key: str


def _decode_token(token: str) -> str:
    # RFC 6901: `~1` first, then `~0`, in a single left-to-right pass.
    out: list[str] = []
    i = 0
    while i < len(token):
        if token.startswith("~1", i):
            out.append("/")
            i += 2
        elif token.startswith("~0", i):
            out.append("~")
            i += 2
        else:
            out.append(token[i])
            i += 1
    return "".join(out)


def _atoi(key: str) -> int | None:
    """Go's strconv.Atoi: an optional sign and decimal digits."""
    body = key[1:] if key[:1] in ("+", "-") else key
    if not body or not body.isascii() or not body.isdigit():
        return None
    return int(key)


def _locate(doc: Any, path: str) -> _Location | None:
    """The parent container of `path` and the last token, or None when the parent is missing."""
    tokens = path.split("/")
    if len(tokens) < 2:
        return None
    node = doc
    # Like the library, the text before the first "/" is ignored.
    for raw in tokens[1:-1]:
        token = _decode_token(raw)
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list):
            index = _atoi(token)
            if index is None or index >= len(node) or index < -len(node):
                return None
            node = node[index]
        else:
            return None
        if not isinstance(node, dict | list):
            return None
    if not isinstance(node, dict | list):
        return None
    return _Location(node, _decode_token(tokens[-1]))


def _index(items: list[Any], key: str, *, path: str, verb: str, extra: int = 0) -> int:
    """A list position for `key`; `extra` allows the one-past-the-end slot that `add` may use."""
    index = _atoi(key)
    if index is None:
        raise PatchFailed(f"error in {verb} for path: '{path}': value was not a proper array index: '{key}'")
    size = len(items) + extra
    if index >= size or index < -size:
        raise PatchFailed(
            f"error in {verb} for path: '{path}': Unable to access invalid index: {index}: invalid index referenced"
        )
    return index + size if index < 0 else index


def _get(loc: _Location, *, path: str) -> Any:
    """The value at a location; a missing object member reads as absent, as the library does."""
    if isinstance(loc.container, dict):
        return loc.container.get(loc.key, _ABSENT)
    return loc.container[_index(loc.container, loc.key, path=path, verb="get")]


def _add(loc: _Location, value: Any, *, path: str) -> None:
    if isinstance(loc.container, dict):
        loc.container[loc.key] = value
    elif loc.key == "-":
        loc.container.append(value)
    else:
        loc.container.insert(_index(loc.container, loc.key, path=path, verb="add", extra=1), value)


def _remove(loc: _Location, *, path: str) -> None:
    if isinstance(loc.container, dict):
        if loc.key not in loc.container:
            raise PatchFailed(
                f"error in remove for path: '{path}': Unable to remove nonexistent key: {loc.key}: missing value"
            )
        del loc.container[loc.key]
    else:
        del loc.container[_index(loc.container, loc.key, path=path, verb="remove")]


def _json_equal(a: Any, b: Any) -> bool:
    """Structural JSON equality in which `true`, `1` and `1.0` are all different."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _field(op: Mapping[str, Any], name: str, kind: str) -> str:
    value = op.get(name)
    if not isinstance(value, str):
        raise PatchFailed(f"{kind} operation failed to decode {name}: missing value")
    return value


def _require(loc: _Location | None, message: str) -> _Location:
    if loc is None:
        raise PatchFailed(f"{message}: missing value")
    return loc


def _apply_one(doc: Any, op: Mapping[str, Any] | None) -> Any:
    kind = op.get("op") if op is not None else None
    kind = kind if isinstance(kind, str) else "unknown"
    if op is None or kind not in ("add", "remove", "replace", "move", "copy", "test"):
        raise PatchFailed(f"Unexpected kind: {kind}")
    value = op.get("value")  # an absent value behaves as null
    if kind == "add":
        path = _field(op, "path", kind)
        loc = _require(_locate(doc, path), f'add operation does not apply: doc is missing path: "{path}"')
        _add(loc, copy.deepcopy(value), path=path)
    elif kind == "remove":
        path = _field(op, "path", kind)
        loc = _require(_locate(doc, path), f'remove operation does not apply: doc is missing path: "{path}"')
        _remove(loc, path=path)
    elif kind == "replace":
        path = _field(op, "path", kind)
        if path == "":
            if not isinstance(value, dict | list):
                raise PatchFailed("replace operation value must be object or array")
            return copy.deepcopy(value)
        loc = _require(_locate(doc, path), f"replace operation does not apply: doc is missing path: {path}")
        if isinstance(loc.container, dict):
            loc.container[loc.key] = copy.deepcopy(value)
        else:
            loc.container[_index(loc.container, loc.key, path=path, verb="replace")] = copy.deepcopy(value)
    elif kind == "move":
        source = _field(op, "from", kind)
        loc = _require(
            _locate(doc, source), f"move operation does not apply: doc is missing from path: {source}"
        )
        moved = _get(loc, path=source)
        _remove(loc, path=source)
        path = _field(op, "path", kind)
        target = _require(
            _locate(doc, path), f"move operation does not apply: doc is missing destination path: {path}"
        )
        _add(target, None if moved is _ABSENT else moved, path=path)
    elif kind == "copy":
        source = _field(op, "from", kind)
        loc = _require(
            _locate(doc, source), f"copy operation does not apply: doc is missing from path: {source}"
        )
        copied = _get(loc, path=source)
        path = _field(op, "path", kind)
        target = _require(
            _locate(doc, path), f"copy operation does not apply: doc is missing destination path: {path}"
        )
        _add(target, None if copied is _ABSENT else copy.deepcopy(copied), path=path)
    else:
        _test(doc, op, value)
    return doc


def _test(doc: Any, op: Mapping[str, Any], value: Any) -> None:
    path = _field(op, "path", "test")
    if path == "":
        actual = doc
    else:
        loc = _require(_locate(doc, path), f"test operation does not apply: is missing path: {path}")
        actual = _get(loc, path=path)
    if actual is _ABSENT:
        if value is None:
            return
    elif "value" in op and _json_equal(actual, value):
        return
    raise PatchFailed(f"testing value {path} failed: test failed")


def apply_json_patch(doc: Any, ops: Any) -> Any:
    """Apply an RFC 6902 patch (already decoded from JSON) and return the new document.

    `doc` is never mutated. Raises BadRequest for a malformed patch document,
    TooLarge for more than 10000 operations and PatchFailed (422 Invalid) for
    an operation that does not apply.
    """
    if ops is None:
        return copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise BadRequest(f"json: cannot unmarshal {json_kind(ops)} into Go value of type jsonpatch.Patch")
    for op in ops:
        if op is not None and not isinstance(op, Mapping):
            raise BadRequest(
                f"json: cannot unmarshal {json_kind(op)} into Go value of type jsonpatch.Operation"
            )
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise TooLarge(
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}"
        )
    result = copy.deepcopy(doc)
    for op in ops:
        result = _apply_one(result, op)
    return result
