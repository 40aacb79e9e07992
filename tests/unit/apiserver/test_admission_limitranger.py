"""The LimitRanger admission plugin, driven with hand-made Attributes over a real Store (memory backend)."""

from __future__ import annotations

import pytest

from timoner.api import errors
from timoner.api.defaults import apply_defaults
from timoner.api.registry import builtin_index
from timoner.apiserver.admission import CREATE, UPDATE, Attributes
from timoner.apiserver.admission._limitranger import LimitRanger, default_pod, validate_claim, validate_pod
from timoner.apiserver.store import Store

INDEX = builtin_index()
PODS = INDEX[("", "v1", "pods")]
CLAIMS = INDEX[("", "v1", "persistentvolumeclaims")]
LIMIT_RANGES = INDEX[("", "v1", "limitranges")]


def limit_range(*items: dict, name: str = "lr") -> dict:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name}, "spec": {"limits": list(items)}}


def container(name: str = "app", *, req: dict | None = None, lim: dict | None = None, **extra) -> dict:
    resources: dict = {}
    if req:
        resources["requests"] = req
    if lim:
        resources["limits"] = lim
    return {"name": name, "image": "busybox", "resources": resources, **extra}


def pod(*containers: dict, init: tuple[dict, ...] = (), name: str = "p") -> dict:
    spec: dict = {"containers": list(containers)}
    if init:
        spec["initContainers"] = list(init)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def attrs(obj: dict, *, operation: str = CREATE, info=PODS, old: dict | None = None, subresource: str = "") -> Attributes:
    return Attributes(operation, info, "ns", obj["metadata"].get("name", ""), obj, old, subresource=subresource)


async def add(store: Store, lr: dict) -> None:
    apply_defaults("", "v1", "LimitRange", lr)  # as decoding a request would: default <- max, request <- default
    await store.create(LIMIT_RANGES, "ns", lr, skip_namespace_check=True)


def test_defaults_fill_only_what_containers_lack_and_annotate_the_pod():
    lr = limit_range({"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
                      "defaultRequest": {"cpu": "100m", "memory": "128Mi"}})
    p = pod(container("app", req={"cpu": "200m"}), container("side", lim={"memory": "1Gi"}),
            init=(container("init"),))
    default_pod(lr, p)
    app, side = p["spec"]["containers"]
    assert app["resources"] == {"requests": {"cpu": "200m", "memory": "128Mi"},
                                "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert side["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                 "limits": {"cpu": "500m", "memory": "1Gi"}}
    assert p["spec"]["initContainers"][0]["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}
    assert p["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: memory request for container app; cpu, memory limit for container app; "
        "cpu, memory request for container side; cpu limit for container side; "
        "cpu, memory request for init container init; cpu, memory limit for init container init")


def test_no_defaults_no_annotation():
    p = pod(container(req={"cpu": "1"}, lim={"cpu": "1"}))
    default_pod(limit_range({"type": "Container", "default": {"cpu": "2"}}), p)
    assert "annotations" not in p["metadata"]
    default_pod(limit_range({"type": "Pod", "max": {"cpu": "2"}}), p)
    assert "annotations" not in p["metadata"]


@pytest.mark.parametrize(("item", "resources", "messages"), [
    ({"type": "Container", "max": {"cpu": "1"}}, {"lim": {"cpu": "2"}},
     ["maximum cpu usage per Container is 1, but limit is 2"]),
    ({"type": "Container", "max": {"cpu": "1"}}, {"req": {"cpu": "500m"}},
     ["maximum cpu usage per Container is 1.  No limit is specified"]),
    ({"type": "Container", "max": {"memory": "1Gi"}}, {"req": {"memory": "2Gi"}, "lim": {"memory": "1Gi"}},
     ["maximum memory usage per Container is 1Gi, but request is 2Gi"]),
    ({"type": "Container", "min": {"cpu": "100m"}}, {},
     ["minimum cpu usage per Container is 100m.  No request is specified"]),
    ({"type": "Container", "min": {"cpu": "100m"}}, {"req": {"cpu": "50m"}},
     ["minimum cpu usage per Container is 100m, but request is 50m"]),
    ({"type": "Container", "min": {"cpu": "100m"}}, {"req": {"cpu": "100m"}, "lim": {"cpu": "10m"}},
     ["minimum cpu usage per Container is 100m, but limit is 10m"]),
    ({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}, {"req": {"cpu": "100m"}, "lim": {"cpu": "300m"}},
     ["cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000"]),
    ({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}, {"lim": {"cpu": "300m"}},
     ["cpu max limit to request ratio per Container is 2, but no request is specified or request is 0"]),
    ({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}, {"req": {"cpu": "100m"}},
     ["cpu max limit to request ratio per Container is 2, but no limit is specified or limit is 0"]),
    ({"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"}}, {"req": {"cpu": "1"}, "lim": {"cpu": "1"}},
     []),
    ({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}, {"req": {"cpu": "100m"}, "lim": {"cpu": "200m"}},
     []),
])
def test_container_constraints(item, resources, messages):
    assert validate_pod(limit_range(item), pod(container(**resources))) == messages


