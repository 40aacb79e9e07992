"""Schema-aware walks of objects for server-side apply: field sets, comparison, merge, removal.

These are the typed-value operations of structured-merge-diff v4, over plain
JSON and the official OpenAPI definitions:

- maps and structs are granular unless `x-kubernetes-map-type: atomic`;
- a list is associative (`x-kubernetes-list-type: map` with
  `x-kubernetes-list-map-keys`), a set (`set`) or atomic (`atomic`); a list
  without `x-kubernetes-list-type` that strategic merge patch merges
  (`x-kubernetes-patch-strategy: merge`) is associative on its
  `x-kubernetes-patch-merge-key`, or a set when it has none, as
  kube-openapi's schema conversion decides for built-in kinds; every other
  list is atomic;
- values the schema does not describe (free-form objects, unknown fields)
  are granular maps and atomic lists, as upstream's deduced type has them.

A key field an item omits takes its default where upstream's schema has one
(`protocol: TCP` of ports); otherwise the item is invalid.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from timoner.api.errors import BadRequest
from timoner.api.patch._fieldset import Element, Path, json_text, path_string
from timoner.api.schema import resolve

__all__ = ["Node", "compare", "field_set", "merge", "remove_paths", "root_node"]

Node = Mapping[str, Any] | None

# Key defaults upstream's OpenAPI carries and kubernetes-validate's copy does not.
_KEY_DEFAULTS = {"protocol": "TCP"}


def root_node(definition: str | Mapping[str, Any] | None) -> Node:
    """The schema node of a whole object of `definition` (a definition name, or a custom resource's schema
    node itself), or None for free-form kinds."""
    if isinstance(definition, Mapping):
        return definition
    return {"$ref": f"#/$defs/{definition}"} if definition else None


def _ext(node: Node, name: str) -> Any:
    if node is None:
        return None
    value = node.get(name)
    return value if value is not None else resolve(node).get(name)


def _child(node: Node, name: str) -> Node:
    if node is None:
        return None
    schema = resolve(node)
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and name in properties:
        return properties[name]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


def _item(node: Node) -> Node:
    if node is None:
        return None
    items = resolve(node).get("items")
    return items if isinstance(items, Mapping) else None


def _map_atomic(node: Node) -> bool:
    return _ext(node, "x-kubernetes-map-type") == "atomic"


def _list_kind(node: Node) -> tuple[str, tuple[str, ...]]:
    """`("map", keys)`, `("set", ())` or `("atomic", ())` for a list field."""
    list_type = _ext(node, "x-kubernetes-list-type")
    if list_type == "map":
        return "map", tuple(_ext(node, "x-kubernetes-list-map-keys") or ())
    if list_type in ("set", "atomic"):
        return list_type, ()
    strategy = _ext(node, "x-kubernetes-patch-strategy") or ""
    if "merge" in strategy.split(","):
        key = _ext(node, "x-kubernetes-patch-merge-key")
        return ("map", (key,)) if key else ("set", ())
    return "atomic", ()


def _element(item: Any, kind: str, keys: tuple[str, ...], path: Path, index: int) -> Element:
    if kind == "set":
        if isinstance(item, dict | list):
            raise BadRequest(f"{path_string(path) or '.'}: element {index}: sets may only contain scalars")
        return ("v", json_text(item))
    if not isinstance(item, dict):
        raise BadRequest(f"{path_string(path) or '.'}: element {index}: associative list items must be objects")
    fields = []
    for key in keys:
        value = item.get(key, _KEY_DEFAULTS.get(key))
        if value is None:
            raise BadRequest(f"{path_string(path) or '.'}: element {index}: associative list with keys has an "
                             f"element that omits key field {key!r}")
        fields.append((key, json_text(value)))
    return ("k", tuple(sorted(fields)))


def _index(items: list[Any], kind: str, keys: tuple[str, ...], path: Path, *,
           strict: bool) -> list[tuple[Element, Any]] | None:
    """Items by path element; for a stored object (`strict=False`) None when they do not index."""
    out: list[tuple[Element, Any]] = []
    seen: set[Element] = set()
    for i, item in enumerate(items):
        try:
            element = _element(item, kind, keys, path, i)
        except BadRequest:
            if strict:
                raise
            return None
        if element in seen:
            if strict:
                raise BadRequest(f"{path_string(path)}: duplicate entries for key {element[1]}")
            return None
        seen.add(element)
        out.append((element, item))
    return out


def _granular(value: Any, node: Node, path: Path, *,
              strict: bool) -> tuple[str, list[tuple[Element, Any]]] | None:
    """`(kind, indexed items)` of a set or associative list; None for an atomic list or any other value.

    A stored list whose items lack keys or repeat one (written before ownership was tracked, or
    through a schema-less path) is handled as atomic rather than failing every later write.
    """
    if not isinstance(value, list):
        return None
    kind, keys = _list_kind(node)
    if kind == "atomic":
        return None
    indexed = _index(value, kind, keys, path, strict=strict)
    return None if indexed is None else (kind, indexed)


# --------------------------------------------------------------------- field sets


def _collect(value: Any, node: Node, path: Path, out: set[Path], *, maps: bool, strict: bool) -> None:
    """Add the paths of `value` at `path`: leaves, atomic values, list items, and maps when `maps`."""
    if isinstance(value, dict) and not _map_atomic(node):
        if maps and path:
            out.add(path)
        for name, child in value.items():
            if child is None and maps:
                continue
            _collect(child, _child(node, name), (*path, ("f", name)), out, maps=maps, strict=strict)
        return
    granular = _granular(value, node, path, strict=strict)
    if granular is not None:
        if maps and path:
            out.add(path)
        kind, indexed = granular
        item_node = _item(node)
        for element, item in indexed:
            child_path = (*path, element)
            out.add(child_path)
            if kind == "map":
                _collect(item, item_node, child_path, out, maps=maps, strict=strict)
        return
    if path:
        out.add(path)


def field_set(value: Any, node: Node, *, strict: bool = True) -> set[Path]:
    """The fields an applied configuration sets, as upstream's `ToFieldSet` lists them."""
    out: set[Path] = set()
    _collect(value, node, (), out, maps=False, strict=strict)
    return out


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (a == b if not isinstance(a, dict | list) else json_text(a) == json_text(b))


