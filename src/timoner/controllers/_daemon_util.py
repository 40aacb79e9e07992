"""Which nodes a DaemonSet's pods belong on and what those pods look like, as pure functions (`daemon/util`).

- Eligibility (`node_should_run`, upstream's NodeShouldRunDaemonPod): a
  node runs the daemon pod when the template's `nodeName` (if any),
  `nodeSelector` and required node affinity match it and its NoSchedule /
  NoExecute taints are tolerated; a pod already there may *continue*
  running on a node whose only untolerated taints are NoSchedule ones.
  Tolerations include the ones every daemon pod gets
  (`add_daemon_tolerations`): not-ready and unreachable NoExecute,
  disk/memory/pid-pressure and unschedulable NoSchedule, and
  network-unavailable NoSchedule with `hostNetwork`.
- Placement: a daemon pod is created unscheduled with a required node
  affinity `matchFields metadata.name In [<node>]` replacing the
  template's required terms (`replace_node_affinity`); the scheduler binds
  it. `target_node_name` reads the node back from `spec.nodeName` or that
  term.
- Revisions: a pod is "updated" when its `controller-revision-hash` is the
  current revision's hash (or its `pod-template-generation` the
  DaemonSet's `deprecated.daemonset.template.generation`).
- `maxUnavailable` and `maxSurge` resolve against the number of nodes that
  should run the pod, percentages rounded up.

Node-affinity and toleration matching is `timoner.api.scheduling`, the
same code the scheduler's NodeAffinity and TaintToleration plugins run.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable
from typing import Any

from timoner.api.scheduling import (
    NODE_NAME_FIELD,
    pod_matches_node,
    required_node_selector_terms,
    untolerated_taint,
)

from ._history import REVISION_HASH_LABEL
from ._pods import parse_time

__all__ = [
    "TEMPLATE_GENERATION",
    "TEMPLATE_GENERATION_LABEL",
    "FailedPodBackoff",
    "add_daemon_tolerations",
    "daemon_pod",
    "find_updated_pods_on_node",
    "is_pod_updated",
    "new_daemon_pod",
    "node_should_run",
    "pod_template",
    "pods_by_node",
    "replace_node_affinity",
    "sort_by_creation_and_phase",
    "surge_count",
    "target_node_name",
    "template_generation",
    "unavailable_count",
]

Obj = dict[str, Any]

TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"

_DAEMON_TOLERATIONS = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
_NETWORK_UNAVAILABLE = ("node.kubernetes.io/network-unavailable", "NoSchedule")


# -- tolerations and taints ---------------------------------------------------------------------


def _same_toleration(a: Obj, b: Obj) -> bool:
    """Upstream's Toleration.MatchToleration: same key, operator, value and effect."""
    return all((a.get(f) or "") == (b.get(f) or "") for f in ("key", "operator", "value", "effect"))


def _add_or_update_toleration(spec: Obj, toleration: Obj) -> None:
    tolerations = spec.get("tolerations") or []
    out, updated = [], False
    for existing in tolerations:
        if _same_toleration(existing, toleration):
            out.append(dict(toleration))
            updated = True
        else:
            out.append(existing)
    if not updated:
        out.append(dict(toleration))
    spec["tolerations"] = out


def add_daemon_tolerations(spec: Obj) -> None:
    """Add the tolerations every daemon pod has (upstream's AddOrUpdateDaemonPodTolerations), in place."""
    wanted = list(_DAEMON_TOLERATIONS)
    if spec.get("hostNetwork"):
        wanted.append(_NETWORK_UNAVAILABLE)
    for key, effect in wanted:
        _add_or_update_toleration(spec, {"key": key, "operator": "Exists", "effect": effect})


# -- placement ------------------------------------------------------------------------------------


def replace_node_affinity(affinity: Obj | None, node_name: str) -> Obj:
    """`affinity` with its required node terms replaced by `metadata.name In [node_name]` (upstream's way)."""
    term = {"matchFields": [{"key": NODE_NAME_FIELD, "operator": "In", "values": [node_name]}]}
    affinity = copy.deepcopy(affinity) if affinity else {}
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}
    return affinity


def target_node_name(pod: Obj) -> str | None:
    """The node a daemon pod is for: `spec.nodeName`, or the single name its required affinity names."""
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        return node_name
    for term in required_node_selector_terms(pod) or ():
        for req in term.get("matchFields") or ():
            if req.get("key") == NODE_NAME_FIELD and req.get("operator") == "In":
                values = req.get("values") or []
                return values[0] if len(values) == 1 else None
    return None


# -- eligibility ------------------------------------------------------------------------------------


def new_daemon_pod(ds: Obj, node_name: str) -> Obj:
    """The pod eligibility is judged on: the template, bound to `node_name`, with the daemon tolerations."""
    template = (ds.get("spec") or {}).get("template") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    spec["nodeName"] = node_name
    add_daemon_tolerations(spec)
    return {"metadata": copy.deepcopy(template.get("metadata") or {}), "spec": spec}