def test_pod_constraints_use_the_sum_over_containers():
    lr = limit_range({"type": "Pod", "max": {"cpu": "1"}})
    p = pod(container("a", req={"cpu": "600m"}, lim={"cpu": "600m"}),
            container("b", req={"cpu": "600m"}, lim={"cpu": "600m"}))
    assert validate_pod(lr, p) == ["maximum cpu usage per Pod is 1, but limit is 1200m"]


def test_claim_constraints_look_at_requests_only():
    lr = limit_range({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}})
    claim = {"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "5Gi"}}}}
    assert validate_claim(lr, claim) == ["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"]
    claim["spec"]["resources"]["requests"]["storage"] = "500Mi"
    assert validate_claim(lr, claim) == [
        "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
    claim["spec"]["resources"]["requests"]["storage"] = "1Gi"
    assert validate_claim(lr, claim) == []


async def test_plugin_defaults_on_create_then_refuses_with_upstream_text(store: Store):
    await add(store, limit_range({"type": "Container", "max": {"cpu": "1"}, "default": {"cpu": "500m"}}))
    plugin = LimitRanger(store)
    ok = attrs(pod(container()))
    assert plugin.handles(ok)
    await plugin.admit(ok)
    assert ok.obj["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m"}, "requests": {"cpu": "500m"}}
    await plugin.validate(ok)

    bad = attrs(pod(container(req={"cpu": "1"}, lim={"cpu": "2"})))
    await plugin.admit(bad)
    with pytest.raises(errors.APIError) as refused:
        await plugin.validate(bad)
    assert refused.value.code == 403 and refused.value.reason == "Forbidden"
    assert refused.value.message == 'pods "p" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
    assert refused.value.status()["details"] == {"name": "p", "kind": "pods"}


async def test_several_violations_are_aggregated(store: Store):
    await add(store, limit_range({"type": "Container", "max": {"cpu": "1", "memory": "1Gi"}}))
    bad = attrs(pod(container(lim={"cpu": "2", "memory": "2Gi"})))
    with pytest.raises(errors.APIError) as refused:
        await LimitRanger(store).validate(bad)
    assert refused.value.message == ('pods "p" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, '
                                     'maximum memory usage per Container is 1Gi, but limit is 2Gi]')


async def test_which_requests_the_plugin_handles(store: Store):
    plugin = LimitRanger(store)
    p = pod(container())
    claim = {"metadata": {"name": "c"}, "spec": {}}
    assert plugin.handles(attrs(p))
    assert not plugin.handles(attrs(p, operation=UPDATE, old=p))  # containers cannot change after create
    assert not plugin.handles(attrs(p, subresource="status"))
    assert plugin.handles(attrs(claim, info=CLAIMS))
    assert plugin.handles(attrs(claim, info=CLAIMS, operation=UPDATE, old=claim))
    assert not plugin.handles(attrs({"metadata": {"name": "cm"}}, info=INDEX[("", "v1", "configmaps")]))


async def test_claims_being_deleted_are_left_alone(store: Store):
    await add(store, limit_range({"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}))
    claim = {"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "5Gi"}}}}
    old = {"metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}}
    plugin = LimitRanger(store)
    await plugin.validate(attrs(claim, info=CLAIMS, operation=UPDATE, old=old))
    with pytest.raises(errors.APIError, match='persistentvolumeclaims "c" is forbidden: maximum storage usage'):
        await plugin.validate(attrs(claim, info=CLAIMS))


async def test_other_namespaces_limit_ranges_do_not_apply(store: Store):
    await store.create(LIMIT_RANGES, "other", limit_range({"type": "Container", "max": {"cpu": "1"}}),
                       skip_namespace_check=True)
    await LimitRanger(store).validate(attrs(pod(container(lim={"cpu": "5"}))))
