"""The LimitRanger admission plugin: LimitRange defaults applied to pods, and its min/max/ratio enforced.

Upstream's plugin/pkg/admission/limitranger, over the LimitRanges of the
request's namespace in the watch cache (by name):

- **admit** (pods, CREATE only: containers cannot change afterwards):
  every container and init container lacking a limit or request that a
  `Container` item's `default` / `defaultRequest` names gets it, and the
  pod is annotated `kubernetes.io/limit-ranger: LimitRanger plugin set:
  cpu, memory request for container app; cpu limit for container app`;
- **validate** (pods on CREATE, claims on CREATE and UPDATE): `min`, `max`
  and `maxLimitRequestRatio` of `Container` items per container, of `Pod`
  items over the pod's sums (sidecar-aware, no overhead), and `min`/`max`
  of `PersistentVolumeClaim` items over `spec.resources.requests`.

The first LimitRange that refuses answers 403 Forbidden, its violations
joined as upstream's error aggregate (`[a, b]` for several); objects
already being deleted are left alone. Quantities compare in milli-units
rounded up, as upstream's `requestLimitEnforcedValues` does.
"""

from __future__ import annotations

from decimal import ROUND_CEILING
from typing import Any

from timoner.api import errors
from timoner.api.quantity import Quantity
from timoner.api.quota import ResourceList, parse_list, pod_limits, pod_requests

from ..store import Store
from ._attributes import CREATE, UPDATE, Attributes

__all__ = ["LIMIT_RANGER_ANNOTATION", "LIMIT_RANGES_PREFIX", "LimitRanger", "default_pod", "forbidden",
           "validate_claim", "validate_pod"]

Obj = dict[str, Any]

LIMIT_RANGES_PREFIX = "/registry/core/limitranges/"
LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"
_MAX_MILLI = (1 << 63) // 1000  # resource.MaxMilliValue: beyond it, values compare in whole units


def _scaled(q: Quantity | None, *, milli: bool) -> int:
    if q is None:
        return 0
    value = q.value * 1000 if milli else q.value
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _values(request: Quantity | None, limit: Quantity | None, enforced: Quantity) -> tuple[int, int, int]:
    """Request, limit and enforced value in milli-units when none overflows, else in units (rounded up)."""
    units = [_scaled(q, milli=False) for q in (request, limit, enforced)]
    milli = all(u <= _MAX_MILLI for u in units)
    r, li, e = (_scaled(q, milli=milli) for q in (request, limit, enforced))
    return r, li, e


