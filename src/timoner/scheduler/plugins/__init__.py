"""The in-tree plugins, one module each, named as upstream's; `default_plugins()` is the default profile."""

from __future__ import annotations

from .node_affinity import NodeAffinity
from .node_name import NodeName
from .node_resources import NodeResourcesBalancedAllocation, NodeResourcesFit
from .node_unschedulable import NodeUnschedulable
from .taint_toleration import TaintToleration
from .volume_binding import VolumeBinding, VolumePlan

__all__ = [
    "NodeAffinity",
    "NodeName",
    "NodeResourcesBalancedAllocation",
    "NodeResourcesFit",
    "NodeUnschedulable",
    "TaintToleration",
    "VolumeBinding",
    "VolumePlan",
    "default_plugins",
]


def default_plugins() -> list[object]:
    """Upstream's default filter order (cheap, unresolvable checks first), then the scorers."""
    return [NodeUnschedulable(), NodeName(), TaintToleration(), NodeAffinity(), NodeResourcesFit(),
            VolumeBinding(), NodeResourcesBalancedAllocation()]
