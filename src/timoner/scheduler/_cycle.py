"""One scheduling cycle: a pure function from (pod, snapshot, plugins) to a `ScheduleResult`.

Upstream's `schedulePod`, small: run every PreFilter (a rejection ends the
cycle; `Skip` turns that plugin's Filter off for this pod), run the Filters
on every node in name order (the first non-success status rejects the
node, as upstream's `RunFilterPlugins`), then sum weighted Scores over the
feasible nodes and pick the best, ties going to the first name so a cycle
is reproducible. Nothing here does I/O or mutates its inputs; the
`Scheduler` commits the result.

When no node fits, `ScheduleResult.message` is upstream's FitError text:
`0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated
taint {k: v}. preemption: 0/3 nodes are available: 1 No preemption victims
found for incoming pod, 2 Preemption is not helpful for scheduling.` Counts
are per reason (a node short of cpu and memory counts under both) and the
`"<count> <reason>"` strings are sorted as strings, as Go's `sort.Strings`
does. Timoner does not preempt yet, so the preemption half says what
upstream says when no victims exist.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._framework import Code, CycleState, FilterPlugin, PreFilterPlugin, ScorePlugin, Status
from ._snapshot import Snapshot

__all__ = ["NO_NODES_MESSAGE", "ScheduleResult", "fit_error_message", "schedule"]

Pod = dict[str, Any]

NO_NODES_MESSAGE = "no nodes available to schedule pods"


def _histogram(reasons: Iterable[str]) -> str:
    counts = Counter(reasons)
    return ", ".join(sorted(f"{count} {reason}" for reason, count in counts.items()))


def fit_error_message(num_nodes: int, statuses: Mapping[str, Status], *,
                      pre_filter: Status | None = None) -> str:
    """The `0/N nodes are available: ...` message for a pod no node accepted."""
    if num_nodes == 0:
        return NO_NODES_MESSAGE
    head = f"0/{num_nodes} nodes are available"
    if pre_filter is not None:
        reasons = pre_filter.message
        preemption = [_NOT_HELPFUL] * num_nodes
    else:
        reasons = _histogram(reason for status in statuses.values() for reason in status.reasons)
        preemption = [_NO_VICTIMS if status.code is Code.UNSCHEDULABLE else _NOT_HELPFUL
                      for status in statuses.values()]
    return f"{head}: {reasons}. preemption: {head}: {_histogram(preemption)}."


_NOT_HELPFUL = "Preemption is not helpful for scheduling"
_NO_VICTIMS = "No preemption victims found for incoming pod"


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    """Where the pod goes (`node_name`), or why not: each rejected node's status and the message."""

    node_name: str | None
    statuses: Mapping[str, Status] = field(default_factory=dict)
    scores: Mapping[str, int] = field(default_factory=dict)
    evaluated_nodes: int = 0
    pre_filter_status: Status | None = None
    state: CycleState | None = None  # what the plugins wrote; the scheduler reads VolumeBinding's plan from it

    @property
    def message(self) -> str:
        if self.node_name is not None:
            return ""
        return fit_error_message(self.evaluated_nodes, self.statuses, pre_filter=self.pre_filter_status)


def schedule(pod: Pod, snapshot: Snapshot, plugins: Iterable[object]) -> ScheduleResult:
    """Choose a node for `pod` in `snapshot` with `plugins`; see the module docstring."""
    plugins = list(plugins)
    state = CycleState(snapshot=snapshot)
    skipped: set[str] = set()
    for plugin in plugins:
        if not isinstance(plugin, PreFilterPlugin):
            continue
        status = plugin.pre_filter(state, pod)
        if status.code is Code.SKIP:
            skipped.add(plugin.name)
        elif not status.is_success:
            return ScheduleResult(None, evaluated_nodes=len(snapshot), pre_filter_status=status.with_plugin(plugin.name))

    filters = [p for p in plugins if isinstance(p, FilterPlugin) and p.name not in skipped]
    statuses: dict[str, Status] = {}
    feasible = []
    for node_info in snapshot.list():
        for plugin in filters:
            status = plugin.filter(state, pod, node_info)
            if not status.is_success:
                statuses[node_info.name] = status.with_plugin(plugin.name)
                break
        else:
            feasible.append(node_info)
    if not feasible:
        return ScheduleResult(None, statuses, evaluated_nodes=len(snapshot))

    scorers = [p for p in plugins if isinstance(p, ScorePlugin)]
    scores = {info.name: sum(p.weight * p.score(state, pod, info) for p in scorers) for info in feasible}
    # max() keeps the first of equal scores, and feasible is in name order.
    best = max(feasible, key=lambda info: scores[info.name])
    return ScheduleResult(best.name, statuses, scores, evaluated_nodes=len(snapshot), state=state)
