"""The scheduler: places pending pods on nodes by POSTing `pods/<name>/binding`.

Layers, each usable alone:

- `Status`, `CycleState` and the extension-point protocols
  (`PreFilterPlugin`, `FilterPlugin`, `ScorePlugin`): the framework's
  vocabulary (`_framework`).
- `Snapshot` / `NodeInfo` / `Resources` / `StorageObjects` /
  `pod_requests`: the read-only world of one cycle (`_snapshot`).
- `schedule(pod, snapshot, plugins) -> ScheduleResult`: one cycle, a pure
  function (`_cycle`).
- `plugins`: NodeName, NodeUnschedulable, NodeAffinity, TaintToleration,
  NodeResourcesFit, VolumeBinding, NodeResourcesBalancedAllocation.
- `Scheduler` and `main`: informers, queue, assumed pods, binder, events
  (`_scheduler`); `VolumeBinder`: volume binding before the pod's
  (`_volumes`).
"""

from ._cycle import NO_NODES_MESSAGE, ScheduleResult, fit_error_message, schedule
from ._framework import Code, CycleState, FilterPlugin, Plugin, PreFilterPlugin, ScorePlugin, Status
from ._scheduler import DEFAULT_SCHEDULER_NAME, Scheduler, main
from ._snapshot import NodeInfo, Resources, Snapshot, StorageObjects, occupies_node, pod_requests
from .plugins import default_plugins

__all__ = [
    "DEFAULT_SCHEDULER_NAME",
    "NO_NODES_MESSAGE",
    "Code",
    "CycleState",
    "FilterPlugin",
    "NodeInfo",
    "Plugin",
    "PreFilterPlugin",
    "Resources",
    "ScheduleResult",
    "ScorePlugin",
    "Scheduler",
    "Snapshot",
    "Status",
    "StorageObjects",
    "default_plugins",
    "fit_error_message",
    "main",
    "occupies_node",
    "pod_requests",
    "schedule",
]
