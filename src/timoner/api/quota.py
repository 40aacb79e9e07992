"""Resource quota arithmetic: resource lists, what an object uses, which quotas cover it.

Upstream's `pkg/quota/v1` (resource list helpers and the evaluators of
`pkg/quota/v1/evaluator/core`) as pure functions over plain dicts, shared by
the ResourceQuota admission plugin (charging one object) and the resource
quota controller (summing a namespace):

- a resource list is `dict[str, Quantity]`; sums keep the suffix family of
  the left operand unless it is zero, as `resource.Quantity.Add` does, so
  `used` prints the way upstream prints it (`256Mi`, `500m`);
- an `Evaluator` per group/resource says which operations it charges
  (pods: CREATE; services and claims: CREATE and UPDATE; every other
  resource: CREATE, as an object count), which quota resource names it
  covers, and an object's usage;
- a pod in a terminal phase, or past its deletion grace period, uses only
  `count/pods`; pod scopes are Terminating, NotTerminating, BestEffort,
  NotBestEffort, PriorityClass (scopeSelector) and CrossNamespacePodAffinity.
  Other kinds match no scoped quota.

Also the pod request/limit sums (sidecar-aware) that LimitRanger checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from .quantity import Quantity, QuantityFormat

__all__ = [
    "CREATE",
    "UPDATE",
    "Evaluator",
    "ResourceList",
    "add",
    "calculate_usage",
    "equals",
    "evaluator_for",
    "is_best_effort",
    "is_negative",
    "less_than_or_equal",
    "mask",
    "matches",
    "object_count_name",
    "parse_list",
    "pod_limits",
    "pod_requests",
    "pretty_print",
    "pretty_print_names",
    "quota_counts_pod",
    "remove_zeros",
    "scope_selectors",
    "subtract_non_negative",
    "to_json",
]

Obj = dict[str, Any]
ResourceList = dict[str, Quantity]

CREATE = "CREATE"
UPDATE = "UPDATE"

_ZERO = Quantity(Decimal(0), QuantityFormat.DECIMAL_SI)
_ONE = Quantity(Decimal(1), QuantityFormat.DECIMAL_SI)
_STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"
_REQUESTS_PREFIX = "requests."
_HUGEPAGES_PREFIX = "hugepages-"


# -- resource lists ------------------------------------------------------------------------------


def parse_list(raw: Mapping[str, Any] | None) -> ResourceList:
    """A JSON resource list (`{"cpu": "500m"}`) as quantities; unparsable values are left out."""
    out: ResourceList = {}
    for name, value in (raw or {}).items():
        try:
            out[name] = Quantity.parse(value)
        except (ValueError, TypeError):
            continue
    return out


def to_json(items: ResourceList) -> dict[str, str]:
    """A resource list as the API writes it: canonical quantity strings."""
    return {name: str(q) for name, q in sorted(items.items())}


def _plus(a: Quantity, b: Quantity) -> Quantity:
    # resource.Quantity.Add: the receiver's format, unless the receiver is zero.
    return Quantity(a.value + b.value, b.format if a.value == 0 else a.format)


def _minus(a: Quantity, b: Quantity) -> Quantity:
    return Quantity(a.value - b.value, b.format if a.value == 0 else a.format)


def add(a: ResourceList, b: ResourceList) -> ResourceList:
    """The sum of two lists; a name in only one keeps its value."""
    out = dict(a)
    for name, q in b.items():
        out[name] = _plus(out[name], q) if name in out else q
    return out


def subtract_non_negative(a: ResourceList, b: ResourceList) -> ResourceList:
    """`a - b` for every name in `a`, never below zero (upstream's SubtractWithNonNegativeResult)."""
    out: ResourceList = {}
    for name, q in a.items():
        value = _minus(q, b[name]) if name in b else q
        out[name] = value if value.value >= 0 else Quantity(Decimal(0), value.format)
    return out


def mask(items: ResourceList, names: Iterable[str]) -> ResourceList:
    """Only the entries of `items` whose names are in `names`."""
    wanted = set(names)
    return {name: q for name, q in items.items() if name in wanted}


def less_than_or_equal(a: ResourceList, b: ResourceList) -> tuple[bool, list[str]]:
    """Whether every name of `b` that `a` has is at most `b`'s value; the names that exceed."""
    exceeded = [name for name, limit in b.items() if name in a and a[name].value > limit.value]
    return not exceeded, exceeded


def remove_zeros(items: ResourceList) -> ResourceList:
    return {name: q for name, q in items.items() if q.value != 0}


def is_negative(items: ResourceList) -> list[str]:
    return [name for name, q in items.items() if q.value < 0]


def equals(a: ResourceList, b: ResourceList) -> bool:
    """Same names, same values (formats aside), as upstream's quota.Equals."""
    return a.keys() == b.keys() and all(a[name].value == b[name].value for name in a)


def pretty_print(items: ResourceList) -> str:
    """`pods=1,requests.cpu=500m`: sorted by name, as upstream's error messages list them."""
    return ",".join(f"{name}={items[name]}" for name in sorted(items))


def pretty_print_names(names: Iterable[str]) -> str:
    return ",".join(sorted(names))


# -- pods ----------------------------------------------------------------------------------------


def _add_into(total: ResourceList, items: ResourceList) -> None:
    for name, q in items.items():
        total[name] = _plus(total[name], q) if name in total else q


def _max_into(total: ResourceList, items: ResourceList) -> None:
    for name, q in items.items():
        if name not in total or q.value > total[name].value:
            total[name] = q


def _pod_sum(pod: Obj, which: str) -> ResourceList:
    """Containers summed, sidecars (restartable init containers) added, the largest init step taken."""
    spec = pod.get("spec") or {}
    total: ResourceList = {}
    for container in spec.get("containers") or ():
        _add_into(total, parse_list((container.get("resources") or {}).get(which)))
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for container in spec.get("initContainers") or ():
        own = parse_list((container.get("resources") or {}).get(which))
        if container.get("restartPolicy") == "Always":
            _add_into(total, own)
            _add_into(sidecars, own)
            step = dict(sidecars)
        else:
            step = dict(own)
            _add_into(step, sidecars)
        _max_into(init_peak, step)
    _max_into(total, init_peak)
    return total


def pod_requests(pod: Obj, *, overhead: bool = True) -> ResourceList:
    """What a pod requests (upstream's resourcehelper.PodRequests), with `spec.overhead` unless told not to."""
    total = _pod_sum(pod, "requests")
    if overhead:
        _add_into(total, parse_list((pod.get("spec") or {}).get("overhead")))
    return total


def pod_limits(pod: Obj, *, overhead: bool = True) -> ResourceList:
    """A pod's limits (resourcehelper.PodLimits); overhead is added only to limits already set."""
    total = _pod_sum(pod, "limits")
    if overhead:
        for name, q in parse_list((pod.get("spec") or {}).get("overhead")).items():
            if name in total:
                total[name] = _plus(total[name], q)
    return total


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def quota_counts_pod(pod: Obj, now: float) -> bool:
    """Whether a pod's compute resources count (upstream's QuotaV1Pod).

    Terminal pods do not; nor a terminating pod whose deletion is overdue by
    its grace period (a lost node must not block scaling up).
    """
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    deleted = _parse_time(meta.get("deletionTimestamp"))
    grace = meta.get("deletionGracePeriodSeconds")
    return not (deleted is not None and grace is not None and now > deleted + grace)


def is_best_effort(pod: Obj) -> bool:
    """Whether the pod's QoS class is BestEffort: no container asks for or limits cpu or memory."""
    qos = (pod.get("status") or {}).get("qosClass")
    if qos:
        return qos == "BestEffort"
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        resources = container.get("resources") or {}
        for which in ("requests", "limits"):
            for name, q in parse_list(resources.get(which)).items():
                if name in ("cpu", "memory") and q.value > 0:
                    return False
    return True


def _is_terminating(pod: Obj) -> bool:
    deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    return isinstance(deadline, int) and deadline >= 0


def _cross_namespace_affinity(pod: Obj) -> bool:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        terms = affinity.get(kind) or {}
        for term in terms.get("requiredDuringSchedulingIgnoredDuringExecution") or ():
            if term.get("namespaces") or term.get("namespaceSelector") is not None:
                return True
        for weighted in terms.get("preferredDuringSchedulingIgnoredDuringExecution") or ():
            term = weighted.get("podAffinityTerm") or {}
            if term.get("namespaces") or term.get("namespaceSelector") is not None:
                return True
    return False


def _selector_matches(selector: Obj, value: str | None) -> bool:
    """A scoped selector requirement over one label (`PriorityClass` -> the pod's class, if any)."""
    op = selector.get("operator")
    values = selector.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    return False


def _pod_matches_scope(selector: Obj, pod: Obj) -> bool:
    scope = selector.get("scopeName")
    if scope == "Terminating":
        return _is_terminating(pod)
    if scope == "NotTerminating":
        return not _is_terminating(pod)
    if scope == "BestEffort":
        return is_best_effort(pod)
    if scope == "NotBestEffort":
        return not is_best_effort(pod)
    if scope == "PriorityClass":
        return _selector_matches(selector, (pod.get("spec") or {}).get("priorityClassName") or None)
    if scope == "CrossNamespacePodAffinity":
        return _cross_namespace_affinity(pod)
    return False


def scope_selectors(quota: Obj) -> list[Obj]:
    """`spec.scopes` as Exists requirements, then `spec.scopeSelector.matchExpressions`."""
    spec = quota.get("spec") or {}
    out: list[Obj] = [{"scopeName": s, "operator": "Exists"} for s in spec.get("scopes") or ()]
    out.extend((spec.get("scopeSelector") or {}).get("matchExpressions") or ())
    return out


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _is_extended(name: str) -> bool:
    return not _is_native(name) and not name.startswith(_REQUESTS_PREFIX)


_POD_RESOURCES = frozenset({
    "count/pods", "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage", "pods",
})
# Quota resources that oblige every container to state a request or limit (a backward-compatibility rule).
_VALIDATION_SET = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})


