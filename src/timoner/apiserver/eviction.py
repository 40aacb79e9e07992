"""`pods/eviction`: a delete that asks the pod's PodDisruptionBudget first, as upstream's EvictionREST.

An Eviction (policy/v1, or v1beta1) names a pod and may carry
DeleteOptions. The handler, in upstream's order:

1. A pod whose disruption does not count (`Succeeded`, `Failed`,
   `Pending`, or already being deleted) is deleted at once; a Pending one
   on condition that it has not changed since it was read (a pod turning
   Running and Ready meanwhile would otherwise escape its budget).
   Conflicts are retried unless the caller set a resourceVersion
   precondition itself.
2. Otherwise the budgets of its namespace whose selector matches it (an
   empty selector matches nothing here) are found: more than one is a 500
   `This pod has more than one PodDisruptionBudget, ...`.
3. A pod that is not Ready is deleted without spending the budget when the
   budget's `unhealthyPodEvictionPolicy` is `AlwaysAllow`, or when the
   budget is currently met (`currentHealthy >= desiredHealthy > 0`); that
   delete is conditional on the pod's resourceVersion, and a conflict
   comes back as a 429.
4. Otherwise the budget is spent in one compare-and-swap of its status: a
   budget whose status is older than its spec is a 429 ("still being
   processed"), `disruptionsAllowed == 0` a 429 with the cause
   `DisruptionBudget` ("The disruption budget X needs N healthy pods and
   has M currently"); else `disruptionsAllowed` goes down by one and the
   pod is recorded in `disruptedPods` with the time, so the disruption
   controller does not count it healthy until it sees it deleted.
5. The pod gets the condition `DisruptionTarget` (reason
   `EvictionByEvictionAPI`) and is deleted with the Eviction's options.

A dry run (`?dryRun=All` or `deleteOptions.dryRun`) makes every check and
writes nothing. The answer is a `Status` Success with code 201.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable

from timoner.api import errors
from timoner.api.disruption import (
    DISRUPTION_BUDGET_CAUSE,
    DISRUPTION_TARGET,
    MAX_DISRUPTED_POD_SIZE,
    eviction_selects,
    is_pod_ready,
    update_disruption_allowed_condition,
)
from timoner.api.registry import ResourceInfo

from ._http import Request, Response, json_response
from .rest import dry_run
from .store import Store, now_rfc3339

__all__ = ["EvictionHandler"]

_CONFLICT_RETRIES = 20  # upstream's EvictionsRetry steps
_RETRY_PAUSE = 0.1
_TERMINAL = ("Succeeded", "Failed")
_VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def _still_processing(pdb_name: str) -> errors.TooManyRequests:
    return errors.TooManyRequests(_VIOLATION, retry_after=10, causes=[errors.Cause(
        DISRUPTION_BUDGET_CAUSE, f"The disruption budget {pdb_name} is still being processed by the server.")])


def _can_ignore_budget(pod: dict) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in (*_TERMINAL, "Pending") or bool(pod["metadata"].get("deletionTimestamp"))


def _enforce_resource_version(pod: dict) -> bool:
    """Whether deleting the pod must be conditional on the version read: not for finished or deleting pods."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in _TERMINAL and not pod["metadata"].get("deletionTimestamp")


def _with_resource_version(options: dict, resource_version: str) -> dict:
    out = copy.deepcopy(options)
    out.setdefault("preconditions", {})["resourceVersion"] = resource_version
    return out


def _precondition_rv(options: dict) -> str | None:
    return (options.get("preconditions") or {}).get("resourceVersion") or None


def _eviction_dry_run(req: Request, options: dict) -> bool:
    """Upstream's propagateDryRun: the query's and the DeleteOptions' dryRun must agree when both are set."""
    query = req.args("dryRun")
    dry = dry_run(req)  # validates the query's values
    body = options.get("dryRun") or []
    if not isinstance(body, list) or any(v != "All" for v in body):
        raise errors.BadRequest(f'Invalid dry run value: {body!r}; supported value: "All"')
    if query and body and list(query) != list(body):
        raise errors.BadRequest(f"Non-matching dry-run options in request and content: {list(query)} and {body}")
    return dry or bool(body)


