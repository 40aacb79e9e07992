"""The read-only world a scheduling cycle sees: nodes, the pods on them, their summed requests, and storage.

A `Snapshot` is built from the informers' listers (plus the scheduler's
assumed pods) once per cycle and never changes afterwards, so the cycle is
a pure function of it (Nomad's "business logic over a snapshot"). Building
it is O(nodes + pods); a cached, incrementally updated snapshot is the
performance issue's job, not this one's.

Resource arithmetic uses integers: CPU in millicores, everything else in
base units rounded up, as upstream's `framework.Resource` does. A pod's
effective request follows upstream's `PodRequests`: the sum of its
containers, or the largest init container if that is larger (restartable
"sidecar" init containers count alongside everything after them), plus
`spec.overhead`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from timoner.api.quantity import parse_quantity

__all__ = ["NodeInfo", "Resources", "Snapshot", "StorageObjects", "occupies_node", "pod_requests"]

Obj = dict[str, Any]

CPU, MEMORY, EPHEMERAL_STORAGE, PODS = "cpu", "memory", "ephemeral-storage", "pods"
# Upstream's scoring defaults for containers that request nothing, so empty pods still spread.
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
_NOT_SCALAR = {CPU, MEMORY, EPHEMERAL_STORAGE, PODS, "storage"}


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of each resource: cpu in millicores, memory and storage in bytes, extended ones by name."""

    milli_cpu: int = 0
    memory: int = 0
    ephemeral_storage: int = 0
    scalar: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_list(cls, values: Mapping[str, Any] | None) -> Resources:
        """Parse a ResourceList (`{"cpu": "500m", "memory": "1Gi"}`); malformed values count as zero."""
        milli_cpu = memory = storage = 0
        scalar: dict[str, int] = {}
        for name, raw in (values or {}).items():
            try:
                amount = parse_quantity(raw)
            except Exception:  # validation should have caught it; do not let one bad pod stop the scheduler
                continue
            if name == CPU:
                milli_cpu = math.ceil(amount * 1000)
            elif name == MEMORY:
                memory = math.ceil(amount)
            elif name == EPHEMERAL_STORAGE:
                storage = math.ceil(amount)
            elif name not in _NOT_SCALAR:
                scalar[name] = math.ceil(amount)
        return cls(milli_cpu, memory, storage, scalar)

    def __add__(self, other: Resources) -> Resources:
        scalar = dict(self.scalar)
        for name, amount in other.scalar.items():
            scalar[name] = scalar.get(name, 0) + amount
        return Resources(self.milli_cpu + other.milli_cpu, self.memory + other.memory,
                         self.ephemeral_storage + other.ephemeral_storage, scalar)

    def max(self, other: Resources) -> Resources:
        """The per-resource maximum (how init containers combine with the rest)."""
        scalar = dict(self.scalar)
        for name, amount in other.scalar.items():
            scalar[name] = max(scalar.get(name, 0), amount)
        return Resources(max(self.milli_cpu, other.milli_cpu), max(self.memory, other.memory),
                         max(self.ephemeral_storage, other.ephemeral_storage), scalar)

    @property
    def is_zero(self) -> bool:
        return not (self.milli_cpu or self.memory or self.ephemeral_storage or any(self.scalar.values()))


def _container_requests(container: Obj, *, non_zero: bool) -> Resources:
    requests = (container.get("resources") or {}).get("requests") or {}
    amount = Resources.from_list(requests)
    if non_zero:
        # Only a missing request gets the default; an explicit zero stays zero, as upstream.
        amount = Resources(amount.milli_cpu if CPU in requests else DEFAULT_MILLI_CPU,
                           amount.memory if MEMORY in requests else DEFAULT_MEMORY,
                           amount.ephemeral_storage, amount.scalar)
    return amount


