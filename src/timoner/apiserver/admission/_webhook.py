"""MutatingAdmissionWebhook and ValidatingAdmissionWebhook: admission by HTTPS callouts.

The configurations (`admissionregistration.k8s.io/v1`
Mutating/ValidatingWebhookConfiguration) are read from the watch cache on
every request, without waiting for it to catch up (upstream reads an
informer: a configuration takes effect once the cache has it, a
millisecond or so after its write), compiled once per stored revision, and
taken in upstream's order: configurations by name, webhooks in their order. A webhook is called
when a rule, the namespace selector and the object selector match (see
`_webhook_rules`); `matchConditions` are not evaluated (no CEL here). Under
`matchPolicy: Equivalent` a webhook whose rules name another version of
the resource (HPAs in autoscaling/v1 and v2, Events in core/v1 and
events.k8s.io/v1, a CRD's versions: whatever shares the storage) is called
with the object converted to that version, `requestKind`/`requestResource`
saying what the client sent; its patch is converted back.

Mutating webhooks run one after another in the mutating phase; a JSONPatch
answer is applied to the object, which is then pruned and defaulted again
as the request body was. With `reinvocationPolicy: IfNeeded` a webhook is
called once more when a later webhook changed the object. Validating
webhooks run in parallel in the validating phase; the first refusal (in
webhook order) wins. A refusal is upstream's
`admission webhook "<name>" denied the request: <message>` with the code of
the answer's `status.code` (400 below 400); a failed call is a 500
`failed calling webhook` under `failurePolicy: Fail` and skipped under
`Ignore`. A dry-run request refuses webhooks with `sideEffects` `Some` or
`Unknown` (400) and tells the others `dryRun: true`. Warnings go to the
request's `Warning` headers.

Where a webhook lives: `clientConfig.url` is dialled as given.
`clientConfig.service` is resolved through the watch cache: a ready
endpoint of the Service's EndpointSlices on the Service port's target port
(upstream's endpoint routing; it reaches host-network pods and endpoints
outside the cluster directly), else the Service's ClusterIP and port.
Either way the certificate must be valid for `<service>.<namespace>.svc`,
which is sent as SNI and Host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from timoner.api import errors
from timoner.api.defaults import apply_defaults
from timoner.api.patch import apply_json_patch
from timoner.api.registry import BUILTIN, ResourceInfo
from timoner.api.structural import decode as structural_decode

from .._http import current_request
from ..convert import from_storage, needs_conversion, to_storage
from ._attributes import CREATE, DELETE, UPDATE, Attributes
from ._webhook_client import CallError, Target, WebhookClient
from ._webhook_rules import Webhook, compile_webhooks, namespace_selected, object_selected, rules_match

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "MUTATING_PREFIX",
    "VALIDATING_PREFIX",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "resolve_service",
]

log = logging.getLogger("timoner.apiserver.admission")

MUTATING_PREFIX = "/registry/admissionregistration.k8s.io/mutatingwebhookconfigurations/"
VALIDATING_PREFIX = "/registry/admissionregistration.k8s.io/validatingwebhookconfigurations/"
_LOOPBACK_USER = {"username": "system:apiserver", "groups": ["system:authenticated", "system:masters"]}
_OPTIONS_KIND = {CREATE: "CreateOptions", UPDATE: "UpdateOptions", DELETE: "DeleteOptions"}
_SCALE_DEFINITION = "io.k8s.api.autoscaling.v1.Scale"
# Upstream never sends the admission configuration kinds to webhooks, so that a broken webhook can be removed.
_EXEMPT = frozenset({"mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                     "validatingadmissionpolicies", "validatingadmissionpolicybindings"})


def _view(attrs: Attributes, obj: dict | None, as_info: ResourceInfo | None = None) -> dict | None:
    """The object as the webhook is shown it: a `scale` request's autoscaling/v1 Scale, or the object
    converted to the equivalent version the webhook asked for (`as_info`)."""
    if obj is None:
        return None
    if attrs.subresource == "scale":
        # The scale view lives with its handler, which imports the store, which imports this: late import.
        from ..subresources import Subresources

        return Subresources._scale_of(obj, attrs.info)
    if as_info is None or as_info is attrs.info:
        return obj
    return _convert(obj, attrs.info, as_info)


def _convert(obj: dict, src: ResourceInfo, dst: ResourceInfo) -> dict:
    """`obj`, served as `src`, in the version `dst` serves (both share one storage)."""
    stored = to_storage(src, copy.deepcopy(obj)) if needs_conversion(src) else copy.deepcopy(obj)
    return from_storage(dst, stored) if needs_conversion(dst) else stored


@dataclass(frozen=True, slots=True)
class _Match:
    """A webhook that is called for a request, and the resource version it is called with."""

    hook: Webhook
    info: ResourceInfo  # the request's own, or (matchPolicy Equivalent) an equivalent version of it


def _set_replicas(attrs: Attributes, scale: dict) -> None:
    """Carry a mutated Scale's `spec.replicas` back into the object, as upstream's scale update does."""
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.InternalError(f"the mutated Scale has an invalid spec.replicas: {replicas!r}")
    assert attrs.obj is not None
    custom = attrs.info.custom
    if custom is not None:
        from ..subresources import _set_path

        _set_path(attrs.obj, (custom.scale or {}).get("specReplicasPath", ".spec.replicas"), replicas)
    else:
        attrs.obj.setdefault("spec", {})["replicas"] = replicas


def resolve_service(cache, ref: dict) -> tuple[str, int] | None:
    """Where a `clientConfig.service` is dialled: a ready endpoint of it, else its ClusterIP; None if unknown."""
    namespace, name = ref.get("namespace", ""), ref.get("name", "")
    port = int(ref.get("port") or 443)
    cached = cache.get(f"/registry/core/services/{namespace}/{name}")
    if cached is None:
        return None
    spec = cached.obj.get("spec") or {}
    svc_port = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if svc_port is None:
        return None
    port_name = svc_port.get("name") or ""
    for slice_ in cache.list(f"/registry/discovery.k8s.io/endpointslices/{namespace}/"):
        obj = slice_.obj
        if ((obj.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name") != name:
            continue
        target = next((p.get("port") for p in obj.get("ports") or [] if (p.get("name") or "") == port_name), None)
        if not target:
            continue
        for endpoint in obj.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                return address, int(target)
    cluster_ip = spec.get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        return cluster_ip, port
    return None


class _Dispatcher:
    """What both webhook plugins share: the configurations, the matching, the call."""

    def __init__(self, store: Store, prefix: str, client: WebhookClient,
                 resources: Callable[[], Iterable[ResourceInfo]] | None = None) -> None:
        self.store = store
        self.prefix = prefix
        self.client = client
        self.resources = resources or (lambda: BUILTIN)
        self._compiled: dict[str, tuple[int, list[Webhook]]] = {}

    def webhooks(self) -> list[Webhook]:
        """Every webhook configured now, configurations by name (the cache lists keys in order)."""
        out: list[Webhook] = []
        seen: set[str] = set()
        for cached in self.store.cache.list(self.prefix):
            seen.add(cached.key)
            entry = self._compiled.get(cached.key)
            if entry is None or entry[0] != cached.revision:
                entry = (cached.revision, compile_webhooks(cached.obj))
                self._compiled[cached.key] = entry
            out.extend(entry[1])
        for key in [k for k in self._compiled if k not in seen]:
            del self._compiled[key]
        return out

    def _namespace(self, attrs: Attributes) -> str:
        if not attrs.info.group and attrs.info.plural == "namespaces" and attrs.operation != CREATE:
            return attrs.name  # as upstream's request info: a Namespace's namespace is its name
        return attrs.namespace or ""

    def _namespace_labels(self, attrs: Attributes, namespace: str) -> dict:
        info = attrs.info
        if (not info.group and info.plural == "namespaces" and not attrs.subresource
                and attrs.operation in (CREATE, UPDATE) and attrs.obj is not None):
            return (attrs.obj.get("metadata") or {}).get("labels") or {}
        cached = self.store.cache.get(f"/registry/core/namespaces/{namespace}")
        return ((cached.obj.get("metadata") or {}).get("labels") or {}) if cached is not None else {}

    def _equivalents(self, info: ResourceInfo) -> list[ResourceInfo]:
        """The other versions (or groups) serving `info`'s objects: those sharing its storage."""
        return [r for r in self.resources() if r.storage_prefix == info.storage_prefix
                and (r.group, r.version, r.plural) != (info.group, info.version, info.plural)]

    def _rules_match(self, hook: Webhook, attrs: Attributes, namespace: str) -> ResourceInfo | None:
        """The resource the webhook is called with: the request's, else an equivalent one under Equivalent."""
        info = attrs.info
        if rules_match(hook, operation=attrs.operation, group=info.group, version=info.version,
                       resource=info.plural, subresource=attrs.subresource, namespace=namespace):
            return info
        if hook.match_policy != "Equivalent" or attrs.subresource == "scale":
            return None
        for other in self._equivalents(info):
            if rules_match(hook, operation=attrs.operation, group=other.group, version=other.version,
                           resource=other.plural, subresource=attrs.subresource, namespace=namespace):
                return other
        return None

    def matching(self, attrs: Attributes) -> list[_Match]:
        info = attrs.info
        if info.group == "admissionregistration.k8s.io" and info.plural in _EXEMPT:
            return []
        hooks = self.webhooks()
        if not hooks:
            return []
        namespace = self._namespace(attrs)
        is_namespace = not info.group and info.plural == "namespaces"
        labels: dict | None = None
        out = []
        for hook in hooks:
            as_info = self._rules_match(hook, attrs, namespace)
            if as_info is None:
                continue
            if not hook.namespace_selector_empty and (namespace or is_namespace):
                if labels is None:
                    labels = self._namespace_labels(attrs, namespace)
            if not namespace_selected(hook, namespace=namespace, is_namespace=is_namespace, namespace_labels=labels):
                continue
            if not object_selected(hook, _view(attrs, attrs.obj), _view(attrs, attrs.old)):
                continue
            out.append(_Match(hook, as_info))
        return out

    def review(self, hook: Webhook, attrs: Attributes, as_info: ResourceInfo | None = None) -> dict:
        """The AdmissionReview v1 request for `attrs`, as upstream's `CreateV1AdmissionReview` builds it.

        `as_info`: the equivalent resource the webhook matched (kind, resource and objects in its
        version); `requestKind` and `requestResource` stay the request's own.
        """

        def kind_and_resource(info: ResourceInfo) -> tuple[dict, dict]:
            kind = {"group": info.group, "version": info.version, "kind": info.kind}
            sub = info.subresource(attrs.subresource) if attrs.subresource else None
            if sub is not None and sub.kind:
                kind = {"group": sub.group or "", "version": sub.version or "", "kind": sub.kind}
            return kind, {"group": info.group, "version": info.version, "resource": info.plural}

        request_kind, request_resource = kind_and_resource(attrs.info)
        kind, resource = kind_and_resource(as_info or attrs.info)
        user = attrs.user
        user_info: dict[str, Any] = dict(_LOOPBACK_USER)
        if user is not None:
            user_info = {"username": user.name, "groups": list(user.groups)}
            if user.uid:
                user_info["uid"] = user.uid
            extra = getattr(user, "extra", ())
            if extra:
                user_info["extra"] = {key: list(values) for key, values in extra}
        options = {k: v for k, v in (attrs.options or {}).items() if k not in ("kind", "apiVersion")}
        request: dict[str, Any] = {
            "uid": str(uuid.uuid4()),
            "kind": kind,
            "resource": resource,
            "requestKind": request_kind,
            "requestResource": request_resource,
            "name": attrs.name,
            "namespace": self._namespace(attrs),
            "operation": attrs.operation,
            "userInfo": user_info,
            "object": _view(attrs, attrs.obj, as_info) if attrs.operation != DELETE else None,
            "oldObject": _view(attrs, attrs.old, as_info),
            "dryRun": attrs.dry_run,
        }
        if attrs.subresource:
            request["subResource"] = attrs.subresource
            request["requestSubResource"] = attrs.subresource
        if not request["namespace"]:
            del request["namespace"]
        if attrs.operation in _OPTIONS_KIND:
            request["options"] = {"kind": _OPTIONS_KIND[attrs.operation], "apiVersion": "meta.k8s.io/v1",
                                  **options}
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}

    def target(self, hook: Webhook) -> Target:
        config = hook.client_config
        query = f"?timeout={hook.timeout_seconds}s"
        if config.get("url"):
            url = config["url"]
            return Target(url + query, url + query)
        ref = config.get("service") or {}
        host = f"{ref.get('name', '')}.{ref.get('namespace', '')}.svc"
        port = int(ref.get("port") or 443)
        path = ref.get("path") or ""
        url = f"https://{host}:{port}{path}{query}"
        resolved = resolve_service(self.store.cache, ref)
        if resolved is None:
            raise CallError(f'failed to call webhook: Post "{url}": service "{ref.get("name", "")}" not found')
        address, target_port = resolved
        dial = f"[{address}]" if ":" in address else address
        return Target(url, f"https://{dial}:{target_port}{path}{query}", server_name=host,
                      host_header=f"{host}:{port}")

    async def call(self, match: _Match, attrs: Attributes) -> dict | None:
        """The webhook's response, or None when it failed and `failurePolicy` is Ignore."""
        hook = match.hook
        if attrs.dry_run and hook.side_effects not in ("None", "NoneOnDryRun"):
            raise errors.BadRequest(f'admission webhook "{hook.name}" does not support dry run')
        try:
            if "v1" not in hook.admission_review_versions:
                raise CallError(f"webhook does not accept v1 AdmissionReview, only "
                                f"{', '.join(hook.admission_review_versions)}")
            target = self.target(hook)
            return await self.client.call(target, self.review(hook, attrs, match.info),
                                          ca_bundle=hook.client_config.get("caBundle") or "",
                                          timeout=hook.timeout_seconds)
        except CallError as exc:
            message = f'failed calling webhook "{hook.name}": {exc}'
            if hook.failure_policy == "Ignore":
                log.warning("Failed calling webhook, failing open %s: %s", hook.name, exc)
                return None
            log.error("Failed calling webhook, failing closed %s: %s", hook.name, exc)
            raise errors.APIError(f"Internal error occurred: {message}", 500, "InternalError",
                                  causes=[errors.Cause("", message)]) from None

    @staticmethod
    def answer(hook: Webhook, response: dict) -> None:
        """Pass the webhook's warnings on; raise its refusal as upstream's `ToStatusErr`."""
        warnings = response.get("warnings") or []
        req = current_request.get()
        if req is not None and isinstance(warnings, list):
            req.warnings.extend(str(w) for w in warnings)
        if response.get("allowed") is True:
            return
        status = response.get("status") if isinstance(response.get("status"), dict) else {}
        denied = f'admission webhook "{hook.name}" denied the request'
        if status.get("message"):
            message = f"{denied}: {status['message']}"
        elif status.get("reason"):
            message = f"{denied}: {status['reason']}"
        else:
            message = f"{denied} without explanation"
        code = status.get("code") if isinstance(status.get("code"), int) else 0
        raise errors.APIError(message, max(code, 400), str(status.get("reason") or ""))


