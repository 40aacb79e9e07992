"""One CRD version's structural schema, compiled once, applied to every custom resource.

`CustomSchema` does what apiextensions-apiserver does to a custom resource
between decoding and storage, in upstream's order: `prune()` drops fields the
schema does not describe (pkg/apiserver/schema/pruning, with the decoder's
untyped walk in `timoner.api.structural`, which the API server runs), `default()` fills in
`default` values and drops nulls nobody allows (schema/defaulting), and
`validate()` checks the value the way kube-openapi's validator does, with the
messages `apiserver/validation.ValidateCustomResource` turns its errors into
(`Invalid value: "string": spec.replicas in body must be of type integer:
"string"`), plus `x-kubernetes-list-type` uniqueness and embedded-resource
checks (schema/listtype, schema/objectmeta).

Design: the JSON schema is compiled into a tree of `Node`s (regexes
compiled, bounds converted, `x-kubernetes-*` flags read, see `_node`) in `__init__`, so a
request only walks plain attributes. Paths are built only when an error or a
pruned field is reported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from timoner.api.crd._node import Node, compile_node
from timoner.api.crd._values import Errors, Validator, embedded_resources, list_sets_and_maps
from timoner.api.errors import Cause
from timoner.api.structural import CompiledSchema, compile_schema, prune

__all__ = ["CustomSchema", "default_value", "prune_value"]


# ---------------------------------------------------------------- defaulting


def _is_non_nullable_null(value: Any, node: Node | None) -> bool:
    return value is None and node is not None and not node.nullable and node.has_default


def _default(value: Any, node: Node | None) -> None:
    if node is None:
        return
    if isinstance(value, dict):
        for key, prop in node.properties.items():
            if prop.has_default and (key not in value or _is_non_nullable_null(value[key], prop)):
                value[key] = copy.deepcopy(prop.default)
        for key in list(value):
            prop = node.properties.get(key)
            if prop is not None:
                _default(value[key], prop)
            elif node.additional is not None:
                if _is_non_nullable_null(value[key], node.additional):
                    value[key] = copy.deepcopy(node.additional.default)
                _default(value[key], node.additional)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if _is_non_nullable_null(v, node.items):
                value[i] = copy.deepcopy(node.items.default)  # type: ignore[union-attr]
            _default(value[i], node.items)


def _prune_nulls(value: Any, node: Node | None) -> None:
    # PruneNonNullableNullsWithoutDefaults: a null where the schema allows none and has no default
    # means "unset", as it would for a Go pointer.
    if node is None:
        return
    if isinstance(value, dict):
        for key in list(value):
            sub = node.properties.get(key)
            if sub is None:
                sub = node.additional
            if sub is None:
                continue
            if value[key] is None and not sub.has_default and not sub.nullable:
                del value[key]
            else:
                _prune_nulls(value[key], sub)
    elif isinstance(value, list):
        for v in value:
            _prune_nulls(v, node.items)


class CustomSchema:
    """One version's `openAPIV3Schema`, compiled for pruning, defaulting and validation.

    `preserve_unknown_root` is `spec.preserveUnknownFields: true` (legacy CRDs): upstream does
    not prune those at all.
    """

    __slots__ = ("_root", "_preserve_root", "_pruner", "_list_types", "_embedded")

    def __init__(self, schema: dict | None, *, preserve_unknown_root: bool = False) -> None:
        self._root = compile_node(schema) if isinstance(schema, dict) else None
        self._preserve_root = preserve_unknown_root
        # The API server's own pruner (the decoder's untyped mode); no schema prunes all but type and meta.
        self._pruner = compile_schema(schema if isinstance(schema, dict) else {}, typed=False)
        # Walks that only matter when the schema uses the feature are skipped otherwise.
        self._list_types = self._root is not None and _uses(self._root, lambda n: n.list_type in ("set", "map"))
        self._embedded = self._root is not None and _uses(self._root, lambda n: n.embedded and n is not self._root)

    @property
    def pruner(self) -> CompiledSchema:
        """The compiled pruner, for the API server's decoder (`structural.decode_with_schema`)."""
        return self._pruner

    def prune(self, obj: dict) -> list[str]:
        """Remove, in place, what the schema does not describe; return the removed fields' paths.

        Metadata is pruned to ObjectMeta's fields; metadata of the wrong type is left as it is
        (decoding refuses it before pruning matters).
        """
        if self._preserve_root:
            return []
        return sorted(prune(obj, self._pruner) or [])  # PruneWithOptions sorts the paths it returns

    def default(self, obj: dict) -> None:
        """Apply `default`s in place, then drop nulls of non-nullable fields without a default."""
        if self._root is None:
            return
        _default(obj, self._root)
        _prune_nulls(obj, self._root)

    def validate(self, obj: dict) -> list[Cause]:
        """kube-openapi's validation of the whole object, plus list-type and embedded-resource checks."""
        root = self._root
        if root is None:
            return []
        # Upstream validates the whole object, metadata included (a root schema may only restrict
        # metadata.name and metadata.generateName, so ObjectMeta's other fields pass untouched).
        errs = Errors()
        Validator(errs).run(obj, root, "")
        causes = errs.causes
        if self._list_types:
            list_sets_and_maps(obj, root, "", causes)
        if self._embedded:
            embedded_resources(obj, root, "", causes, root=True)
        return causes

    def subschema(self, path: list[str]) -> dict | None:
        """The schema node at a path of property names, following properties, additionalProperties, items."""
        node = self._root
        for name in path:
            while node is not None and node.type == "array":
                node = node.items
            if node is None:
                return None
            node = node.properties.get(name) or node.additional
        return node.raw if node is not None else None


def _uses(node: Node, test: Callable[[Node], bool]) -> bool:
    """Whether `test` holds for any node reachable through properties, additionalProperties or items."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if test(current):
            return True
        stack.extend(current.properties.values())
        stack.extend(n for n in (current.additional, current.items) if n is not None)
    return False


def prune_value(value: Any, node: Node) -> None:
    """Prune a value that is not a resource root (a `default`) with its schema node."""
    prune(value, compile_schema(node.raw, typed=False, resource=False))


def default_value(value: Any, node: Node) -> None:
    _default(value, node)