def node_should_run(node: Obj, ds: Obj) -> tuple[bool, bool]:
    """(should run a daemon pod, should keep one already running) on `node` (NodeShouldRunDaemonPod)."""
    name = node["metadata"]["name"]
    wanted = (((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeName")
    if wanted and wanted != name:
        return False, False
    pod = new_daemon_pod(ds, name)
    if not pod_matches_node(pod, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = pod["spec"]["tolerations"]
    if untolerated_taint(taints, tolerations, ("NoSchedule", "NoExecute")) is None:
        return True, True
    return False, untolerated_taint(taints, tolerations, ("NoExecute",)) is None


# -- pods and revisions -----------------------------------------------------------------------------


def template_generation(ds: Obj) -> str | None:
    value = ((ds.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_GENERATION)
    return str(value) if value not in (None, "") else None


def pod_template(ds: Obj, hash_: str) -> Obj:
    """The template daemon pods are created from: the daemon tolerations, the revision hash (and generation) labels."""
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    add_daemon_tolerations(template.setdefault("spec", {}))
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    generation = template_generation(ds)
    if generation is not None:
        labels[TEMPLATE_GENERATION_LABEL] = generation
    if hash_:
        labels[REVISION_HASH_LABEL] = hash_
    return template


def is_pod_updated(pod: Obj, hash_: str, generation: str | None) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return bool((hash_ and labels.get(REVISION_HASH_LABEL) == hash_)
                or (generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == generation))


def find_updated_pods_on_node(pods: Iterable[Obj], hash_: str,
                              generation: str | None) -> tuple[Obj | None, Obj | None, bool]:
    """(the updated pod, the old pod, ok) among a node's live pods; not ok when there are two of either."""
    new = old = None
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if is_pod_updated(pod, hash_, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def _by_creation_and_phase(a: Obj, b: Obj) -> int:
    scheduled_a, scheduled_b = bool((a.get("spec") or {}).get("nodeName")), bool((b.get("spec") or {}).get("nodeName"))
    if scheduled_a != scheduled_b:
        return -1 if scheduled_a else 1
    ta = parse_time(a["metadata"].get("creationTimestamp")) or 0.0
    tb = parse_time(b["metadata"].get("creationTimestamp")) or 0.0
    if ta == tb:
        na, nb = a["metadata"]["name"], b["metadata"]["name"]
        return (na > nb) - (na < nb)
    return -1 if ta < tb else 1


def sort_by_creation_and_phase(pods: Iterable[Obj]) -> list[Obj]:
    """Scheduled pods first, then oldest first, then by name (upstream's podByCreationTimestampAndPhase)."""
    return sorted(pods, key=functools.cmp_to_key(_by_creation_and_phase))


def _scaled_up(value: Any, total: int) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            try:
                return math.ceil(int(text[:-1]) * total / 100)
            except ValueError:
                return 0
        try:
            return int(text)
        except ValueError:
            return 0
    return int(value)


def _rolling(ds: Obj) -> Obj | None:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate")


def unavailable_count(ds: Obj, desired: int) -> int:
    """`maxUnavailable` against `desired` nodes, percentages rounded up (0 when not rolling)."""
    rolling = _rolling(ds)
    return _scaled_up(rolling.get("maxUnavailable"), desired) if rolling else 0


def surge_count(ds: Obj, desired: int) -> int:
    """`maxSurge` against `desired` nodes, percentages rounded up (0 when not rolling)."""
    rolling = _rolling(ds)
    return _scaled_up(rolling.get("maxSurge"), desired) if rolling else 0


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def pods_by_node(pods: Iterable[Obj]) -> dict[str, list[Obj]]:
    """Claimed pods by the node they are for, leaving out finished pods already being deleted."""
    out: dict[str, list[Obj]] = {}
    for pod in pods:
        if _terminal(pod) and pod["metadata"].get("deletionTimestamp"):
            continue
        node_name = target_node_name(pod)
        if node_name is None:
            continue
        out.setdefault(node_name, []).append(pod)
    return out


def daemon_pod(template: Obj, ds: Obj, ref: Obj, node_name: str) -> Obj:
    """A daemon pod to create for `node_name`: `generateName: <ds>-`, placed by the node-name affinity."""
    meta_in = template.get("metadata") or {}
    meta: Obj = {"generateName": f"{ds['metadata']['name']}-", "ownerReferences": [dict(ref)]}
    for key in ("labels", "annotations", "finalizers"):
        if meta_in.get(key):
            meta[key] = copy.deepcopy(meta_in[key])
    spec = copy.deepcopy(template.get("spec") or {})
    spec["affinity"] = replace_node_affinity(spec.get("affinity"), node_name)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


class FailedPodBackoff:
    """client-go's flowcontrol.Backoff for failed daemon pods: per key, 1 s doubling to 15 min."""

    def __init__(self, initial: float = 1.0, maximum: float = 900.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (delay, last update)

    def in_backoff(self, key: str, now: float) -> float:
        """The delay still to wait for `key` (0: not backing off)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        delay, last = entry
        return delay if now - last < delay else 0.0

    def next(self, key: str, now: float) -> None:
        entry = self._entries.get(key)
        if entry is None or now - entry[1] > 2 * self.maximum:
            self._entries[key] = (self.initial, now)
        else:
            self._entries[key] = (min(entry[0] * 2, self.maximum), now)
