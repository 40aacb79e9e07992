"""The official `kubernetes` Python client against Timoner: CRUD, watch, resuming a watch."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from timoner.testing import wait_until


@pytest.fixture
def api(shared_server):
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(shared_server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api_client:
        yield api_client


@pytest.fixture
def namespace(api):
    core = client.CoreV1Api(api)
    name = f"py-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # As upstream's e2e framework: ready once the namespace has its kube-root-ca.crt ConfigMap.
    wait_until(lambda: "kube-root-ca.crt" in [cm.metadata.name for cm in core.list_namespaced_config_map(name).items],
               timeout=10, what=f"kube-root-ca.crt in {name}", interval=0.05)
    return name


def test_crud_configmap_and_deployment(api, namespace):
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    created = core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cfg", labels={"a": "b"}), data={"k": "v"}))
    assert created.metadata.uid and created.metadata.resource_version
    got = core.read_namespaced_config_map("cfg", namespace)
    assert got.data == {"k": "v"}
    got.data["k"] = "w"
    replaced = core.replace_namespaced_config_map("cfg", namespace, got)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    patched = core.patch_namespaced_config_map("cfg", namespace, {"data": {"x": "y"}})
    assert patched.data == {"k": "w", "x": "y"}
    listed = core.list_namespaced_config_map(namespace, label_selector="a=b")
    assert [c.metadata.name for c in listed.items] == ["cfg"]

    dep = apps.create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    assert dep.spec.replicas == 1
    assert dep.spec.template.spec.containers[0].image_pull_policy == "Always"
    scale = apps.read_namespaced_deployment_scale("d", namespace)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=d"
    apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("d", namespace).spec.replicas == 3

    core.delete_namespaced_config_map("cfg", namespace)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("cfg", namespace)
    assert err.value.status == 404


def test_watch_and_resume_from_resource_version(api, namespace):
    core = client.CoreV1Api(api)
    first = core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="w1")))
    start_rv = first.metadata.resource_version
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w2")))
    core.patch_namespaced_config_map("w1", namespace, {"data": {"z": "1"}})
    core.delete_namespaced_config_map("w2", namespace)
    seen = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, namespace, resource_version=start_rv,
                          timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2")]

    # A fresh watch without a resourceVersion starts with the current objects.
    initial = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, namespace, timeout_seconds=5):
        initial.append((event["type"], event["object"].metadata.name))
        if ("ADDED", "w1") in initial:
            w.stop()
    assert ("ADDED", "w1") in initial and all(t == "ADDED" for t, _ in initial)