def _compute_usage(requests: ResourceList, limits: ResourceList) -> ResourceList:
    """Upstream's podComputeUsageHelper: quota names for a set of requests and limits."""
    out: ResourceList = {"pods": _ONE}
    for resource in ("cpu", "memory", "ephemeral-storage"):
        if resource in requests:
            out[resource] = requests[resource]
            out[_REQUESTS_PREFIX + resource] = requests[resource]
        if resource in limits:
            out["limits." + resource] = limits[resource]
    for name, q in requests.items():
        if name.startswith(_HUGEPAGES_PREFIX):
            out[name] = q
            out[_REQUESTS_PREFIX + name] = q
        if _is_extended(name):
            out[_REQUESTS_PREFIX + name] = q
    return out


def _pod_matching(names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        if (name in _POD_RESOURCES or name.startswith(_HUGEPAGES_PREFIX)
                or name.startswith(_REQUESTS_PREFIX + _HUGEPAGES_PREFIX)
                or (not _is_native(name) and name.startswith(_REQUESTS_PREFIX))):
            out.append(name)
    return out


def _pod_usage(pod: Obj, now: float) -> ResourceList:
    usage: ResourceList = {"count/pods": _ONE}
    if not quota_counts_pod(pod, now):
        return usage
    return add(usage, _compute_usage(pod_requests(pod), pod_limits(pod)))


def _pod_constraints(required: Iterable[str], pod: Obj) -> str | None:
    """`must specify limits.cpu for: a,b; requests.memory for: c`, or None when every container complies."""
    wanted = set(required) & _VALIDATION_SET
    missing: dict[str, set[str]] = {}
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        resources = container.get("resources") or {}
        present = set(_compute_usage(parse_list(resources.get("requests")), parse_list(resources.get("limits"))))
        for name in wanted - present:
            missing.setdefault(name, set()).add(container.get("name", ""))
    if not missing:
        return None
    parts = [f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing)]
    return "must specify " + "; ".join(parts)


