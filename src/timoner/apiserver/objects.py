"""Decoding request bodies into objects of a kind: the checks every write shares.

`ObjectCodec.decode` takes a parsed body for a resource and returns the object
the store may write: apiVersion and kind checked and filled, the namespace
checked against the URL, unknown fields pruned (or refused under
`fieldValidation=Strict`, warned about under `Warn`), Go-style type errors
refused, and upstream defaults applied.
"""

from __future__ import annotations

import functools
from typing import Any

from timoner.api import errors
from timoner.api.customresources import CustomKind
from timoner.api.defaults import apply_defaults
from timoner.api.jsondup import duplicate_fields
from timoner.api.registry import ResourceInfo
from timoner.api.structural import CompiledSchema, compile_schema, decode_with_schema
from timoner.api.structural import decode as structural_decode
from timoner.api.validation import validate as validate_kind

from ._http import Request

__all__ = ["decode_object", "field_validation", "validate_object"]


def field_validation(req: Request) -> str:
    value = req.arg("fieldValidation") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise errors.BadRequest(
            f'fieldValidation parameter unsupported: {value!r}; supported values: "Ignore", "Warn", "Strict"')
    return value


def decode_object(req: Request, info: ResourceInfo, body: Any, *, namespace: str | None,
                  default: bool = True, raw: bytes | None = None) -> dict:
    """Check, prune and default a request body for `info`; see the module docstring."""
    if not isinstance(body, dict):
        raise errors.BadRequest(f"the body of the request must be a {info.kind} object, not {type(body).__name__}")
    api_version = body.get("apiVersion")
    kind = body.get("kind")
    if api_version and api_version != info.group_version:
        raise errors.BadRequest(
            f"the API version in the data ({api_version}) does not match the expected API version "
            f"({info.group_version})")
    if kind and kind != info.kind:
        raise errors.BadRequest(f"the kind in the data ({kind}) does not match the expected kind ({info.kind})")
    body["apiVersion"] = info.group_version
    body["kind"] = info.kind
    meta = body.get("metadata")
    if meta is None:
        body["metadata"] = meta = {}
    elif not isinstance(meta, dict):
        raise errors.BadRequest(f"{info.kind} in version \"{info.version}\" cannot be handled as a {info.kind}: "
                                "metadata must be an object")
    if info.namespaced and namespace is not None:
        body_ns = meta.get("namespace")
        if body_ns and body_ns != namespace:
            raise errors.BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request")
    mode = field_validation(req)
    problems: list[str] = []
    if mode == "Strict" and raw is not None and "json" in req.content_type:
        problems = [f'duplicate field "{f}"' for f in duplicate_fields(raw)]
    result = None
    if info.definition:
        result = structural_decode(body, info.definition, kind=info.kind, api_version=info.group_version)
    elif info.custom is not None:
        result = decode_with_schema(body, _pruner(info.custom), kind=info.kind, api_version=info.group_version)
    if result is not None:
        if mode == "Strict":
            problems += [f'unknown field "{f}"' for f in result.unknown_fields]
        elif mode == "Warn":
            req.warnings.extend(f'unknown field "{f}"' for f in result.unknown_fields)
    if problems:
        raise errors.BadRequest(f"strict decoding error: {', '.join(problems)}")
    if default and info.definition:
        apply_defaults(info.group, info.version, info.kind, body)
        if info.kind == "CustomResourceDefinition" and _conversion_strategy(body) == "Webhook":
            req.warnings.append("Timoner does not call conversion webhooks: this CRD's versions convert as "
                                "with strategy None (only apiVersion changes)")
    elif default and info.custom is not None and info.custom.schema is not None:
        info.custom.compiled.default(body)
    return body


def _conversion_strategy(crd: dict) -> Any:
    spec = crd.get("spec")
    conversion = spec.get("conversion") if isinstance(spec, dict) else None
    return conversion.get("strategy") if isinstance(conversion, dict) else None


def _pruner(custom: CustomKind) -> CompiledSchema:
    """The version's pruner (upstream prunes custom resources; types are validated later)."""
    return custom.compiled.pruner if custom.schema is not None else _preserving()


@functools.cache
def _preserving() -> CompiledSchema:
    return compile_schema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}, typed=False)


def validate_object(info: ResourceInfo, obj: dict, old: dict | None) -> list[errors.Cause]:
    """The store's validator: upstream's rules for the kind; a custom resource's schema and CEL rules."""
    if info.definition:
        return validate_kind(info, obj, old=old)
    if info.custom is None:
        return []
    causes = validate_kind(info, obj, old=old)
    if info.custom.schema is not None:
        causes += info.custom.compiled.validate(obj)
        if not causes:  # as upstream, CEL rules run on schema-valid objects only
            from timoner.api.crd.cel import validate_rules

            causes += validate_rules(info.custom.schema, obj, old)
    return causes
