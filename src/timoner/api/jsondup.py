"""Duplicate keys in a JSON document, which a plain parse silently collapses.

Strict field validation refuses objects that name a field twice, as upstream's
strict decoder does (`duplicate field "metadata.name"`). orjson keeps the last
value without telling, so this second, slower parse runs only when a client
asks for `fieldValidation=Strict`.
"""

from __future__ import annotations

import json

__all__ = ["duplicate_fields"]


class _Object(dict):
    __slots__ = ("duplicates",)


def _pairs(pairs: list[tuple[str, object]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def duplicate_fields(raw: bytes | str) -> list[str]:
    """Paths (`spec.template.metadata.labels.app`, `items[0].name`) of keys given twice; [] if none."""
    try:
        doc = json.loads(raw, object_pairs_hook=_pairs)
    except ValueError:
        return []
    found: list[str] = []
    _walk(doc, "", found)
    return found


def _walk(node: object, path: str, found: list[str]) -> None:
    if isinstance(node, _Object):
        for key in node.duplicates:
            found.append(f"{path}.{key}" if path else key)
        for key, value in node.items():
            _walk(value, f"{path}.{key}" if path else key, found)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk(value, f"{path}[{i}]", found)
