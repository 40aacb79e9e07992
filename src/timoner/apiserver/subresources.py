"""Subresources that are not plain object verbs: scale, binding, eviction, finalize, and the reviews.

`status` is served by the generic handler with `subresource="status"`; the
ones here speak a different kind than their parent (autoscaling/v1 Scale,
v1 Binding, policy/v1 Eviction) or are never stored (the self-subject
reviews, answered allow-all until RBAC is enforced). Evictions, which ask
the pod's PodDisruptionBudget first, are `eviction.EvictionHandler`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timoner.api import errors
from timoner.api.registry import ResourceInfo
from timoner.api.selectors import label_selector_from_dict

from ._http import Request, Response, User, json_response
from .eviction import EvictionHandler
from .fieldmanager import field_manager, update_tracker
from .rest import apply_patch, dry_run, read_patch
from .serviceaccounts import ServiceAccountTokens, create_token
from .store import Store, now_rfc3339

__all__ = ["Subresources"]

_SCALE_DEFINITION = "io.k8s.api.autoscaling.v1.Scale"


def _success(code: int = 201, **details: Any) -> Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}
    if details:
        body["details"] = details
    return json_response(body, code)


class Subresources:
    """Handlers for scale, binding, eviction, finalize and the self-subject reviews."""

    def __init__(self, store: Store, resource: Callable[[str, str, str], ResourceInfo | None]) -> None:
        self.store = store
        self._resource = resource  # (group, version, plural) -> ResourceInfo | None
        self._evictions = EvictionHandler(store, resource)

    # -- scale ---------------------------------------------------------------------------

    @staticmethod
    def _scale_of(obj: dict, info: ResourceInfo | None = None) -> dict:
        meta = obj["metadata"]
        if info is not None and info.custom is not None:
            return _custom_scale(obj, info.custom.scale or {})
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        selector = spec.get("selector")
        if obj.get("kind") == "ReplicationController":
            selector_text = ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items()))
        else:
            selector_text = str(label_selector_from_dict(selector)) if selector is not None else ""
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": selector_text},
        }

    async def scale(self, req: Request, info: ResourceInfo, namespace: str | None, name: str) -> Response:
        if req.method == "GET":
            obj = await self.store.get(info, namespace, name)
            return json_response(self._scale_of(obj, info))
        if req.method == "PUT":
            body = await req.json_body()
            if not isinstance(body, dict):
                raise errors.BadRequest("the body of the request must be a Scale object")

            def new_scale(current: dict) -> dict:
                return body
        elif req.method == "PATCH":
            content_type, patch = await read_patch(req)

            def new_scale(current: dict) -> dict:
                return apply_patch(content_type, current, patch, definition=_SCALE_DEFINITION)
        else:
            raise errors.MethodNotAllowed()

        def mutate(obj: dict) -> dict:
            scale = new_scale(self._scale_of(obj, info))
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.Invalid("Scale", name, [errors.Cause(
                    "FieldValueInvalid", f"Invalid value: {replicas}: must be greater than or equal to 0",
                    "spec.replicas")], group="autoscaling")
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            if rv and rv != obj["metadata"]["resourceVersion"]:
                raise errors.Conflict(info.plural, name, group=info.group)
            if info.custom is not None:
                _set_path(obj, (info.custom.scale or {}).get("specReplicasPath", ".spec.replicas"), replicas)
            else:
                obj.setdefault("spec", {})["replicas"] = replicas
            obj["metadata"].pop("resourceVersion", None)
            return obj

        track = update_tracker(info, manager=field_manager(req, apply=False), subresource="scale")
        updated = await self.store.update(info, namespace, name, mutate, subresource="scale", dry_run=dry_run(req),
                                          track=track)
        return json_response(self._scale_of(updated, info))

    # -- binding ---------------------------------------------------------------------------

    async def binding(self, req: Request, info: ResourceInfo, namespace: str | None, name: str | None) -> Response:
        body = await req.json_body()
        if not isinstance(body, dict):
            raise errors.BadRequest("the body of the request must be a Binding object")
        pod_name = name or (body.get("metadata") or {}).get("name")
        target = body.get("target") or {}
        node = target.get("name")
        if not node:
            raise errors.Invalid("Binding", pod_name or "", [errors.Cause(
                "FieldValueRequired", "Required value", "target.name")])
        pod_info = self._resource("", "v1", "pods")

        def bind(pod: dict) -> dict:
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise errors.Conflict("pods", pod_name, message=(
                    f'Operation cannot be fulfilled on pods/binding "{pod_name}": pod {pod_name} is already '
                    f'assigned to node "{spec["nodeName"]}"'))
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.Conflict("pods", pod_name, message=(
                    f'Operation cannot be fulfilled on pods/binding "{pod_name}": pod {pod_name} is being '
                    "deleted, cannot be assigned to a host"))
            spec["nodeName"] = node
            conditions = [c for c in (pod.get("status") or {}).get("conditions") or []
                          if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                               "lastTransitionTime": now_rfc3339()})
            pod.setdefault("status", {})["conditions"] = conditions
            pod["metadata"].pop("resourceVersion", None)
            return pod

        await self.store.update(pod_info, namespace, pod_name, bind, subresource="binding",
                                dry_run=dry_run(req))
        return _success(201)

    # -- eviction ---------------------------------------------------------------------------

    async def eviction(self, req: Request, info: ResourceInfo, namespace: str | None, name: str) -> Response:
        return await self._evictions.evict(req, info, namespace, name)

    # -- serviceaccounts/token ---------------------------------------------------------------

    async def token(self, req: Request, namespace: str, name: str, tokens: ServiceAccountTokens | None) -> Response:
        """TokenRequest (see `serviceaccounts.create_token`); 405 on a server without a signing key."""
        if tokens is None:
            raise errors.MethodNotAllowed()
        return json_response(await create_token(self.store, tokens, self._resource, namespace, name,
                                                await req.json_body()), 201)

    # -- namespace finalize -------------------------------------------------------------------

    async def finalize(self, req: Request, info: ResourceInfo, name: str) -> Response:
        body = await req.json_body()
        if not isinstance(body, dict):
            raise errors.BadRequest("the body of the request must be a Namespace object")
        finalizers = (body.get("spec") or {}).get("finalizers") or []

        def apply(ns: dict) -> dict:
            ns.setdefault("spec", {})["finalizers"] = finalizers
            if not finalizers:
                del ns["spec"]["finalizers"]
            ns["metadata"].pop("resourceVersion", None)
            return ns

        updated = await self.store.update(info, None, name, apply, subresource="finalize", dry_run=dry_run(req))
        return json_response(updated)

    # -- reviews ---------------------------------------------------------------------------

    async def review(self, req: Request, info: ResourceInfo, user: User) -> Response:
        body = await req.json_body()
        if not isinstance(body, dict):
            raise errors.BadRequest(f"the body of the request must be a {info.kind} object")
        out = {"kind": info.kind, "apiVersion": info.group_version,
               "metadata": {"creationTimestamp": None, **(body.get("metadata") or {})},
               "spec": body.get("spec") or {}}
        if info.kind == "SelfSubjectAccessReview":
            spec = out["spec"]
            if not spec.get("resourceAttributes") and not spec.get("nonResourceAttributes"):
                raise errors.Invalid(info.kind, "", [errors.Cause(
                    "FieldValueRequired",
                    "Required value: exactly one of nonResourceAttributes or resourceAttributes must be "
                    "specified", "spec.resourceAttributes")], group=info.group)
            out["status"] = {"allowed": True, "reason": "timoner allows every authenticated request"}
        elif info.kind == "SelfSubjectRulesReview":
            out["status"] = {
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": False,
            }
        else:  # SelfSubjectReview
            out.pop("spec")
            out["status"] = {"userInfo": {"username": user.name, "groups": list(user.groups),
                                          **({"uid": user.uid} if user.uid else {}),
                                          **({"extra": {k: list(v) for k, v in user.extra}} if user.extra else {})}}
        return json_response(out, 201)


def _get_path(obj: dict, path: str | None) -> Any:
    node: Any = obj
    for part in (path or "").strip(".").split(".") if path else ():
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set_path(obj: dict, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    node = obj
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _custom_scale(obj: dict, scale: dict) -> dict:
    """A custom resource's autoscaling/v1 Scale, read through the CRD's scale subresource paths."""
    meta = obj["metadata"]
    replicas = _get_path(obj, scale.get("specReplicasPath"))
    status_replicas = _get_path(obj, scale.get("statusReplicasPath"))
    selector = _get_path(obj, scale.get("labelSelectorPath")) if scale.get("labelSelectorPath") else None
    status: dict[str, Any] = {"replicas": status_replicas if isinstance(status_replicas, int) else 0}
    if isinstance(selector, str) and selector:
        status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": replicas if isinstance(replicas, int) else 0},
        "status": status,
    }