class EvictionHandler:
    """Serves `POST pods/<name>/eviction`; see the module docstring."""

    def __init__(self, store: Store, resource: Callable[[str, str, str], ResourceInfo | None]) -> None:
        self.store = store
        self._resource = resource

    async def evict(self, req: Request, info: ResourceInfo, namespace: str | None, name: str) -> Response:
        body = await req.json_body()
        if not isinstance(body, dict):
            raise errors.BadRequest("the body of the request must be an Eviction object")
        meta = body.get("metadata") or {}
        if meta.get("name") != name:
            raise errors.BadRequest("name in URL does not match name in Eviction object")
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on "
                                    "the request")
        options = body.get("deleteOptions")
        options = copy.deepcopy(options) if isinstance(options, dict) else {}
        dry = _eviction_dry_run(req, options)
        options.pop("dryRun", None)
        caller_rv = _precondition_rv(options)

        # 1. Pods whose disruption does not count: delete them, no budget asked.
        for attempt in range(_CONFLICT_RETRIES):
            pod = await self.store.get(info, namespace, name)
            if not _can_ignore_budget(pod):
                break
            delete_options = options
            if _enforce_resource_version(pod) and caller_rv is None:
                delete_options = _with_resource_version(options, pod["metadata"]["resourceVersion"])
            try:
                await self._mark_and_delete(info, namespace, name, delete_options, dry)
            except errors.Conflict:
                if caller_rv is not None or attempt == _CONFLICT_RETRIES - 1:
                    raise
                await asyncio.sleep(_RETRY_PAUSE)
                continue
            return _success()

        # 2. Its budget, if any.
        pdb_info = self._resource("policy", "v1", "poddisruptionbudgets")
        assert pdb_info is not None
        pdbs = [c.obj for c in self.store.cache.list(f"{pdb_info.storage_prefix}{namespace}/")
                if eviction_selects(c.obj, pod)]
        if len(pdbs) > 1:
            raise errors.APIError("This pod has more than one PodDisruptionBudget, which the eviction subresource "
                                  "does not support.", 500, "")
        conditional = False
        pdb_name = ""
        if pdbs:
            pdb = pdbs[0]
            pdb_name = pdb["metadata"]["name"]
            status = pdb.get("status") or {}
            policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy")
            desired = int(status.get("desiredHealthy") or 0)
            if not is_pod_ready(pod) and (
                    policy == "AlwaysAllow" or (int(status.get("currentHealthy") or 0) >= desired and desired > 0)):
                # 3. An unready pod the budget can spare: no disruption is spent on it.
                conditional = True
            else:
                # 4. Spend one disruption.
                await self._spend(pdb_info, namespace, pdb_name, name, dry)

        # 5. The delete.
        delete_options = options
        if conditional:
            delete_options = _with_resource_version(options, pod["metadata"]["resourceVersion"])
        try:
            await self._mark_and_delete(info, namespace, name, delete_options, dry)
        except errors.Conflict:
            if conditional and caller_rv is None:
                raise _still_processing(pdb_name) from None  # the pod changed (became Ready?): try again
            raise
        return _success()

    async def _spend(self, pdb_info: ResourceInfo, namespace: str | None, pdb_name: str, pod_name: str,
                     dry: bool) -> None:
        """Check and decrement the budget's `disruptionsAllowed` in one compare-and-swap (retried on races)."""
        now = now_rfc3339()

        def spend(pdb: dict) -> dict:
            status = pdb.setdefault("status", {})
            if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 0):
                raise _still_processing(pdb_name)
            allowed = int(status.get("disruptionsAllowed") or 0)
            forbidden = f'poddisruptionbudget.policy "{pdb_name}" is forbidden: '
            if allowed < 0:
                raise errors.Forbidden(forbidden + "pdb disruptions allowed is negative",
                                       resource="poddisruptionbudget", name=pdb_name, group="policy")
            if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_POD_SIZE:
                raise errors.Forbidden(forbidden + "DisruptedPods map too big - too many evictions not confirmed by "
                                       "PDB controller", resource="poddisruptionbudget", name=pdb_name,
                                       group="policy")
            if allowed == 0:
                raise errors.TooManyRequests(_VIOLATION, retry_after=None, causes=[errors.Cause(
                    DISRUPTION_BUDGET_CAUSE,
                    f"The disruption budget {pdb_name} needs {int(status.get('desiredHealthy') or 0)} healthy pods "
                    f"and has {int(status.get('currentHealthy') or 0)} currently")])
            status["disruptionsAllowed"] = allowed - 1
            if allowed == 1:
                update_disruption_allowed_condition(status, now)
            status.setdefault("disruptedPods", {})[pod_name] = now
            pdb["metadata"].pop("resourceVersion", None)  # the store retries the swap on the newest budget
            return pdb

        if dry:
            spend(copy.deepcopy(await self.store.get(pdb_info, namespace, pdb_name)))
            return
        await self.store.update(pdb_info, namespace, pdb_name, spend, subresource="status")

    async def _mark_and_delete(self, info: ResourceInfo, namespace: str | None, name: str, options: dict,
                               dry: bool) -> None:
        """Set the DisruptionTarget condition (honouring the preconditions), then delete with `options`."""
        if not dry:
            preconditions = options.get("preconditions") or {}

            def mark(pod: dict) -> dict:
                meta = pod["metadata"]
                if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
                    raise errors.Conflict("pods", name, f"Precondition failed: UID in precondition: "
                                          f"{preconditions['uid']}, UID in object meta: {meta.get('uid')}")
                rv = preconditions.get("resourceVersion")
                if rv and rv != meta.get("resourceVersion"):
                    raise errors.Conflict("pods", name, f"Precondition failed: ResourceVersion in precondition: "
                                          f"{rv}, ResourceVersion in object meta: {meta.get('resourceVersion')}")
                _set_disruption_target(pod.setdefault("status", {}))
                meta.pop("resourceVersion", None)
                return pod

            updated = await self.store.update(info, namespace, name, mark, subresource="status")
            if preconditions.get("resourceVersion"):
                # Our own write moved the pod on; the delete must be conditional on that version.
                options = _with_resource_version(options, updated["metadata"]["resourceVersion"])
        await self.store.delete(info, namespace, name, options=options, dry_run=dry)


def _set_disruption_target(status: dict) -> None:
    """Upstream's UpdatePodCondition with DisruptionTarget=True: the transition time moves only with the status."""
    new = {"type": DISRUPTION_TARGET, "status": "True", "lastProbeTime": None,
           "lastTransitionTime": now_rfc3339(), "reason": "EvictionByEvictionAPI",
           "message": "Eviction API: evicting"}
    conditions = status.setdefault("conditions", [])
    for i, old in enumerate(conditions):
        if old.get("type") == DISRUPTION_TARGET:
            if old.get("status") == new["status"]:
                new["lastTransitionTime"] = old.get("lastTransitionTime")
            conditions[i] = new
            return
    conditions.append(new)


def _success() -> Response:
    return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
                         201)
