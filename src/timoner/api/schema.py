"""The official Kubernetes type definitions, loaded from the `kubernetes-validate` package.

`definitions()` returns every OpenAPI definition of Kubernetes v1.32 by name
(`io.k8s.api.apps.v1.Deployment`), with the extensions upstream publishes:
`x-kubernetes-group-version-kind`, `x-kubernetes-patch-merge-key`,
`x-kubernetes-patch-strategy`, `x-kubernetes-list-type`,
`x-kubernetes-list-map-keys`. References inside a definition read
`{"$ref": "#/$defs/<name>"}`; `resolve()` follows one.

The file is 1.3 MB of JSON, parsed once per process on first use.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

__all__ = ["KUBERNETES_VERSION", "definitions", "ref_name", "resolve"]

KUBERNETES_VERSION = "v1.32.0"
_REF_PREFIXES = ("#/$defs/", "/api/_definitions.json#/$defs/")


@functools.cache
def definitions() -> Mapping[str, dict[str, Any]]:
    """Every definition by its OpenAPI name; treat the result as read-only."""
    # Locate the package's data without importing it: its __init__ pulls in jsonschema, which we
    # do not use and which would cost start-up time and memory.
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the kubernetes-validate package is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "kubernetes-json-schema" / f"{KUBERNETES_VERSION}-local" / "_definitions.json"
    return orjson.loads(path.read_bytes())["$defs"]


def ref_name(node: Mapping[str, Any]) -> str | None:
    """The definition name a `$ref` node points at, or None if the node is no reference."""
    ref = node.get("$ref")
    if not ref or not isinstance(ref, str):  # JSONSchemaProps has a *property* named "$ref"
        return None
    for prefix in _REF_PREFIXES:
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    raise ValueError(f"unsupported $ref {ref!r}")


def resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schema a node stands for: the node itself, or the definition its `$ref` names."""
    seen = 0
    while (name := ref_name(node)) is not None:
        node = definitions()[name]
        seen += 1
        if seen > 32:
            raise ValueError("reference cycle")
    return node
