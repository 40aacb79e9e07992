"""The Website operator written with the official client's DynamicClient (discovery, no generated types).

    kubectl apply -f crd.yaml
    python operator_dynamic.py --namespace default

Like an informer, each of its two watches (Websites; Deployments by label) lists first, then watches
from the list's resourceVersion, and lists again when the watch ends or its version is gone (410). Both
feed a queue of Website names; one worker reconciles each: finalizer `example.timoner.dev/dynamic-cleanup`
on the Website, children created (or merge-patched when they drifted) with the Website as their
controller, the Website listed in `website-index`, its status merge-patched through the status
subresource. Under deletion the status says Deleting, the Website is unlisted and its finalizer taken
off; garbage collection removes the children.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from kubernetes import config, dynamic
from kubernetes.dynamic.exceptions import ConflictError, GoneError, NotFoundError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import website as W  # noqa: E402

FINALIZER = f"{W.GROUP}/dynamic-cleanup"
MERGE = "application/merge-patch+json"
log = logging.getLogger("website-operator")


class Operator:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.client = dynamic.DynamicClient(config.new_client_from_config())  # $KUBECONFIG; discovers the API
        self.websites = self.client.resources.get(api_version=W.API_VERSION, kind=W.KIND)
        self.kinds = {kind: self.client.resources.get(api_version=version, kind=kind) for version, kind in
                      (("v1", "ConfigMap"), ("apps/v1", "Deployment"), ("v1", "Service"))}
        self.queue = W.WorkQueue()

    def run(self) -> None:
        watches = [(self.websites, None, lambda obj: obj["metadata"]["name"]),
                   (self.kinds["Deployment"], W.LABEL, lambda obj: obj["metadata"]["labels"][W.LABEL])]
        for resource, selector, key in watches:
            threading.Thread(target=self.inform, args=(resource, selector, key), daemon=True).start()
        W.run_worker(self.queue, self.reconcile, log, is_conflict=lambda exc: isinstance(exc, ConflictError))

    def inform(self, resource, selector, key) -> None:
        while True:
            try:
                listed = resource.get(namespace=self.namespace, label_selector=selector).to_dict()
                for obj in listed["items"]:
                    self.queue.add(key(obj))
                for event in resource.watch(namespace=self.namespace, label_selector=selector, timeout=60,
                                            resource_version=listed["metadata"]["resourceVersion"]):
                    if event["type"] == "ERROR":
                        break
                    self.queue.add(key(event["raw_object"]))
            except GoneError:
                pass  # list again
            except Exception:
                log.exception("watching %s failed; listing again in a second", resource.kind)
                time.sleep(1)

    def reconcile(self, name: str) -> None:
        try:
            website = self.websites.get(name=name, namespace=self.namespace).to_dict()
        except NotFoundError:
            return
        meta = website["metadata"]
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            if FINALIZER in finalizers:
                website = self.patch_status(website, W.status(website, None, deleting=True))
                self.set_index_entry(name, None)
                log.info("website %s unlisted", name)
                self.websites.patch(name=name, namespace=self.namespace, content_type=MERGE, body={
                    "metadata": {"finalizers": [f for f in finalizers if f != FINALIZER],
                                 "resourceVersion": website["metadata"]["resourceVersion"]}})
            return
        if FINALIZER not in finalizers:
            website = self.websites.patch(name=name, namespace=self.namespace, content_type=MERGE, body={
                "metadata": {"finalizers": [*finalizers, FINALIZER],
                             "resourceVersion": meta["resourceVersion"]}}).to_dict()
        for obj in W.children(website):
            obj["metadata"]["ownerReferences"] = [W.owner_reference(website)]
            self.ensure(self.kinds[obj["kind"]], obj)
        self.set_index_entry(*W.index_entry(website))
        deployment = self.kinds["Deployment"].get(name=W.names(website)["deployment"],
                                                  namespace=self.namespace).to_dict()
        self.patch_status(website, W.status(website, (deployment.get("status") or {}).get("readyReplicas")))

    def ensure(self, resource, obj: dict) -> None:
        """Create `obj`, or merge-patch the existing one if it lacks something of `obj`."""
        try:
            resource.create(body=obj, namespace=self.namespace)
            return
        except ConflictError:
            pass
        existing = resource.get(name=obj["metadata"]["name"], namespace=self.namespace).to_dict()
        if W.drifted(existing, obj):
            resource.patch(body=obj, namespace=self.namespace, content_type=MERGE)
            log.info("%s %s updated", obj["kind"], obj["metadata"]["name"])

    def patch_status(self, website: dict, wanted: dict) -> dict:
        """The Website with status `wanted` (patched through the status subresource if it differs)."""
        if not W.status_changed(website, wanted):
            return website
        website = self.websites.status.patch(name=website["metadata"]["name"], namespace=self.namespace,
                                             body={"status": wanted}, content_type=MERGE).to_dict()
        log.info("website %s: %s, %s ready", website["metadata"]["name"], wanted["phase"],
                 wanted["readyReplicas"])
        return website

    def set_index_entry(self, key: str, value: str | None) -> None:
        configmaps = self.kinds["ConfigMap"]
        try:
            configmaps.patch(name=W.INDEX, namespace=self.namespace, body={"data": {key: value}},
                             content_type=MERGE)
            return
        except NotFoundError:
            if value is None:
                return
        configmaps.create(namespace=self.namespace, body=W.index_config_map(key, value))


if __name__ == "__main__":
    W.main(Operator, __doc__.splitlines()[0])