def compare(old: Any, new: Any, node: Node) -> tuple[set[Path], set[Path], set[Path]]:
    """The paths `new` adds, modifies and removes relative to `old`, as upstream's `Compare`."""
    added: set[Path] = set()
    modified: set[Path] = set()
    removed: set[Path] = set()

    def walk(a: Any, b: Any, n: Node, path: Path) -> None:
        if isinstance(a, dict) and isinstance(b, dict) and not _map_atomic(n):
            for name in a.keys() | b.keys():
                x, y = a.get(name), b.get(name)
                child, child_path = _child(n, name), (*path, ("f", name))
                if x is None and y is None:
                    continue
                if x is None:
                    _collect(y, child, child_path, added, maps=True, strict=False)
                elif y is None:
                    _collect(x, child, child_path, removed, maps=True, strict=False)
                else:
                    walk(x, y, child, child_path)
            return
        ga = _granular(a, n, path, strict=False) if isinstance(b, list) else None
        gb = _granular(b, n, path, strict=False) if ga is not None else None
        if ga is not None and gb is not None:
            kind = ga[0]
            item_node = _item(n)
            left, right = dict(ga[1]), dict(gb[1])
            for element in left.keys() | right.keys():
                child_path = (*path, element)
                if element not in left:
                    added.add(child_path)
                    if kind == "map":
                        _collect(right[element], item_node, child_path, added, maps=True, strict=False)
                elif element not in right:
                    removed.add(child_path)
                    if kind == "map":
                        _collect(left[element], item_node, child_path, removed, maps=True, strict=False)
                elif kind == "map":
                    walk(left[element], right[element], item_node, child_path)
            return
        if not _same(a, b) and path:
            modified.add(path)

    walk(old, new, node, ())
    return added, modified, removed


