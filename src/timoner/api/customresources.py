"""Custom resources: the `ResourceInfo`s a CustomResourceDefinition serves, and what they carry.

A CRD (apiextensions.k8s.io/v1) serves one REST resource per served version.
`resources_for_crd` turns a CRD object into those `ResourceInfo`s, each with
a `CustomKind`: the version's schema (compiled once, lazily, into a
`timoner.api.crd.CustomSchema`), its subresources, printer columns and the
storage version. Versions are ordered as upstream's discovery orders them
(`version_priority`): GA before beta before alpha, higher numbers first,
then other names alphabetically.

Everything here is pure; the API server's CRD manager owns the life cycle.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from timoner.api.registry import ALL_VERBS, ResourceInfo, Subresource

__all__ = [
    "CRD_FINALIZER",
    "CustomKind",
    "apply_schema",
    "crd_defaults",
    "resources_for_crd",
    "version_priority",
]

CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

_STATUS = Subresource("status", ("get", "patch", "update"))
_SCALE = Subresource("scale", ("get", "patch", "update"), "autoscaling", "v1", "Scale")
_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key: upstream's kube-aware version order (v2, v1, v1beta2, v1beta1, v1alpha1, then others by name)."""
    match = _KUBE_VERSION.match(version)
    if match is None:
        return (3, 0, 0, version)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0), "")


@dataclass(frozen=True, eq=False)
class CustomKind:
    """What one served version of a CRD adds to its `ResourceInfo` (compared by identity)."""

    crd_name: str
    crd_uid: str
    schema: dict | None
    storage_version: str
    versions: tuple[str, ...]  # every version of the CRD, as declared
    status: bool
    scale: dict | None
    columns: tuple[dict, ...]
    terminating: bool = False
    deprecated: bool = False
    deprecation_warning: str | None = None
    selectable_fields: tuple[str, ...] = ()  # field selector paths, e.g. "spec.color"

    @functools.cached_property
    def compiled(self) -> Any:
        """The version's `CustomSchema` (pruning, defaulting, validation), built on first use."""
        from timoner.api.crd import CustomSchema

        return CustomSchema(self.schema)

    @property
    def multi_version(self) -> bool:
        return len(self.versions) > 1

    @functools.cached_property
    def apply_root(self) -> dict | None:
        """The schema server-side apply walks (see `apply_schema`)."""
        return apply_schema(self.schema)


def apply_schema(schema: dict | None) -> dict | None:
    """A CR schema as server-side apply's typed walk needs it: `metadata` typed as ObjectMeta.

    Upstream's structured-merge-diff type for a custom resource is its schema
    with the standard `apiVersion`, `kind` and `metadata` fields, so labels,
    finalizers and ownerReferences merge as they do on built-in kinds.
    """
    if schema is None:
        return None
    properties = dict(schema.get("properties") or {})
    properties["metadata"] = {"$ref": f"#/$defs/{OBJECT_META}"}
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    return {**schema, "properties": properties}


def crd_defaults(crd: dict) -> None:
    """Upstream's defaulting of a v1 CRD (SetDefaults_CustomResourceDefinition and friends), in place.

    Values of the wrong type are left for validation to refuse.
    """
    spec = crd.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.setdefault("names", {})
    if isinstance(names, dict):
        _default_names(names)
    conversion = spec.setdefault("conversion", {})
    if isinstance(conversion, dict):
        conversion.setdefault("strategy", "None")
        webhook = conversion.get("webhook")
        client = webhook.get("clientConfig") if isinstance(webhook, dict) else None
        service = client.get("service") if isinstance(client, dict) else None
        if isinstance(service, dict):
            service.setdefault("port", 443)
    status = crd.get("status")
    accepted = status.get("acceptedNames") if isinstance(status, dict) else None
    if isinstance(accepted, dict):
        _default_names(accepted)


def _default_names(names: dict) -> None:
    kind = names.get("kind")
    if isinstance(kind, str) and kind:
        if not names.get("singular"):
            names["singular"] = kind.lower()
        if not names.get("listKind"):
            names["listKind"] = f"{kind}List"


def storage_version(crd: dict) -> str:
    for version in (crd.get("spec") or {}).get("versions") or []:
        if version.get("storage"):
            return version.get("name", "")
    return ""


def resources_for_crd(crd: dict) -> list[ResourceInfo]:
    """One `ResourceInfo` per served version of `crd`, preferred version first."""
    meta = crd.get("metadata") or {}
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    all_versions = tuple(v.get("name", "") for v in versions)
    stored = storage_version(crd)
    terminating = bool(meta.get("deletionTimestamp"))
    out = []
    for version in sorted((v for v in versions if v.get("served")), key=lambda v: version_priority(v["name"])):
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale")
        subs: list[Subresource] = []
        if subresources.get("status") is not None:
            subs.append(_STATUS)
        if scale is not None:
            subs.append(_SCALE)
        custom = CustomKind(
            crd_name=meta.get("name", ""),
            crd_uid=meta.get("uid", ""),
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            storage_version=stored,
            versions=all_versions,
            status=subresources.get("status") is not None,
            scale=scale,
            columns=tuple(version.get("additionalPrinterColumns") or ()),
            terminating=terminating,
            deprecated=bool(version.get("deprecated")),
            deprecation_warning=version.get("deprecationWarning"),
            selectable_fields=tuple(f.get("jsonPath", "").lstrip(".") for f in version.get("selectableFields") or ()
                                    if isinstance(f, dict) and f.get("jsonPath")),
        )
        kind = names.get("kind", "")
        out.append(ResourceInfo(
            group=spec.get("group", ""),
            version=version["name"],
            kind=kind,
            plural=names.get("plural", ""),
            singular=names.get("singular") or kind.lower(),
            namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            verbs=ALL_VERBS,
            subresources=tuple(subs),
            list_kind_name=names.get("listKind") or f"{kind}List",
            custom=custom,
        ))
    return out
