"""The scheduler framework's vocabulary: `Status`, `CycleState` and one protocol per extension point.

Modelled on kube-scheduler's framework, kept small. A plugin implements
only the points it needs (`PreFilterPlugin`, `FilterPlugin`,
`ScorePlugin`); every outcome is a `Status` value, never an exception, so
the cycle can collect why each node was rejected and explain it to the
user. `Status.code` follows upstream:

- `SUCCESS`: the node passes (or the pod may proceed).
- `UNSCHEDULABLE`: rejected now, but preemption or a change in the
  cluster could help (e.g. `Insufficient cpu`).
- `UNSCHEDULABLE_AND_UNRESOLVABLE`: rejected, and removing pods would not
  help (a taint, a selector, an unschedulable node).
- `ERROR`: the plugin itself failed; the attempt is retried.
- `SKIP`: from PreFilter, "nothing for me to check for this pod", so the
  cycle does not call the plugin's Filter.

`CycleState` carries what a PreFilter computed (for instance the pod's
summed requests) to the Filter and Score calls of the same cycle, and
what the scheduler needs after it (VolumeBinding's per-node plan); it
lives for one pod's cycle only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ._snapshot import NodeInfo

__all__ = [
    "Code",
    "CycleState",
    "FilterPlugin",
    "Plugin",
    "PreFilterPlugin",
    "ScorePlugin",
    "Status",
]

Pod = dict[str, Any]


class Code(enum.Enum):
    """What a plugin decided; spelled as upstream's framework.Code."""

    SUCCESS = "Success"
    ERROR = "Error"
    UNSCHEDULABLE = "Unschedulable"
    UNSCHEDULABLE_AND_UNRESOLVABLE = "UnschedulableAndUnresolvable"
    SKIP = "Skip"


@dataclass(frozen=True, slots=True)
class Status:
    """A plugin's verdict, with the user-facing reasons (`Insufficient cpu`) and the plugin that gave it."""

    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def is_success(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def is_rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        return Status(self.code, self.reasons, plugin)

    @classmethod
    def success(cls) -> Status:
        return _SUCCESS

    @classmethod
    def skip(cls) -> Status:
        return _SKIP

    @classmethod
    def unschedulable(cls, *reasons: str) -> Status:
        return cls(Code.UNSCHEDULABLE, reasons)

    @classmethod
    def unresolvable(cls, *reasons: str) -> Status:
        return cls(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons)

    @classmethod
    def error(cls, reason: str) -> Status:
        return cls(Code.ERROR, (reason,))


_SUCCESS = Status()
_SKIP = Status(Code.SKIP)


@dataclass(slots=True)
class CycleState:
    """Per-cycle scratch space: PreFilter writes, Filter and Score read (keyed by plugin name).

    `snapshot` is the cycle's read-only world, for plugins that look beyond
    one node (VolumeBinding reads claims, volumes and classes from it).
    """

    data: dict[str, Any] = field(default_factory=dict)
    snapshot: Any = None

    def read(self, key: str) -> Any:
        return self.data.get(key)

    def write(self, key: str, value: Any) -> None:
        self.data[key] = value


@runtime_checkable
class Plugin(Protocol):
    """Every plugin has an upstream-style name (`NodeResourcesFit`)."""

    name: str


@runtime_checkable
class PreFilterPlugin(Protocol):
    """Runs once per cycle before any Filter; may reject the pod outright or `Skip` its Filter."""

    name: str

    def pre_filter(self, state: CycleState, pod: Pod) -> Status: ...


@runtime_checkable
class FilterPlugin(Protocol):
    """Decides whether one node can run the pod."""

    name: str

    def filter(self, state: CycleState, pod: Pod, node_info: NodeInfo) -> Status: ...


@runtime_checkable
class ScorePlugin(Protocol):
    """Ranks a feasible node from 0 (worst) to 100 (best); `weight` multiplies it."""

    name: str
    weight: int

    def score(self, state: CycleState, pod: Pod, node_info: NodeInfo) -> int: ...