# -- other kinds ---------------------------------------------------------------------------------


def object_count_name(resource: str, group: str) -> str:
    """`count/<resource>` for the core group, `count/<resource>.<group>` otherwise."""
    return f"count/{resource}.{group}" if group else f"count/{resource}"


def _service_usage(svc: Obj, now: float) -> ResourceList:
    spec = svc.get("spec") or {}
    ports = len(spec.get("ports") or ())
    usage: ResourceList = {"count/services": _ONE, "services": _ONE, "services.loadbalancers": _ZERO,
                           "services.nodeports": _ZERO}
    kind = spec.get("type", "ClusterIP")
    if kind == "NodePort":
        usage["services.nodeports"] = Quantity(Decimal(ports))
    elif kind == "LoadBalancer":
        # Upstream counts a load balancer's ports as node ports even with allocateLoadBalancerNodePorts false.
        usage["services.loadbalancers"] = _ONE
        usage["services.nodeports"] = Quantity(Decimal(ports))
    return usage


def _claim_class(claim: Obj) -> str:
    annotations = (claim.get("metadata") or {}).get("annotations") or {}
    beta = annotations.get("volume.beta.kubernetes.io/storage-class")
    if beta is not None:
        return beta
    return (claim.get("spec") or {}).get("storageClassName") or ""


def _claim_usage(claim: Obj, now: float) -> ResourceList:
    usage: ResourceList = {"persistentvolumeclaims": _ONE, "count/persistentvolumeclaims": _ONE}
    cls = _claim_class(claim)
    if cls:
        usage[cls + _STORAGE_CLASS_SUFFIX + "persistentvolumeclaims"] = _ONE
    requested = parse_list(((claim.get("spec") or {}).get("resources") or {}).get("requests")).get("storage")
    if requested is not None and requested.value != 0:
        # Counted in whole bytes so that quota validation accepts the sum (upstream issue 94313).
        storage = Quantity(requested.value.to_integral_value(rounding=ROUND_CEILING), requested.format)
        usage["requests.storage"] = storage
        if cls:
            usage[cls + _STORAGE_CLASS_SUFFIX + "requests.storage"] = storage
    return usage


