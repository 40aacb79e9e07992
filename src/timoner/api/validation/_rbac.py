"""rbac.authorization.k8s.io/v1 validation (upstream `pkg/apis/rbac/validation`).

Role and binding names only need to be usable as URL path segments. Rules
need verbs, and resource rules need API groups and resources. A binding's
`roleRef` cannot change once created: delete and recreate the binding.
"""

from __future__ import annotations

from timoner.api.errors import Cause
from timoner.api.validation._field import Path, invalid, not_supported, required
from timoner.api.validation._meta import validate_label_selector
from timoner.api.validation._names import is_dns1123_subdomain, name_is_path_segment

__all__ = ["validate_cluster_role", "validate_cluster_role_binding", "validate_role", "validate_role_binding"]

_GROUP = "rbac.authorization.k8s.io"


def _rule(rule: dict, namespaced: bool, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    if not rule.get("verbs"):
        causes.append(required(path.child("verbs"), "verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs") or []
    if urls:
        if namespaced:
            causes.append(invalid(path.child("nonResourceURLs"), urls, "namespaced rules cannot apply to non-resource URLs"))
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            causes.append(invalid(path.child("nonResourceURLs"), urls,
                                  "rules cannot apply to both regular resources and non-resource URLs"))
        return causes
    if not rule.get("apiGroups"):
        causes.append(required(path.child("apiGroups"), "resource rules must supply at least one api group"))
    if not rule.get("resources"):
        causes.append(required(path.child("resources"), "resource rules must supply at least one resource"))
    return causes


def _rules(obj: dict, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    for i, rule in enumerate(obj.get("rules") or []):
        causes.extend(_rule(rule if isinstance(rule, dict) else {}, namespaced, Path("rules").index(i)))
    return causes


def validate_role(obj: dict, old: dict | None) -> list[Cause]:
    return _rules(obj, True)


def validate_cluster_role(obj: dict, old: dict | None) -> list[Cause]:
    causes = _rules(obj, False)
    aggregation = obj.get("aggregationRule")
    if aggregation is not None:
        selectors = (aggregation or {}).get("clusterRoleSelectors") or []
        if not selectors:
            causes.append(required(Path("aggregationRule").child("clusterRoleSelectors"),
                                   "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        for i, selector in enumerate(selectors):
            causes.extend(validate_label_selector(selector, Path("aggregationRule").child("clusterRoleSelectors").index(i)))
    return causes


def _subject(subject: dict, namespaced: bool, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    name = subject.get("name") or ""
    if not name:
        causes.append(required(path.child("name")))
    kind, group = subject.get("kind") or "", subject.get("apiGroup") or ""
    if kind == "ServiceAccount":
        if name:
            causes.extend(invalid(path.child("name"), name, m) for m in is_dns1123_subdomain(name))
        if group:
            causes.append(not_supported(path.child("apiGroup"), group, ("",)))
        if not namespaced and not subject.get("namespace"):
            causes.append(required(path.child("namespace")))
    elif kind in ("User", "Group"):
        if group != _GROUP:
            causes.append(not_supported(path.child("apiGroup"), group, (_GROUP,)))
    else:
        causes.append(not_supported(path.child("kind"), kind, ("ServiceAccount", "User", "Group")))
    return causes


def _binding(obj: dict, old: dict | None, *, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
    rp = Path("roleRef")
    if (ref.get("apiGroup") or "") != _GROUP:
        causes.append(not_supported(rp.child("apiGroup"), ref.get("apiGroup") or "", (_GROUP,)))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if (ref.get("kind") or "") not in kinds:
        causes.append(not_supported(rp.child("kind"), ref.get("kind") or "", kinds))
    name = ref.get("name") or ""
    if not name:
        causes.append(required(rp.child("name")))
    else:
        causes.extend(invalid(rp.child("name"), name, m) for m in name_is_path_segment(name))
    for i, subject in enumerate(obj.get("subjects") or []):
        causes.extend(_subject(subject if isinstance(subject, dict) else {}, namespaced, Path("subjects").index(i)))
    if old is not None and (old.get("roleRef") or {}) != ref:
        causes.append(invalid(rp, ref, "cannot change roleRef"))
    return causes


def validate_role_binding(obj: dict, old: dict | None) -> list[Cause]:
    return _binding(obj, old, namespaced=True)


def validate_cluster_role_binding(obj: dict, old: dict | None) -> list[Cause]:
    return _binding(obj, old, namespaced=False)
