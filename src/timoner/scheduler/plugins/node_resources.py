"""NodeResourcesFit and NodeResourcesBalancedAllocation: requests against allocatable, and spreading.

Fit (upstream's `fitsRequest`): the node must have room for one more pod
(`Too many pods`), and for each resource the pod requests (cpu, memory,
ephemeral-storage, extended resources), `allocatable - requested` must
cover it (`Insufficient cpu`); every shortfall is reported, not only the
first. A pod that requests nothing only needs a pod slot. Fit also scores
with the LeastAllocated strategy, its upstream default: the emptier the
node (cpu and memory, equally weighted), the higher. BalancedAllocation
prefers nodes whose cpu and memory fractions stay close after placing the
pod. Scoring uses the non-zero view of requests (100m / 200Mi for
containers that ask nothing), so a burst of request-less pods spreads too.
"""

from __future__ import annotations

from typing import Any

from .._framework import CycleState, Status
from .._snapshot import NodeInfo, Resources, pod_requests

__all__ = ["NodeResourcesBalancedAllocation", "NodeResourcesFit"]

Obj = dict[str, Any]

_STATE_KEY = "PreFilterNodeResourcesFit"
MAX_SCORE = 100


def _requests(state: CycleState, pod: Obj) -> Resources:
    cached = state.read(_STATE_KEY)
    return cached if cached is not None else pod_requests(pod)


def insufficient_resources(request: Resources, node_info: NodeInfo) -> list[str]:
    """Upstream's reasons, in its order: pods, cpu, memory, ephemeral-storage, then extended by name."""
    reasons = []
    if len(node_info.pods) + 1 > node_info.allowed_pods:
        reasons.append("Too many pods")
    if request.is_zero:
        return reasons
    free, used = node_info.allocatable, node_info.requested
    if request.milli_cpu > 0 and request.milli_cpu > free.milli_cpu - used.milli_cpu:
        reasons.append("Insufficient cpu")
    if request.memory > 0 and request.memory > free.memory - used.memory:
        reasons.append("Insufficient memory")
    if request.ephemeral_storage > 0 and request.ephemeral_storage > free.ephemeral_storage - used.ephemeral_storage:
        reasons.append("Insufficient ephemeral-storage")
    for name in sorted(request.scalar):
        wanted = request.scalar[name]
        if wanted > 0 and wanted > free.scalar.get(name, 0) - used.scalar.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


def _fractions(pod: Obj, node_info: NodeInfo) -> tuple[tuple[int, int], tuple[int, int]]:
    """(requested, allocatable) for cpu and memory after placing the pod, in the non-zero view."""
    wanted = node_info.non_zero_requested + pod_requests(pod, non_zero=True)
    free = node_info.allocatable
    return (wanted.milli_cpu, free.milli_cpu), (wanted.memory, free.memory)


class NodeResourcesFit:
    """PreFilter + Filter on requests; Score with LeastAllocated."""

    name = "NodeResourcesFit"
    weight = 1

    def pre_filter(self, state: CycleState, pod: Obj) -> Status:
        state.write(_STATE_KEY, pod_requests(pod))
        return Status.success()

    def filter(self, state: CycleState, pod: Obj, node_info: NodeInfo) -> Status:
        reasons = insufficient_resources(_requests(state, pod), node_info)
        return Status.unschedulable(*reasons) if reasons else Status.success()

    def score(self, state: CycleState, pod: Obj, node_info: NodeInfo) -> int:
        total = 0
        for requested, allocatable in _fractions(pod, node_info):
            if allocatable > 0 and requested <= allocatable:
                total += (allocatable - requested) * MAX_SCORE // allocatable
        return total // 2


class NodeResourcesBalancedAllocation:
    """Score: 100 when cpu and memory would be equally used, less as they diverge."""

    name = "NodeResourcesBalancedAllocation"
    weight = 1

    def score(self, state: CycleState, pod: Obj, node_info: NodeInfo) -> int:
        shares = [min(requested / allocatable, 1.0) if allocatable > 0 else 1.0
                  for requested, allocatable in _fractions(pod, node_info)]
        # With two resources the standard deviation is half their difference.
        deviation = abs(shares[0] - shares[1]) / 2
        return int((1 - deviation) * MAX_SCORE)