class MutatingAdmissionWebhook:
    """The MutatingAdmissionWebhook plugin (mutating phase only)."""

    name = "MutatingAdmissionWebhook"

    def __init__(self, store: Store, client: WebhookClient | None = None, *,
                 resources: Callable[[], Iterable[ResourceInfo]] | None = None) -> None:
        self._client = client or WebhookClient()
        self._dispatcher = _Dispatcher(store, MUTATING_PREFIX, self._client, resources)

    def handles(self, attrs: Attributes) -> bool:
        return True

    async def admit(self, attrs: Attributes) -> None:
        matches = self._dispatcher.matching(attrs)
        if not matches:
            return
        # Upstream's reinvocation, within the webhooks: an IfNeeded webhook is called once more when a
        # webhook after it changed the object.
        changed_at = -1
        for i, match in enumerate(matches):
            if await self._invoke(match, attrs):
                changed_at = i
        for i, match in enumerate(matches):
            if match.hook.reinvocation_policy == "IfNeeded" and changed_at > i:
                await self._invoke(match, attrs)

    async def _invoke(self, match: _Match, attrs: Attributes) -> bool:
        """Call one webhook and apply its patch; whether the object changed."""
        hook = match.hook
        response = await self._dispatcher.call(match, attrs)
        if response is None:
            return False
        self._dispatcher.answer(hook, response)
        patch = response.get("patch")
        if not patch or attrs.obj is None:
            return False
        if response.get("patchType") is None:
            raise errors.InternalError(f'failed calling webhook "{hook.name}": received invalid webhook '
                                       "response: webhook returned response.patch but not response.patchType")
        if response.get("patchType") != "JSONPatch":
            raise errors.InternalError(f'failed calling webhook "{hook.name}": received invalid webhook '
                                       f'response: unsupported patch type "{response.get("patchType")}"')
        try:
            ops = orjson.loads(base64.b64decode(patch, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise errors.InternalError(f'failed calling webhook "{hook.name}": received invalid webhook '
                                       f"response: {exc}") from None
        shown = _view(attrs, attrs.obj, match.info)
        try:
            patched = apply_json_patch(shown, ops)
        except errors.APIError as exc:
            raise errors.InternalError(exc.message) from None
        if not isinstance(patched, dict):
            raise errors.InternalError(f'admission webhook "{hook.name}" returned a patch that is not an object')
        if attrs.subresource == "scale":  # a Scale: only its spec.replicas goes back into the object
            try:
                structural_decode(patched, _SCALE_DEFINITION, kind="Scale", api_version="autoscaling/v1")
            except errors.APIError as exc:
                raise errors.InternalError(exc.message) from None
            before = copy.deepcopy(attrs.obj)
            _set_replicas(attrs, patched)
            return attrs.obj != before
        info = attrs.info
        if shown is not attrs.obj:  # an equivalent version: back into the request's
            patched["apiVersion"], patched["kind"] = match.info.group_version, match.info.kind
            patched = _convert(patched, match.info, info)
        patched["apiVersion"], patched["kind"] = info.group_version, info.kind
        if info.definition:
            try:
                structural_decode(patched, info.definition, kind=info.kind, api_version=info.group_version)
            except errors.APIError as exc:
                raise errors.InternalError(exc.message) from None
            apply_defaults(info.group, info.version, info.kind, patched)
        if patched == attrs.obj:
            return False
        attrs.obj.clear()
        attrs.obj.update(patched)
        return True

    async def validate(self, attrs: Attributes) -> None:
        return None

    async def close(self) -> None:
        await self._client.close()


class ValidatingAdmissionWebhook:
    """The ValidatingAdmissionWebhook plugin (validating phase only; webhooks called in parallel)."""

    name = "ValidatingAdmissionWebhook"

    def __init__(self, store: Store, client: WebhookClient | None = None, *,
                 resources: Callable[[], Iterable[ResourceInfo]] | None = None) -> None:
        self._client = client or WebhookClient()
        self._dispatcher = _Dispatcher(store, VALIDATING_PREFIX, self._client, resources)

    def handles(self, attrs: Attributes) -> bool:
        return True

    async def admit(self, attrs: Attributes) -> None:
        return None

    async def validate(self, attrs: Attributes) -> None:
        matches = self._dispatcher.matching(attrs)
        if not matches:
            return
        results = await asyncio.gather(*(self._one(match, attrs) for match in matches), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _one(self, match: _Match, attrs: Attributes) -> None:
        response = await self._dispatcher.call(match, attrs)
        if response is not None:
            self._dispatcher.answer(match.hook, response)

    async def close(self) -> None:
        await self._client.close()
