"""The EndpointSlice controller: discovery.k8s.io/v1 EndpointSlices for every Service with a selector.

One sync of a Service, as upstream's `syncService` (1.32):

1. Gone: nothing to do; its slices carry a controller ownerReference to it
   and the garbage collector deletes them. ExternalName, or no selector:
   nothing (slices for those are someone else's).
2. Its slices are those labelled `kubernetes.io/service-name: <service>` and
   `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`
   (slices another manager labels are never touched), less those being
   deleted. If the cache does not yet show this controller's own last
   writes, the sync is retried rather than acting on old data
   (`SliceTracker`).
3. `_endpointslice_util.plan_slices` computes the writes from the pods the
   selector matches; creates, updates and deletes follow, each written
   slice annotated with `endpoints.kubernetes.io/last-change-trigger-time`.
   No new slice is made for a Service being deleted.
4. Anything that went wrong (a write refused, a pod on an unknown node) is
   a `FailedToUpdateEndpointSlices` warning on the Service, and the sync is
   retried with backoff.

Pod changes requeue the Services they concern; a change to one of our
slices by someone else (or its unexpected deletion) requeues its Service
after a second, as upstream's endpointSliceChangeMinSyncDelay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from timoner.api.errors import APIError, Forbidden, NotFound
from timoner.api.selectors import label_selector_from_dict
from timoner.client import Client, EventRecorder, Informer, resource_for

from ._endpoints_util import (
    LAST_CHANGE_TRIGGER_TIME,
    TriggerTimeTracker,
    format_trigger_time,
    pod_change_requests,
    service_selector,
)
from ._endpointslice_util import (
    CONTROLLER_NAME,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MAX_ENDPOINTS_PER_SLICE,
    SlicePlan,
    plan_slices,
)
from ._framework import Change, Controller, Request, Result, SharedInformers

__all__ = ["EndpointSliceReconciler", "SliceTracker", "SliceWriteError", "new_endpointslice_controller"]

log = logging.getLogger("timoner.controllers.endpointslice")

Obj = dict[str, Any]

SLICES = resource_for("discovery.k8s.io/v1", "EndpointSlice")
SERVICES = resource_for("v1", "Service")
PODS = resource_for("v1", "Pod")
NODES = resource_for("v1", "Node")

COMPONENT = "endpoint-slice-controller"
SLICE_CHANGE_MIN_SYNC_DELAY = 1.0
_DELETION_EXPECTED = -1


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _service_key(endpoint_slice: Obj) -> tuple[str, str]:
    meta = endpoint_slice.get("metadata") or {}
    return meta.get("namespace") or "", (meta.get("labels") or {}).get(LABEL_SERVICE_NAME, "")


@dataclass(slots=True)
class _Tracked:
    service_uid: str = ""
    versions: dict[str, int] = field(default_factory=dict)  # slice uid -> resourceVersion, or _DELETION_EXPECTED


class SliceTracker:
    """Upstream's EndpointSliceTracker: which versions of which slices this controller last wrote, per Service.

    Upstream compares `generation`s; the API server here does not count
    generations for EndpointSlices, so resourceVersions (increasing
    integers) stand in: the cache is stale for a Service when it shows one
    of our slices at an older version than we wrote, one we deleted, or
    lacks one we wrote; an event for a slice at a newer version than we
    wrote means someone else changed it.
    """

    def __init__(self) -> None:
        self._services: dict[tuple[str, str], _Tracked] = {}

    def _of(self, endpoint_slice: Obj) -> _Tracked | None:
        return self._services.get(_service_key(endpoint_slice))

    def has(self, endpoint_slice: Obj) -> bool:
        tracked = self._of(endpoint_slice)
        return tracked is not None and endpoint_slice["metadata"].get("uid") in tracked.versions

    def should_sync(self, endpoint_slice: Obj) -> bool:
        tracked = self._of(endpoint_slice)
        if tracked is None:
            return True
        version = tracked.versions.get(endpoint_slice["metadata"].get("uid", ""))
        return version is None or _rv(endpoint_slice) > version

    def stale(self, service: Obj, slices: list[Obj]) -> bool:
        """Whether `slices` (the cache's, including any being deleted) miss a write of ours."""
        meta = service["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        tracked = self._services.get(key)
        if tracked is None:
            return False
        if tracked.service_uid and meta.get("uid") and tracked.service_uid != meta.get("uid"):
            del self._services[key]  # writes for an earlier Service of this name do not hold this one back
            return False
        present = {s["metadata"].get("uid") for s in slices}
        # Slices already being deleted count as present, but are not compared (upstream's rule).
        seen = {s["metadata"].get("uid"): _rv(s) for s in slices if not s["metadata"].get("deletionTimestamp")}
        for uid, version in tracked.versions.items():
            if uid in seen and (version == _DELETION_EXPECTED or version > seen[uid]):
                return True
            if uid not in present and version != _DELETION_EXPECTED:
                return True
        return False

    def _entry(self, service: Obj) -> _Tracked:
        meta = service["metadata"]
        tracked = self._services.setdefault((meta.get("namespace") or "", meta["name"]), _Tracked())
        tracked.service_uid = meta.get("uid") or ""
        return tracked

    def update(self, service: Obj, endpoint_slice: Obj) -> None:
        self._entry(service).versions[endpoint_slice["metadata"]["uid"]] = _rv(endpoint_slice)

    def expect_deletion(self, service: Obj, endpoint_slice: Obj) -> None:
        self._entry(service).versions[endpoint_slice["metadata"]["uid"]] = _DELETION_EXPECTED

    def handle_deletion(self, endpoint_slice: Obj) -> bool:
        """Forget a deleted slice; False when this controller did not expect that deletion."""
        tracked = self._of(endpoint_slice)
        if tracked is None:
            return True
        version = tracked.versions.pop(endpoint_slice["metadata"].get("uid", ""), None)
        return version is None or version == _DELETION_EXPECTED

    def delete_service(self, namespace: str, name: str) -> None:
        self._services.pop((namespace, name), None)


def _aggregate(errors: list[str]) -> str:
    # utilerrors.NewAggregate's message: the error itself, or a bracketed list.
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


class EndpointSliceReconciler:
    """Keeps the EndpointSlices of Services with selectors; see the module docstring."""

    def __init__(self, client: Client, informers: SharedInformers, *,
                 max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE, recorder: EventRecorder | None = None,
                 controller_name: str = CONTROLLER_NAME) -> None:
        if not 1 <= max_endpoints_per_slice <= 1000:
            raise ValueError(f"max-endpoints-per-slice must be between 1 and 1000, not {max_endpoints_per_slice}")
        self.client = client
        self.services: Informer = informers.get(SERVICES)
        self.pods: Informer = informers.get(PODS)
        self.slices: Informer = informers.get(SLICES)
        self.nodes: Informer = informers.get(NODES)
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.controller_name = controller_name
        self.recorder = recorder or EventRecorder(client, component=COMPONENT)
        self.tracker = SliceTracker()
        self.trigger_times = TriggerTimeTracker()
        self.controller: Controller | None = None

    # -- informer changes to requests --------------------------------------------------------

    def on_pod(self, change: Change) -> list[Request]:
        return pod_change_requests(self.services.lister, change)

    def _managed(self, endpoint_slice: Obj | None) -> bool:
        labels = ((endpoint_slice or {}).get("metadata") or {}).get("labels") or {}
        return labels.get(LABEL_MANAGED_BY) == self.controller_name

    def _later(self, endpoint_slice: Obj) -> None:
        namespace, service = _service_key(endpoint_slice)
        if service and self.controller is not None:
            self.controller.enqueue(Request(namespace, service), after=SLICE_CHANGE_MIN_SYNC_DELAY)

    def on_slice(self, change: Change) -> list[Request]:
        """Our slices changed or deleted by someone else, or changing hands: their Service, a second later."""
        new, old = change.obj, change.old
        if change.type == "add":
            if self._managed(new) and self.tracker.should_sync(new):
                self._later(new)
        elif change.type == "update" and old is not None:
            if _service_key(new) != _service_key(old) or self._managed(new) != self._managed(old):
                # No longer ours to wait for: a slice another manager took is not missing from the cache.
                self.tracker.handle_deletion(old)
                self._later(new)
                self._later(old)
            elif self._managed(new) and self.tracker.should_sync(new):
                self._later(new)
        elif change.type == "delete":
            if self._managed(new) and self.tracker.has(new) and not self.tracker.handle_deletion(new):
                self._later(new)
        return []

    # -- one sync -----------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        namespace, name = request.namespace, request.name
        service = self.services.lister.get(namespace, name)
        if service is None:
            # The garbage collector deletes the slices (they are owned by the Service).
            self.trigger_times.delete_service(namespace, name)
            self.tracker.delete_service(namespace, name)
            return Result()
        service = {**service, "apiVersion": "v1", "kind": "Service"}
        selector = service_selector(service)
        if (service.get("spec") or {}).get("type") == "ExternalName" or selector is None:
            return Result()

        pods = self.pods.lister.list(namespace, label_selector_from_dict({"matchLabels": selector}))
        ours = label_selector_from_dict({"matchLabels": {LABEL_SERVICE_NAME: name,
                                                         LABEL_MANAGED_BY: self.controller_name}})
        listed = self.slices.lister.list(namespace, ours)
        if self.tracker.stale(service, listed):
            log.debug("endpointslice: the cache does not show our last writes for %s yet", request)
            return Result(requeue=True)
        slices = [s for s in listed if not s["metadata"].get("deletionTimestamp")]
        # Computed on every sync, written or not, so the tracker always holds what the last sync saw.
        trigger_time = self.trigger_times.compute(service, pods)
        plan = plan_slices(service, pods, slices, node_of=lambda node: self.nodes.lister.get("", node),
                           max_endpoints_per_slice=self.max_endpoints_per_slice,
                           controller_name=self.controller_name)
        errors = list(plan.errors)
        try:
            await self._apply(service, plan, trigger_time)
        except _NamespaceTerminating:
            return Result()
        except SliceWriteError as exc:
            errors.append(str(exc))
        if errors:
            message = _aggregate(errors)
            await self.recorder.event(service, "Warning", "FailedToUpdateEndpointSlices",
                                      f"Error updating Endpoint Slices for Service {namespace}/{name}: {message}")
            log.info("endpointslice: syncing %s: %s; retrying", request, message)
            return Result(requeue=True)
        return Result()

    async def _apply(self, service: Obj, plan: SlicePlan, trigger_time: float | None) -> None:
        """Upstream's finalize: creates (not for a Service being deleted), then updates, then deletes.

        The first refused write stops the rest and raises `SliceWriteError` with upstream's message.
        """
        meta = service["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if not meta.get("deletionTimestamp"):
            for endpoint_slice in plan.create:
                _annotate(endpoint_slice, trigger_time)
                try:
                    created = await self.client.create(SLICES, endpoint_slice, namespace=namespace)
                except APIError as exc:
                    if isinstance(exc, Forbidden) and any(c.reason == "NamespaceTerminating" for c in exc.causes):
                        raise _NamespaceTerminating from exc
                    raise SliceWriteError(f"failed to create EndpointSlice for Service {namespace}/{name}: {exc}"
                                          ) from exc
                self.tracker.update(service, created)
        for endpoint_slice in plan.update:
            _annotate(endpoint_slice, trigger_time)
            slice_name = endpoint_slice["metadata"]["name"]
            try:
                updated = await self.client.update(SLICES, {**endpoint_slice, "apiVersion": "discovery.k8s.io/v1",
                                                            "kind": "EndpointSlice"}, namespace=namespace)
            except APIError as exc:
                raise SliceWriteError(f"failed to update {slice_name} EndpointSlice for Service {namespace}/{name}: "
                                      f"{exc}") from exc
            self.tracker.update(service, updated)
        for endpoint_slice in plan.delete:
            slice_name = endpoint_slice["metadata"]["name"]
            try:
                await self.client.delete(SLICES, slice_name, namespace=namespace)
            except NotFound:
                continue
            except APIError as exc:
                raise SliceWriteError(f"failed to delete {slice_name} EndpointSlice for Service {namespace}/{name}: "
                                      f"{exc}") from exc
            self.tracker.expect_deletion(service, endpoint_slice)
        if not plan.empty:
            log.debug("endpointslice: %s/%s: %d created, %d updated, %d deleted", namespace, name,
                      len(plan.create), len(plan.update), len(plan.delete))


class SliceWriteError(Exception):
    """A create, update or delete of a slice the API server refused."""


class _NamespaceTerminating(Exception):
    """Creates keep failing in a namespace being deleted; the sync is dropped, as upstream does."""


def _annotate(endpoint_slice: Obj, trigger_time: float | None) -> None:
    meta = endpoint_slice.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    if trigger_time is not None:
        annotations[LAST_CHANGE_TRIGGER_TIME] = format_trigger_time(trigger_time)
    else:
        annotations.pop(LAST_CHANGE_TRIGGER_TIME, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)


def new_endpointslice_controller(client: Client, informers: SharedInformers, *, workers: int = 5,
                                 max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
                                 recorder: EventRecorder | None = None) -> Controller:
    """A Controller that keeps the EndpointSlices of every Service with a selector (`endpointslice`).

    `max_endpoints_per_slice` is kube-controller-manager's `--max-endpoints-per-slice` (1 to 1000, default
    100); five workers, as its `--concurrent-service-endpoint-syncs`.
    """
    reconciler = EndpointSliceReconciler(client, informers, max_endpoints_per_slice=max_endpoints_per_slice,
                                         recorder=recorder)
    controller = Controller(COMPONENT, reconciler, workers=workers)
    reconciler.controller = controller
    controller.for_(reconciler.services)
    controller.watches(reconciler.pods, reconciler.on_pod)
    controller.watches(reconciler.slices, reconciler.on_slice)
    return controller