# --------------------------------------------------------------------- merge and removal


def _merge_lists(left: list[tuple[Element, Any]], right: list[tuple[Element, Any]], kind: str,
                 item_node: Node, path: Path) -> list[Any]:
    """Items of both lists, config's relative order kept, live-only items where they stood."""
    live_items = dict(left)
    config_items = dict(right)
    out: list[Any] = []
    emitted: set[Element] = set()

    def emit_config(element: Element) -> None:
        item = config_items[element]
        if kind == "map" and element in live_items:
            item = merge(live_items[element], item, item_node, path=(*path, element))
        else:
            item = copy.deepcopy(item)
        out.append(item)
        emitted.add(element)

    li = ri = 0
    while li < len(left) or ri < len(right):
        if li < len(left) and left[li][0] in emitted:
            li += 1
            continue
        if li < len(left) and ri < len(right):
            element = left[li][0]
            if element == right[ri][0]:
                emit_config(element)
                li += 1
                ri += 1
            elif element not in config_items:
                out.append(copy.deepcopy(left[li][1]))
                emitted.add(element)
                li += 1
            else:
                emit_config(right[ri][0])
                ri += 1
        elif li < len(left):
            out.append(copy.deepcopy(left[li][1]))
            emitted.add(left[li][0])
            li += 1
        else:
            emit_config(right[ri][0])
            ri += 1
    return out


def merge(live: Any, config: Any, node: Node, *, path: Path = ()) -> Any:
    """`config` merged onto `live`: config wins on scalars and atomic values, granular parts merge."""
    if isinstance(live, dict) and isinstance(config, dict) and not _map_atomic(node):
        out = copy.deepcopy(live)
        for name, value in config.items():
            if value is None:
                out.pop(name, None)
            else:
                out[name] = merge(live.get(name), value, _child(node, name), path=(*path, ("f", name)))
        return out
    right = _granular(config, node, path, strict=True)
    left = _granular(live, node, path, strict=False) if right is not None else None
    if right is not None and left is not None:
        return _merge_lists(left[1], right[1], right[0], _item(node), path)
    if isinstance(config, dict | list):
        # Validate keys of lists the config brings in whole, as upstream types the config first.
        field_set(config, node)
    return copy.deepcopy(config)


def remove_paths(value: Any, node: Node, paths: set[Path]) -> Any:
    """A copy of `value` without the subtrees at `paths`; maps and lists they empty go too."""
    tree: dict[Element, Any] = {}
    for p in paths:
        level = tree
        for element in p[:-1]:
            level = level.setdefault(element, {})
            if level is None:
                break
        else:
            level[p[-1]] = None  # a removed subtree: no need to look deeper

    def walk(v: Any, n: Node, t: dict[Element, Any], path: Path) -> Any:
        if isinstance(v, dict) and not _map_atomic(n):
            out = {}
            for name, child in v.items():
                element = ("f", name)
                if element in t:
                    if t[element] is None:
                        continue
                    kept = walk(child, _child(n, name), t[element], (*path, element))
                    # A map or list emptied by the removal goes, as Go's omitempty drops it.
                    if kept != {} and kept != []:
                        out[name] = kept
                else:
                    out[name] = child
            return out
        granular = _granular(v, n, path, strict=False)
        if granular is not None:
            out_list = []
            for element, item in granular[1]:
                if element in t:
                    if t[element] is None:
                        continue
                    out_list.append(walk(item, _item(n), t[element], (*path, element)))
                else:
                    out_list.append(item)
            return out_list
        return v

    return walk(copy.deepcopy(value), node, tree, ())
