"""The Website operator written with lightkube: a generic resource, server-side apply, two watches.

    kubectl apply -f crd.yaml
    python operator_lightkube.py --namespace default

A watch on Websites and one on their Deployments (by label) feed a queue of Website names; one worker
reconciles each: it keeps the finalizer `example.timoner.dev/lightkube-cleanup` on the Website, applies
the children (server-side apply, field manager `website-operator-lightkube`, owned by the Website), lists
the Website in `website-index` and merge-patches its status. Under deletion it unlists the Website, then
takes its finalizer off; garbage collection removes the children.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from lightkube import ApiError, Client, operators
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Service
from lightkube.types import OnErrorAction, OnErrorResult, PatchType

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import website as W  # noqa: E402

Website = create_namespaced_resource(W.GROUP, W.VERSION, W.KIND, W.PLURAL)
FINALIZER = f"{W.GROUP}/lightkube-cleanup"
MANAGER = "website-operator-lightkube"
KINDS = {"ConfigMap": ConfigMap, "Deployment": Deployment, "Service": Service}
log = logging.getLogger("website-operator")


def retry_later(exc: Exception, count: int) -> OnErrorResult:
    """A watch that fails is opened again (from its last resourceVersion, or afresh after a 410)."""
    log.warning("watch failed (%s), again in a second", exc)
    return OnErrorResult(OnErrorAction.RETRY, sleep=1.0)


class Operator:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.client = Client(namespace=namespace, field_manager=MANAGER)  # $KUBECONFIG
        self.queue = W.WorkQueue()

    def run(self) -> None:
        watches = [(Website, None, lambda obj: obj.metadata.name),
                   (Deployment, {W.LABEL: operators.exists()}, lambda obj: obj.metadata.labels[W.LABEL])]
        for res, labels, key in watches:
            threading.Thread(target=self.watch, args=(res, labels, key), daemon=True).start()
        W.run_worker(self.queue, self.reconcile, log,
                     is_conflict=lambda exc: isinstance(exc, ApiError) and exc.status.code == 409)

    def watch(self, res, labels, key) -> None:
        # Without a resourceVersion the first events are the objects that exist (ADDED), then changes.
        events = self.client.watch(res, namespace=self.namespace, labels=labels, on_error=retry_later)
        for _type, obj in events:
            self.queue.add(key(obj))

    def reconcile(self, name: str) -> None:
        try:
            website = self.client.get(Website, name).to_dict()
        except ApiError as exc:
            if exc.status.code == 404:
                return
            raise
        meta = website["metadata"]
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            if FINALIZER in finalizers:
                self.set_index_entry(name, None)
                log.info("website %s unlisted", name)
                # A JSON patch that tests the list first: no other finalizer is lost to a race.
                self.client.patch(Website, name, [
                    {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                    {"op": "replace", "path": "/metadata/finalizers",
                     "value": [f for f in finalizers if f != FINALIZER]}], patch_type=PatchType.JSON)
            return
        if FINALIZER not in finalizers:
            # resourceVersion in a merge patch is a precondition: a 409 if the Website changed meanwhile.
            website = self.client.patch(Website, name, {"metadata": {
                "finalizers": [*finalizers, FINALIZER], "resourceVersion": meta["resourceVersion"]}},
                patch_type=PatchType.MERGE).to_dict()
        for obj in W.children(website):
            obj["metadata"]["ownerReferences"] = [W.owner_reference(website)]
            self.client.apply(KINDS[obj["kind"]].from_dict(obj), force=True)
        self.set_index_entry(*W.index_entry(website))
        deployment = self.client.get(Deployment, W.names(website)["deployment"])
        wanted = W.status(website, deployment.status.readyReplicas if deployment.status else None)
        if W.status_changed(website, wanted):
            self.client.patch(Website.Status, name, {"status": wanted}, patch_type=PatchType.MERGE)
            log.info("website %s: %s, %s ready", name, wanted["phase"], wanted["readyReplicas"])

    def set_index_entry(self, key: str, value: str | None) -> None:
        try:
            self.client.patch(ConfigMap, W.INDEX, {"data": {key: value}}, patch_type=PatchType.MERGE)
            return
        except ApiError as exc:
            if exc.status.code != 404:
                raise
        if value is None:
            return
        self.client.create(ConfigMap.from_dict(W.index_config_map(key, value)))


if __name__ == "__main__":
    W.main(Operator, __doc__.splitlines()[0], quiet=("httpx",))  # httpx logs one line per request
