"""Fluent builders for scheduler tests, after upstream's st.MakePod() / st.MakeNode().

`make_pod().name("a").requests(cpu="100m").obj()` returns a fresh plain dict
each time; every method returns the builder.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]


class PodBuilder:
    def __init__(self) -> None:
        self._pod: Obj = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pod", "namespace": "default", "uid": "pod-uid"},
            "spec": {"schedulerName": "default-scheduler", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Pending"},
        }

    def name(self, name: str) -> PodBuilder:
        self._pod["metadata"]["name"] = name
        return self

    def namespace(self, namespace: str) -> PodBuilder:
        self._pod["metadata"]["namespace"] = namespace
        return self

    def node(self, node_name: str) -> PodBuilder:
        self._pod["spec"]["nodeName"] = node_name
        return self

    def phase(self, phase: str) -> PodBuilder:
        self._pod["status"]["phase"] = phase
        return self

    def requests(self, **resources: str) -> PodBuilder:
        """Requests on the first container; `ephemeral_storage=` spells `ephemeral-storage`."""
        self._pod["spec"]["containers"][0].setdefault("resources", {})["requests"] = _resource_list(resources)
        return self

    def container(self, **resources: str) -> PodBuilder:
        """Add another app container with these requests."""
        containers = self._pod["spec"]["containers"]
        containers.append({"name": f"c{len(containers)}", "image": "busybox",
                           "resources": {"requests": _resource_list(resources)}})
        return self

    def init_container(self, *, sidecar: bool = False, **resources: str) -> PodBuilder:
        inits = self._pod["spec"].setdefault("initContainers", [])
        container: Obj = {"name": f"i{len(inits)}", "image": "busybox",
                          "resources": {"requests": _resource_list(resources)}}
        if sidecar:
            container["restartPolicy"] = "Always"
        inits.append(container)
        return self

    def overhead(self, **resources: str) -> PodBuilder:
        self._pod["spec"]["overhead"] = _resource_list(resources)
        return self

    def node_selector(self, **labels: str) -> PodBuilder:
        self._pod["spec"]["nodeSelector"] = dict(labels)
        return self

    def node_affinity_in(self, key: str, *values: str) -> PodBuilder:
        return self.node_affinity_term(match_expressions=[{"key": key, "operator": "In", "values": list(values)}])

    def node_affinity_term(self, *, match_expressions: list[Obj] | None = None,
                           match_fields: list[Obj] | None = None) -> PodBuilder:
        """Add one nodeSelectorTerm (terms are ORed)."""
        affinity = self._pod["spec"].setdefault("affinity", {}).setdefault("nodeAffinity", {})
        required = affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": []})
        term: Obj = {}
        if match_expressions is not None:
            term["matchExpressions"] = match_expressions
        if match_fields is not None:
            term["matchFields"] = match_fields
        required["nodeSelectorTerms"].append(term)
        return self

    def toleration(self, key: str = "", *, operator: str = "Equal", value: str = "",
                   effect: str = "") -> PodBuilder:
        toleration = {"key": key, "operator": operator, "effect": effect}
        if value:
            toleration["value"] = value
        self._pod["spec"].setdefault("tolerations", []).append(toleration)
        return self

    def scheduler_name(self, name: str) -> PodBuilder:
        self._pod["spec"]["schedulerName"] = name
        return self

    def claim(self, claim_name: str, volume: str = "") -> PodBuilder:
        """Add a `persistentVolumeClaim` volume (named after the claim unless `volume` is given)."""
        self._pod["spec"].setdefault("volumes", []).append(
            {"name": volume or claim_name, "persistentVolumeClaim": {"claimName": claim_name}})
        return self

    def ephemeral(self, volume: str) -> PodBuilder:
        self._pod["spec"].setdefault("volumes", []).append({"name": volume, "ephemeral": {"volumeClaimTemplate": {
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}})
        return self

    def terminating(self) -> PodBuilder:
        self._pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return self

    def obj(self) -> Obj:
        return copy.deepcopy(self._pod)


class NodeBuilder:
    def __init__(self) -> None:
        self._node: Obj = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node", "labels": {}},
            "spec": {},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        }

    def name(self, name: str) -> NodeBuilder:
        self._node["metadata"]["name"] = name
        self._node["metadata"]["labels"].setdefault("kubernetes.io/hostname", name)
        return self

    def label(self, key: str, value: str) -> NodeBuilder:
        self._node["metadata"]["labels"][key] = value
        return self

    def allocatable(self, **resources: str) -> NodeBuilder:
        """Replace allocatable; pods defaults to 110 unless given."""
        values = {"pods": "110", **_resource_list(resources)}
        self._node["status"]["allocatable"] = values
        return self

    def capacity_only(self, **resources: str) -> NodeBuilder:
        self._node["status"] = {"capacity": _resource_list(resources)}
        return self

    def taint(self, key: str, value: str = "", effect: str = "NoSchedule") -> NodeBuilder:
        taint = {"key": key, "effect": effect}
        if value:
            taint["value"] = value
        self._node["spec"].setdefault("taints", []).append(taint)
        return self

    def unschedulable(self) -> NodeBuilder:
        self._node["spec"]["unschedulable"] = True
        return self

    def obj(self) -> Obj:
        return copy.deepcopy(self._node)


def _resource_list(resources: dict[str, str]) -> dict[str, str]:
    return {name.replace("_", "-") if name == "ephemeral_storage" else name: str(value)
            for name, value in resources.items()}


def make_pod() -> PodBuilder:
    return PodBuilder()


def make_node() -> NodeBuilder:
    return NodeBuilder()