def pod_requests(pod: Obj, *, non_zero: bool = False) -> Resources:
    """What `pod` asks of a node; `non_zero=True` gives the scoring view (defaults for unset cpu/memory)."""
    spec = pod.get("spec") or {}
    total = Resources()
    for container in spec.get("containers") or []:
        total = total + _container_requests(container, non_zero=non_zero)
    sidecars = Resources()
    init_peak = Resources()
    for container in spec.get("initContainers") or []:
        amount = _container_requests(container, non_zero=non_zero)
        if container.get("restartPolicy") == "Always":
            # A sidecar keeps running next to the app containers and every later init container.
            total = total + amount
            sidecars = sidecars + amount
            amount = sidecars
        else:
            amount = amount + sidecars
        init_peak = init_peak.max(amount)
    total = total.max(init_peak)
    if spec.get("overhead"):
        total = total + Resources.from_list(spec["overhead"])
    return total


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node and what is already placed on it (upstream's framework.NodeInfo)."""

    node: Obj
    pods: tuple[Obj, ...] = ()
    requested: Resources = Resources()
    non_zero_requested: Resources = Resources()

    @property
    def name(self) -> str:
        return str(self.node["metadata"]["name"])

    @property
    def labels(self) -> Mapping[str, str]:
        return self.node["metadata"].get("labels") or {}

    @property
    def taints(self) -> list[Obj]:
        return (self.node.get("spec") or {}).get("taints") or []

    @property
    def allocatable(self) -> Resources:
        return Resources.from_list(self._allocatable_list())

    @property
    def allowed_pods(self) -> int:
        raw = self._allocatable_list().get(PODS)
        try:
            return int(parse_quantity(raw)) if raw is not None else 0
        except Exception:
            return 0

    def _allocatable_list(self) -> Mapping[str, Any]:
        status = self.node.get("status") or {}
        # A hand-written Node often carries only capacity; treat it as allocatable then.
        return status.get("allocatable") or status.get("capacity") or {}


def occupies_node(pod: Obj) -> bool:
    """Whether an assigned pod still holds its node's resources (terminating pods still do)."""
    phase = (pod.get("status") or {}).get("phase")
    return bool((pod.get("spec") or {}).get("nodeName")) and phase not in ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class StorageObjects:
    """The claims (by `namespace/name`), volumes and StorageClasses (by name) a cycle sees."""

    claims: Mapping[str, Obj] = field(default_factory=dict)
    volumes: Mapping[str, Obj] = field(default_factory=dict)
    classes: Mapping[str, Obj] = field(default_factory=dict)

    @classmethod
    def build(cls, claims: Iterable[Obj] = (), volumes: Iterable[Obj] = (),
              classes: Iterable[Obj] = ()) -> StorageObjects:
        def key(obj: Obj) -> str:
            meta = obj["metadata"]
            return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
        return cls({key(c): c for c in claims}, {key(v): v for v in volumes}, {key(c): c for c in classes})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every node, by name, with its placed pods; build with `Snapshot.build(nodes, pods)`."""

    node_infos: Mapping[str, NodeInfo] = field(default_factory=dict)
    storage: StorageObjects = field(default_factory=StorageObjects)

    @classmethod
    def build(cls, nodes: Iterable[Obj], pods: Iterable[Obj], *, storage: StorageObjects | None = None) -> Snapshot:
        """Nodes plus the pods assigned to them (`spec.nodeName`); pods on unknown nodes are ignored."""
        by_node: dict[str, tuple[Obj, list[Obj]]] = {node["metadata"]["name"]: (node, []) for node in nodes}
        for pod in pods:
            placed = by_node.get(pod.get("spec", {}).get("nodeName") or "")
            if placed is not None and occupies_node(pod):
                placed[1].append(pod)
        infos = {}
        for name, (node, placed_pods) in by_node.items():
            requested, non_zero = Resources(), Resources()
            for pod in placed_pods:
                requested = requested + pod_requests(pod)
                non_zero = non_zero + pod_requests(pod, non_zero=True)
            infos[name] = NodeInfo(node, tuple(placed_pods), requested, non_zero)
        return cls(infos, storage or StorageObjects())

    def __len__(self) -> int:
        return len(self.node_infos)

    def list(self) -> list[NodeInfo]:
        """Node infos in name order, so a cycle is deterministic."""
        return [self.node_infos[name] for name in sorted(self.node_infos)]

    def get(self, name: str) -> NodeInfo | None:
        return self.node_infos.get(name)