def _min(kind: str, name: str, enforced: Quantity, requests: ResourceList, limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    r, li, e = _values(req, lim, enforced)
    if req is None:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if r < e:
        return f"minimum {name} usage per {kind} is {enforced}, but request is {req}"
    if lim is not None and li < e:
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
    return None


def _max(kind: str, name: str, enforced: Quantity, requests: ResourceList, limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    r, li, e = _values(req, lim, enforced)
    if lim is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if li > e:
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
    if req is not None and r > e:
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return None


def _max_request(kind: str, name: str, enforced: Quantity, requests: ResourceList) -> str | None:
    req = requests.get(name)
    r, _, e = _values(req, None, enforced)
    if req is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No request is specified"
    if r > e:
        return f"maximum {name} usage per {kind} is {enforced}, but request is {req}"
    return None


def _ratio(kind: str, name: str, enforced: Quantity, requests: ResourceList, limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    r, li, _ = _values(req, lim, enforced)
    if req is None or r == 0:
        return (f"{name} max limit to request ratio per {kind} is {enforced}, "
                "but no request is specified or request is 0")
    if lim is None or li == 0:
        return (f"{name} max limit to request ratio per {kind} is {enforced}, "
                "but no limit is specified or limit is 0")
    observed = li / r
    shown = observed
    ceiling = float(_scaled(enforced, milli=False))
    if _scaled(enforced, milli=False) <= _MAX_MILLI:
        observed *= 1000
        ceiling = float(_scaled(enforced, milli=True))
    if observed > ceiling:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {shown:f}"
    return None


def _check(kind: str, item: Obj, requests: ResourceList, limits: ResourceList, out: list[str]) -> None:
    for name, enforced in sorted(parse_list(item.get("min")).items()):
        if (msg := _min(kind, name, enforced, requests, limits)) is not None:
            out.append(msg)
    for name, enforced in sorted(parse_list(item.get("max")).items()):
        if (msg := _max(kind, name, enforced, requests, limits)) is not None:
            out.append(msg)
    for name, enforced in sorted(parse_list(item.get("maxLimitRequestRatio")).items()):
        if (msg := _ratio(kind, name, enforced, requests, limits)) is not None:
            out.append(msg)


def _items(limit_range: Obj) -> list[Obj]:
    return list((limit_range.get("spec") or {}).get("limits") or ())


def _containers(pod: Obj) -> list[Obj]:
    spec = pod.get("spec") or {}
    return [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]


def validate_pod(limit_range: Obj, pod: Obj) -> list[str]:
    """What in `pod` violates `limit_range` (upstream's PodValidateLimitFunc), in upstream's words."""
    out: list[str] = []
    for item in _items(limit_range):
        kind = item.get("type")
        if kind == "Container":
            for container in _containers(pod):
                resources = container.get("resources") or {}
                _check(kind, item, parse_list(resources.get("requests")), parse_list(resources.get("limits")), out)
        elif kind == "Pod":
            _check(kind, item, pod_requests(pod, overhead=False), pod_limits(pod, overhead=False), out)
    return out


def validate_claim(limit_range: Obj, claim: Obj) -> list[str]:
    """What in a PersistentVolumeClaim's requests violates `limit_range`'s PersistentVolumeClaim items."""
    out: list[str] = []
    requests = parse_list(((claim.get("spec") or {}).get("resources") or {}).get("requests"))
    for item in _items(limit_range):
        kind = item.get("type")
        if kind != "PersistentVolumeClaim":
            continue
        for name, enforced in sorted(parse_list(item.get("min")).items()):
            if (msg := _min(kind, name, enforced, requests, {})) is not None:
                out.append(msg)
        for name, enforced in sorted(parse_list(item.get("max")).items()):
            if (msg := _max_request(kind, name, enforced, requests)) is not None:
                out.append(msg)
    return out


def _merge(container: Obj, limits: dict[str, Any], requests: dict[str, Any], what: str, notes: list[str]) -> None:
    resources = container.setdefault("resources", {})
    set_requests, set_limits = [], []
    for name, value in limits.items():
        if name not in (resources.get("limits") or {}):
            resources.setdefault("limits", {})[name] = value
            set_limits.append(name)
    for name, value in requests.items():
        if name not in (resources.get("requests") or {}):
            resources.setdefault("requests", {})[name] = value
            set_requests.append(name)
    if set_requests:
        notes.append(f"{', '.join(sorted(set_requests))} request for {what} {container.get('name', '')}")
    if set_limits:
        notes.append(f"{', '.join(sorted(set_limits))} limit for {what} {container.get('name', '')}")


def default_pod(limit_range: Obj, pod: Obj) -> None:
    """Give `pod`'s containers the defaults of `limit_range`'s Container items (PodMutateLimitFunc)."""
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    for item in _items(limit_range):
        if item.get("type") == "Container":
            requests.update({k: str(v) for k, v in parse_list(item.get("defaultRequest")).items()})
            limits.update({k: str(v) for k, v in parse_list(item.get("default")).items()})
    notes: list[str] = []
    spec = pod.get("spec") or {}
    for container in spec.get("containers") or ():
        _merge(container, limits, requests, "container", notes)
    for container in spec.get("initContainers") or ():
        _merge(container, limits, requests, "init container", notes)
    if notes:
        meta = pod.setdefault("metadata", {})
        annotations = meta.get("annotations") or {}
        annotations[LIMIT_RANGER_ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)
        meta["annotations"] = annotations


def _aggregate(messages: list[str]) -> str:
    """utilerrors.NewAggregate's message: one as is, several (duplicates dropped) as `[a, b]`."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


class LimitRanger:
    """The LimitRanger admission plugin; see the module docstring."""

    name = "LimitRanger"

    def __init__(self, store: Store) -> None:
        self.store = store

    def handles(self, attrs: Attributes) -> bool:
        if attrs.subresource or attrs.info.group or attrs.obj is None or not attrs.namespace:
            return False
        if attrs.info.plural == "pods":
            return attrs.operation == CREATE
        return attrs.info.plural == "persistentvolumeclaims" and attrs.operation in (CREATE, UPDATE)

    def _deleting(self, attrs: Attributes) -> bool:
        return bool(((attrs.old or {}).get("metadata") or {}).get("deletionTimestamp"))

    async def _limit_ranges(self, namespace: str) -> list[Obj]:
        await self.store.sync()
        return [cached.obj for cached in self.store.cache.list(f"{LIMIT_RANGES_PREFIX}{namespace}/")]

    async def admit(self, attrs: Attributes) -> None:
        if attrs.info.plural != "pods" or self._deleting(attrs):
            return
        assert attrs.obj is not None and attrs.namespace
        for limit_range in await self._limit_ranges(attrs.namespace):
            default_pod(limit_range, attrs.obj)

    async def validate(self, attrs: Attributes) -> None:
        if self._deleting(attrs):
            return
        assert attrs.obj is not None and attrs.namespace
        check = validate_pod if attrs.info.plural == "pods" else validate_claim
        for limit_range in await self._limit_ranges(attrs.namespace):
            messages = check(limit_range, attrs.obj)
            if messages:
                raise forbidden(attrs, _aggregate(messages))


def forbidden(attrs: Attributes, message: str) -> errors.Forbidden:
    """admission.NewForbidden: `pods "p" is forbidden: <why>` (no name: `pods is forbidden: ...`)."""
    info = attrs.info
    name = attrs.name or ((attrs.obj or {}).get("metadata") or {}).get("name") or ""
    subject = f'{info.qualified} "{name}"' if name else info.qualified
    return errors.Forbidden(f"{subject} is forbidden: {message}", resource=info.plural, name=name, group=info.group)

