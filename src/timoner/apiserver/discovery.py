"""Discovery documents, legacy and aggregated (apidiscovery.k8s.io/v2), from the served resources.

kubectl, helm and client-go ask for the aggregated form and decide what they
got from the response Content-Type alone; kopf and the Python DynamicClient
read only the legacy form. Both are built from the same `ResourceInfo` list,
so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

from timoner.api.registry import ResourceInfo

__all__ = [
    "AGGREGATED_CONTENT_TYPE",
    "aggregated",
    "api_group_list",
    "api_resource_list",
    "api_versions",
    "group_versions",
]

AGGREGATED_CONTENT_TYPE = b"application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

# Preferred version first, as upstream orders them.
_VERSION_ORDER = {"v2": 0, "v1": 1, "v1beta2": 2, "v1beta1": 3, "v1alpha1": 4}


def group_versions(resources: Sequence[ResourceInfo]) -> dict[str, list[str]]:
    """Group name -> versions, preferred first, in first-seen group order."""
    out: dict[str, list[str]] = {}
    for r in resources:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    for versions in out.values():
        versions.sort(key=lambda v: _VERSION_ORDER.get(v, 9))
    return out


def api_versions(server_address: str) -> dict:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list(resources: Sequence[ResourceInfo]) -> dict:
    groups = []
    for group, versions in group_versions(resources).items():
        if not group:
            continue
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(resources: Sequence[ResourceInfo], group: str) -> dict | None:
    versions = group_versions(resources).get(group)
    if not versions:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_resource_list(resources: Sequence[ResourceInfo], group: str, version: str) -> dict | None:
    chosen = [r for r in resources if r.group == group and r.version == version]
    if not chosen:
        return None
    items = []
    for r in chosen:
        entry = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        items.append(entry)
        for sub in r.subresources:
            sub_entry = {
                "name": f"{r.plural}/{sub.name}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind or r.kind,
                "verbs": list(sub.verbs),
            }
            if sub.group is not None and (sub.group, sub.version) != (r.group, r.version):
                sub_entry["group"] = sub.group
                sub_entry["version"] = sub.version
            items.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}


def aggregated(resources: Sequence[ResourceInfo], *, core: bool) -> dict:
    """The APIGroupDiscoveryList for `/api` (core=True) or `/apis`."""
    items = []
    for group, versions in group_versions(resources).items():
        if (group == "") != core:
            continue
        version_entries = []
        for version in versions:
            res_entries = []
            for r in resources:
                if r.group != group or r.version != version:
                    continue
                entry = {
                    "resource": r.plural,
                    "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                    "scope": "Namespaced" if r.namespaced else "Cluster",
                    "singularResource": r.singular,
                    "verbs": list(r.verbs),
                }
                if r.short_names:
                    entry["shortNames"] = list(r.short_names)
                if r.categories:
                    entry["categories"] = list(r.categories)
                subs = []
                for sub in r.subresources:
                    subs.append({
                        "subresource": sub.name,
                        "responseKind": {
                            "group": r.group if sub.group is None else sub.group,
                            "version": r.version if sub.version is None else sub.version,
                            "kind": sub.kind or r.kind,
                        },
                        "verbs": list(sub.verbs),
                    })
                if subs:
                    entry["subresources"] = subs
                res_entries.append(entry)
            version_entries.append({"version": version, "resources": res_entries, "freshness": "Current"})
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": version_entries})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}
