"""The Website operator written with kopf (the official `kubernetes` client for the children).

    kubectl apply -f crd.yaml -f peering.yaml
    kubectl create -f - <<<'{"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                            "metadata": {"name": "website"}}'
    kopf run --namespace default --peering website operator_kopf.py

kopf keeps its own bookkeeping on the Website: its finalizer (added because there is a delete handler),
the `kopf.zalando.org/last-handled-configuration` annotation (what the update handler diffs against),
core/v1 Events for each handler, and its presence in the KopfPeering object.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

import kopf
from kubernetes import client, config
from kubernetes.client.rest import ApiException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import website as W  # noqa: E402

MERGE = "application/merge-patch+json"
api: client.ApiClient | None = None


def plain(value):
    """kopf's read-only views (Body, Spec, Meta...) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    global api
    api = config.new_client_from_config()  # $KUBECONFIG, as kopf's own login does
    settings.posting.level = logging.INFO  # handler outcomes become core/v1 Events on the Website
    settings.persistence.finalizer = f"{W.GROUP}/kopf-cleanup"


@kopf.on.cleanup()
def close(**_):
    if api is not None:
        api.close()


def apply_child(obj: dict) -> None:
    """Create the child, or bring the existing one to it with a merge patch."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    create, patch, model = {
        "ConfigMap": (core.create_namespaced_config_map, core.patch_namespaced_config_map,
                      client.V1ConfigMap),
        "Deployment": (apps.create_namespaced_deployment, apps.patch_namespaced_deployment,
                       client.V1Deployment),
        "Service": (core.create_namespaced_service, core.patch_namespaced_service, client.V1Service),
    }[obj["kind"]]
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    try:
        create(namespace, model.from_dict(obj))
    except ApiException as exc:
        if exc.status != 409:
            raise
        patch(name, namespace, obj, _content_type=MERGE)


def set_index_entry(namespace: str, key: str, value: str | None) -> None:
    """Set (or, with None, remove) one key of the namespace's `website-index` ConfigMap."""
    core = client.CoreV1Api(api)
    try:
        core.patch_namespaced_config_map(W.INDEX, namespace, {"data": {key: value}}, _content_type=MERGE)
        return
    except ApiException as exc:
        if exc.status != 404:
            raise
    if value is None:
        return
    try:
        core.create_namespaced_config_map(namespace, client.V1ConfigMap.from_dict(W.index_config_map(key, value)))
    except ApiException as exc:
        if exc.status != 409:
            raise
        raise kopf.TemporaryError("the index appeared meanwhile", delay=1) from exc


def ready_replicas(namespace: str, name: str) -> int | None:
    try:
        deployment = client.AppsV1Api(api).read_namespaced_deployment_status(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return deployment.status.ready_replicas if deployment.status else None


@kopf.on.resume(W.GROUP, W.VERSION, W.PLURAL)
@kopf.on.create(W.GROUP, W.VERSION, W.PLURAL)
@kopf.on.update(W.GROUP, W.VERSION, W.PLURAL, field="spec")
def reconcile(body, patch, logger, **_):
    website = plain(body)
    objs = W.children(website)
    kopf.adopt(objs, owner=body)  # ownerReferences (controller), namespace, the Website's labels
    for obj in objs:
        apply_child(obj)
    set_index_entry(website["metadata"]["namespace"], *W.index_entry(website))
    ready = ready_replicas(website["metadata"]["namespace"], W.names(website)["deployment"])
    patch.status.update(W.status(website, ready))
    logger.info(f"reconciled generation {website['metadata'].get('generation')}: {ready or 0} ready")


@kopf.on.event("apps", "v1", "deployments", labels={W.LABEL: kopf.PRESENT})
def deployment_changed(type, body, namespace, labels, logger, **_):
    """A child Deployment's readiness goes to its Website's status."""
    if type == "DELETED":
        return
    custom = client.CustomObjectsApi(api)
    try:
        website = custom.get_namespaced_custom_object(W.GROUP, W.VERSION, namespace, W.PLURAL,
                                                      labels[W.LABEL])
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    if website["metadata"].get("deletionTimestamp"):
        return
    wanted = W.status(website, (body.get("status") or {}).get("readyReplicas"))
    if W.status_changed(website, wanted):
        custom.patch_namespaced_custom_object_status(W.GROUP, W.VERSION, namespace, W.PLURAL,
                                                     website["metadata"]["name"], {"status": wanted})
        logger.info(f"website {labels[W.LABEL]}: {wanted['phase']}, {wanted['readyReplicas']} ready")


@kopf.on.delete(W.GROUP, W.VERSION, W.PLURAL)
def cleanup(body, name, namespace, logger, **_):
    """Under kopf's finalizer: unlist the Website. Its children go by garbage collection afterwards."""
    key, _url = W.index_entry(plain(body))
    set_index_entry(namespace, key, None)
    kopf.info(body, reason="Unlisted", message=f"removed {key} from ConfigMap {W.INDEX}")
    logger.info(f"website {name} unlisted")