def _claim_matching(names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        if name in ("persistentvolumeclaims", "requests.storage", "count/persistentvolumeclaims"):
            out.append(name)
        elif any(name.endswith(_STORAGE_CLASS_SUFFIX + r) for r in ("persistentvolumeclaims", "requests.storage")):
            out.append(name)
    return out


# Core kinds whose object count has a legacy name too (`configmaps` beside `count/configmaps`).
_LEGACY_COUNT_NAMES = {"configmaps", "secrets", "replicationcontrollers", "resourcequotas"}


@dataclass(frozen=True, slots=True)
class Evaluator:
    """How quota sees one group/resource: what it charges for, which quota names it covers, its usage."""

    group: str
    resource: str
    operations: frozenset[str]
    names: frozenset[str] = field(default_factory=frozenset)  # object count names (generic evaluators)
    _usage: Callable[[Obj, float], ResourceList] | None = None
    _matching: Callable[[Iterable[str]], list[str]] | None = None

    @property
    def pods(self) -> bool:
        return not self.group and self.resource == "pods"

    def handles(self, operation: str) -> bool:
        return operation in self.operations

    def matching_resources(self, names: Iterable[str]) -> list[str]:
        """The quota resource names among `names` that this resource's usage counts toward."""
        if self._matching is not None:
            return self._matching(names)
        return [name for name in names if name in self.names]

    def usage(self, obj: Obj, *, now: float) -> ResourceList:
        if self._usage is not None:
            return self._usage(obj, now)
        return dict.fromkeys(sorted(self.names), _ONE)

    def matches_scope(self, selector: Obj, obj: Obj) -> bool:
        return _pod_matches_scope(selector, obj) if self.pods else False

    def constraints(self, required: Iterable[str], obj: Obj) -> str | None:
        """Why `obj` cannot be charged to a quota constraining `required` (pods only), or None."""
        return _pod_constraints(required, obj) if self.pods else None


def evaluator_for(group: str, resource: str) -> Evaluator:
    """The evaluator of a group/resource: pods, services, claims, or an object count."""
    if not group and resource == "pods":
        return Evaluator(group, resource, frozenset({CREATE}), _usage=_pod_usage, _matching=_pod_matching)
    if not group and resource == "services":
        names = frozenset({"count/services", "services", "services.nodeports", "services.loadbalancers"})
        return Evaluator(group, resource, frozenset({CREATE, UPDATE}), names, _usage=_service_usage)
    if not group and resource == "persistentvolumeclaims":
        return Evaluator(group, resource, frozenset({CREATE, UPDATE}), _usage=_claim_usage,
                         _matching=_claim_matching)
    names = {object_count_name(resource, group)}
    if not group and resource in _LEGACY_COUNT_NAMES:
        names.add(resource)
    return Evaluator(group, resource, frozenset({CREATE}), frozenset(names))


def matches(evaluator: Evaluator, quota: Obj, obj: Obj) -> bool:
    """Whether `quota` covers `obj`: its `status.hard` names a resource of the evaluator and every scope matches."""
    hard = (quota.get("status") or {}).get("hard") or {}
    if not evaluator.matching_resources(hard):
        return False
    return all(evaluator.matches_scope(selector, obj) for selector in scope_selectors(quota))


def calculate_usage(quota: Obj, evaluators: Iterable[Evaluator],
                    objects: Callable[[Evaluator], Iterable[Obj]], *, now: float) -> ResourceList:
    """What the objects of a namespace use of `quota`'s `spec.hard` (the controller's CalculateUsage).

    `objects(evaluator)` lists the namespace's objects of that evaluator's
    resource; only evaluators covering a resource of the quota are asked.
    Every covered name appears, zero when nothing uses it.
    """
    hard_names = list((quota.get("spec") or {}).get("hard") or {})
    selectors = scope_selectors(quota)
    total: ResourceList = {}
    covered: set[str] = set()
    for evaluator in evaluators:
        names = evaluator.matching_resources(hard_names)
        if not names:
            continue
        covered.update(names)
        used: ResourceList = {name: _ZERO for name in names}
        for obj in objects(evaluator):
            if all(evaluator.matches_scope(selector, obj) for selector in selectors):
                used = add(used, mask(evaluator.usage(obj, now=now), names))
        total = add(total, used)
    return mask(total, covered)
