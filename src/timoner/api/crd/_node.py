"""A CRD schema node compiled once: the keywords pruning, defaulting and validation read.

`compile_node` turns a JSON-schema dict into a tree of `Node`s with regexes
compiled, bounds converted and the `x-kubernetes-*` flags read, so that a
request walks plain attributes only.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["Node", "compile_node", "join"]


class Node:
    """A compiled schema node: the keywords kube-openapi checks, read once."""

    __slots__ = (
        "raw", "type", "nullable", "format", "enum", "pattern", "pattern_text", "maximum", "minimum",
        "exclusive_maximum", "exclusive_minimum", "multiple_of", "max_length", "min_length", "max_items",
        "min_items", "unique_items", "max_properties", "min_properties", "required", "properties",
        "additional", "additional_allowed", "items", "all_of", "any_of", "one_of", "not_",
        "preserve", "embedded", "int_or_string", "list_type", "list_map_keys", "has_default", "default",
    )

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.type: str = raw.get("type") or ""
        self.nullable = bool(raw.get("nullable"))
        self.format: str = raw.get("format") or ""
        self.enum: list | None = raw.get("enum") if isinstance(raw.get("enum"), list) else None
        pattern = raw.get("pattern")
        self.pattern_text = pattern if isinstance(pattern, str) else ""
        self.pattern = _compile_pattern(self.pattern_text) if self.pattern_text else None
        self.maximum = _num(raw.get("maximum"))
        self.minimum = _num(raw.get("minimum"))
        self.exclusive_maximum = bool(raw.get("exclusiveMaximum"))
        self.exclusive_minimum = bool(raw.get("exclusiveMinimum"))
        self.multiple_of = _num(raw.get("multipleOf"))
        self.max_length = _int(raw.get("maxLength"))
        self.min_length = _int(raw.get("minLength"))
        self.max_items = _int(raw.get("maxItems"))
        self.min_items = _int(raw.get("minItems"))
        self.unique_items = bool(raw.get("uniqueItems"))
        self.max_properties = _int(raw.get("maxProperties"))
        self.min_properties = _int(raw.get("minProperties"))
        self.required: list[str] = [r for r in raw.get("required") or [] if isinstance(r, str)]
        props = raw.get("properties")
        self.properties: dict[str, Node] = (
            {k: compile_node(v) for k, v in props.items() if isinstance(v, dict)} if isinstance(props, dict) else {}
        )
        additional = raw.get("additionalProperties")
        self.additional: Node | None = compile_node(additional) if isinstance(additional, dict) else None
        # None: keyword absent; True/False: `additionalProperties: <bool>` or a schema (True).
        self.additional_allowed: bool | None = (
            None if additional is None else (additional if isinstance(additional, bool) else True)
        )
        items = raw.get("items")
        self.items: Node | None = compile_node(items) if isinstance(items, dict) else None
        self.all_of = [compile_node(s) for s in raw.get("allOf") or [] if isinstance(s, dict)]
        self.any_of = [compile_node(s) for s in raw.get("anyOf") or [] if isinstance(s, dict)]
        self.one_of = [compile_node(s) for s in raw.get("oneOf") or [] if isinstance(s, dict)]
        if raw.get("x-kubernetes-int-or-string") is True and not self.any_of and not self.type:
            # Structural.ToKubeOpenAPI spells int-or-string as `anyOf: [integer, string]`.
            self.any_of = [Node({"type": "integer"}), Node({"type": "string"})]
        self.not_: Node | None = compile_node(raw["not"]) if isinstance(raw.get("not"), dict) else None
        self.preserve = raw.get("x-kubernetes-preserve-unknown-fields") is True
        self.embedded = raw.get("x-kubernetes-embedded-resource") is True
        self.int_or_string = raw.get("x-kubernetes-int-or-string") is True
        self.list_type: str = raw.get("x-kubernetes-list-type") or ""
        self.list_map_keys: list[str] = list(raw.get("x-kubernetes-list-map-keys") or [])
        self.has_default = "default" in raw and raw["default"] is not None
        self.default = raw.get("default")

    def value_schema(self) -> Node | None:
        """The schema that applies to a value of a map (additionalProperties)."""
        return self.additional


def compile_node(raw: dict[str, Any]) -> Node:
    return Node(raw)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _compile_pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


