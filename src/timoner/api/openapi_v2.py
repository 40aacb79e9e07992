"""The `/openapi/v2` document in the one encoding clients ask for: gnostic's `openapi.v2.Document` protobuf.

client-go fetches `/openapi/v2` only as
`application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and only for
client-side validation, which kubectl and Helm fall back to when
`/openapi/v3` declares no `fieldValidation` PATCH operation for an object's
kind: a `kind: List` (its items are then validated one by one), a kind the
server does not serve (skipped, so the mapping error that follows names it).
Without this document both fail with a 406 instead.

What is encoded is what that validation reads (kube-openapi's
`util/proto`): `swagger`, `info` and `definitions`, each definition in
swagger 2.0's shape: `$ref` to `#/definitions/X`, one `type` (the
package's nullable type lists collapse), IntOrString as a string of format
`int-or-string` and Quantity as a string (as upstream's v2 spec), `items`,
`properties`, `additionalProperties`, `required`, `format`, `description`
and the `x-kubernetes-*` extensions (their values as the YAML, here JSON,
gnostic keeps). Paths are left out (upstream serves them; only the v2
fallback of the `fieldValidation` check reads them, and `/openapi/v3`
answers that), as are enums, defaults and examples.

The protobuf is written by hand (field numbers from gnostic's
`openapiv2/OpenAPIv2.proto`): the document is a few hundred kilobytes built
once per process.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from timoner.api.schema import KUBERNETES_VERSION, definitions, ref_name

__all__ = ["OPENAPI_V2_CONTENT_TYPE", "OPENAPI_V2_PROTOBUF", "build_v2_protobuf"]

OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
# What kube-openapi answers that request with: Go's mime parser rejects the `@` of the asked-for type.
OPENAPI_V2_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

# openapi.v2.Schema field numbers.
_REF, _FORMAT, _DESCRIPTION, _REQUIRED = 1, 2, 4, 19
_ADDITIONAL_PROPERTIES, _TYPE, _ITEMS, _PROPERTIES, _VENDOR_EXTENSION = 21, 22, 23, 25, 31


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _bytes(field: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or message); written even when empty."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _string(field: int, value: str) -> bytes:
    return _bytes(field, value.encode()) if value else b""


def _bool(field: int, value: bool) -> bytes:
    return _varint(field << 3) + b"\x01" if value else b""


def _named(field: int, name: str, value: bytes) -> bytes:
    """One entry of gnostic's ordered maps (NamedSchema, NamedAny): name = 1, value = 2."""
    return _bytes(field, _string(1, name) + _bytes(2, value))


def _schema(node: Mapping[str, Any]) -> bytes:
    """One JSON-schema node of the package's dialect as an `openapi.v2.Schema` message."""
    name = ref_name(node)
    if name is not None:
        return _string(_REF, "#/definitions/" + name) + _string(_DESCRIPTION, node.get("description", ""))
    out = bytearray()
    out += _string(_FORMAT, node.get("format", ""))
    out += _string(_DESCRIPTION, node.get("description", ""))
    for field in node.get("required", ()):
        out += _string(_REQUIRED, field)
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        out += _bytes(_ADDITIONAL_PROPERTIES, _bytes(1, _schema(extra)))
    elif isinstance(extra, bool):
        out += _bytes(_ADDITIONAL_PROPERTIES, _bool(2, extra))
    kinds = node.get("type")
    kinds = [kinds] if isinstance(kinds, str) else [k for k in kinds or () if k != "null"]
    if kinds:
        out += _bytes(_TYPE, b"".join(_string(1, kind) for kind in kinds))
    if isinstance(node.get("items"), Mapping):
        out += _bytes(_ITEMS, _bytes(1, _schema(node["items"])))
    if "properties" in node:
        out += _bytes(_PROPERTIES, b"".join(_named(1, prop, _schema(sub)) for prop, sub in node["properties"].items()))
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out += _named(_VENDOR_EXTENSION, key, _string(2, json.dumps(value)))
    return bytes(out)


def _definition(name: str, node: Mapping[str, Any]) -> bytes:
    if name == _INT_OR_STRING:
        node = {"type": "string", "format": "int-or-string"}
    elif name == _QUANTITY:
        node = {"type": "string"}
    return _schema(node)


@functools.cache
def build_v2_protobuf() -> bytes:
    """The whole document, serialized; computed once per process."""
    info = _string(1, "Kubernetes") + _string(2, KUBERNETES_VERSION)
    defs = b"".join(_named(1, name, _definition(name, node)) for name, node in sorted(definitions().items()))
    return _string(1, "2.0") + _bytes(2, info) + _bytes(9, defs)
