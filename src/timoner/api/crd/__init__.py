"""CustomResourceDefinitions: validating a CRD and applying one version's schema to custom resources.

`validate_crd` / `validate_crd_update` are apiextensions' `ValidateCustomResourceDefinition`
and `...Update` over a v1 CRD as a plain dict (the caller has applied the v1 defaults:
`listKind`, `singular`, `conversion.strategy`), returning upstream-worded causes.
`CustomSchema` is one version's structural schema, compiled once: it prunes, defaults
and validates custom resources as the apiextensions-apiserver does.
"""

from __future__ import annotations

from timoner.api.crd._schema import CustomSchema
from timoner.api.crd._validation import validate_crd, validate_crd_update

__all__ = ["CustomSchema", "validate_crd", "validate_crd_update"]
