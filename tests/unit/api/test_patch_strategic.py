"""Strategic merge patch against the real v1.32 schemas, with the patches kubectl actually sends."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.errors import APIError, BadRequest
from timoner.api.patch import (
    GENERIC_INVALID_MESSAGE,
    PatchFailed,
    apply_merge_patch,
    apply_strategic_merge_patch,
)

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
POD = "io.k8s.api.core.v1.Pod"
SERVICE = "io.k8s.api.core.v1.Service"
CONFIGMAP = "io.k8s.api.core.v1.ConfigMap"


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "labels": {"app": "web", "tier": "fe"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "finalizers": ["a.example.com/x", "b.example.com/y"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o1", "uid": "u1"}],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        },
                        {"name": "sidecar", "image": "busybox", "command": ["sleep", "3600"]},
                    ],
                    "volumes": [
                        {"name": "data", "emptyDir": {}},
                        {"name": "cfg", "configMap": {"name": "cfg"}},
                    ],
                    "tolerations": [{"key": "k1", "operator": "Exists"}],
                    "nodeSelector": {"disk": "ssd", "zone": "a"},
                },
            },
        },
    }


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["name"] for i in items]


# (patch, extractor, expected)
CASES: list[tuple[str, dict[str, Any], Any, Any]] = [
    (
        "kubectl set image",
        {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}},
        lambda o: [(c["name"], c["image"]) for c in pod_spec(o)["containers"]],
        [("nginx", "nginx:1.27"), ("sidecar", "busybox")],
    ),
    (
        "set image keeps the untouched fields of the item",
        {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}},
        lambda o: pod_spec(o)["containers"][0]["ports"],
        [{"containerPort": 80, "protocol": "TCP"}],
    ),
    (
        "kubectl label via strategic patch: maps merge and null deletes",
        {"metadata": {"labels": {"tier": None, "env": "prod"}}},
        lambda o: o["metadata"]["labels"],
        {"app": "web", "env": "prod"},
    ),
    (
        "client-side apply: $setElementOrder orders the merged list",
        {
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"a":1}'}},
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
                        "containers": [
                            {
                                "$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "B"}],
                                "env": [{"name": "C", "value": "3"}],
                                "image": "nginx:1.27",
                                "name": "nginx",
                            }
                        ],
                    }
                }
            },
        },
        lambda o: (names(pod_spec(o)["containers"]), pod_spec(o)["containers"][1]["env"]),
        (
            ["sidecar", "nginx"],
            [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}, {"name": "B", "value": "2"}],
        ),
    ),
    (
        "client-side apply: $retainKeys switches the deployment strategy",
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        lambda o: o["spec"]["strategy"],
        {"type": "Recreate"},
    ),
    (
        "$retainKeys with an explicit null, as kubectl sends when the field was applied before",
        {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"}}},
        lambda o: o["spec"]["strategy"],
        {"type": "Recreate"},
    ),
    (
        "$patch: delete removes a container by merge key",
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}},
        lambda o: names(pod_spec(o)["containers"]),
        ["nginx"],
    ),
    (
        "client-side apply deleting a container",
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "nginx"}],
                        "containers": [{"$patch": "delete", "name": "sidecar"}],
                    }
                }
            }
        },
        lambda o: names(pod_spec(o)["containers"]),
        ["nginx"],
    ),
    (
        "env: change one, add one",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "nginx",
                                "env": [{"name": "B", "value": "20"}, {"name": "D", "value": "4"}],
                            }
                        ]
                    }
                }
            }
        },
        lambda o: pod_spec(o)["containers"][0]["env"],
        [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "D", "value": "4"}],
    ),
    (
        "env: delete one with $patch",
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "nginx", "env": [{"name": "A", "$patch": "delete"}]}]}
                }
            }
        },
        lambda o: pod_spec(o)["containers"][0]["env"],
        [{"name": "B", "value": "2"}],
    ),
    (
        "ports merge on containerPort",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "nginx", "ports": [{"containerPort": 80, "name": "http"}]}]
                    }
                }
            }
        },
        lambda o: pod_spec(o)["containers"][0]["ports"],
        [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
    ),
    (
        "a new port without order directive goes first, as upstream orders it",
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "nginx", "ports": [{"containerPort": 443}]}]}}
            }
        },
        lambda o: [p["containerPort"] for p in pod_spec(o)["containers"][0]["ports"]],
        [443, 80],
    ),
    (
        "volumes: $retainKeys swaps the volume source",
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
                        "volumes": [
                            {
                                "$retainKeys": ["configMap", "name"],
                                "configMap": {"name": "other"},
                                "name": "data",
                            }
                        ],
                    }
                }
            }
        },
        lambda o: pod_spec(o)["volumes"],
        [{"name": "data", "configMap": {"name": "other"}}, {"name": "cfg", "configMap": {"name": "cfg"}}],
    ),
    (
        "volumeMounts merge on mountPath",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "nginx", "volumeMounts": [{"mountPath": "/data", "readOnly": True}]}
                        ]
                    }
                }
            }
        },
        lambda o: pod_spec(o)["containers"][0]["volumeMounts"],
        [{"name": "data", "mountPath": "/data", "readOnly": True}],
    ),
    (
        "tolerations have no strategy and are replaced",
        {"spec": {"template": {"spec": {"tolerations": [{"key": "k2", "operator": "Exists"}]}}}},
        lambda o: pod_spec(o)["tolerations"],
        [{"key": "k2", "operator": "Exists"}],
    ),
    (
        "container command (no strategy) is replaced",
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "command": ["true"]}]}}}},
        lambda o: pod_spec(o)["containers"][1]["command"],
        ["true"],
    ),
    (
        "finalizers: primitive set union keeps order, new items first",
        {"metadata": {"finalizers": ["c.example.com/z", "a.example.com/x"]}},
        lambda o: o["metadata"]["finalizers"],
        ["c.example.com/z", "a.example.com/x", "b.example.com/y"],
    ),
    (
        "finalizers: $deleteFromPrimitiveList",
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x"]}},
        lambda o: o["metadata"]["finalizers"],
        ["b.example.com/y"],
    ),
    (
        "finalizers: $setElementOrder on a primitive list",
        {
            "metadata": {
                "$setElementOrder/finalizers": ["b.example.com/y", "c.example.com/z", "a.example.com/x"],
                "finalizers": ["c.example.com/z"],
            }
        },
        lambda o: o["metadata"]["finalizers"],
        ["b.example.com/y", "c.example.com/z", "a.example.com/x"],
    ),
    (
        "ownerReferences merge on uid",
        {
            "metadata": {
                "ownerReferences": [
                    {"uid": "u1", "controller": True},
                    {"uid": "u2", "apiVersion": "v1", "kind": "Y", "name": "o2"},
                ]
            }
        },
        lambda o: [(r["uid"], r.get("controller")) for r in o["metadata"]["ownerReferences"]],
        [("u1", True), ("u2", None)],
    ),
    (
        "$patch: replace on a map",
        {"spec": {"template": {"spec": {"nodeSelector": {"$patch": "replace", "disk": "hdd"}}}}},
        lambda o: pod_spec(o)["nodeSelector"],
        {"disk": "hdd"},
    ),
    (
        "$patch: replace inside a merging list",
        {
            "spec": {
                "template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}
            }
        },
        lambda o: pod_spec(o)["containers"],
        [{"name": "only", "image": "x"}],
    ),
    (
        "$patch: delete on a map empties it",
        {"spec": {"template": {"spec": {"nodeSelector": {"$patch": "delete"}}}}},
        lambda o: pod_spec(o)["nodeSelector"],
        {},
    ),
    (
        "null removes a whole list",
        {"spec": {"template": {"spec": {"tolerations": None}}}},
        lambda o: "tolerations" in pod_spec(o),
        False,
    ),
    (
        "a new field is inserted without nulls or directives",
        {
            "spec": {
                "template": {
                    "spec": {"affinity": {"nodeAffinity": None, "podAffinity": {"x": {"$patch": "delete"}}}}
                }
            }
        },
        lambda o: pod_spec(o)["affinity"],
        {"podAffinity": {}},
    ),
    (
        "a new list item is appended without nulls",
        {"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "x", "args": None}]}}}},
        lambda o: pod_spec(o)["containers"][0],
        {"name": "new", "image": "x"},
    ),
    (
        "fields outside the schema merge like a merge patch",
        {"spec": {"x-extra": {"list": [3], "keep": None}}},
        lambda o: o["spec"]["x-extra"],
        {"list": [3]},
    ),
    (
        "a type change replaces",
        {"spec": {"replicas": {"odd": True}}},
        lambda o: o["spec"]["replicas"],
        {"odd": True},
    ),
]


@pytest.mark.parametrize(("name", "patch", "extract", "expected"), CASES, ids=[c[0] for c in CASES])
def test_deployment_patches(name: str, patch: dict[str, Any], extract: Any, expected: Any) -> None:
    original = deployment()
    before = copy.deepcopy(original)
    patch_before = copy.deepcopy(patch)
    result = apply_strategic_merge_patch(original, patch, definition=DEPLOYMENT)
    assert extract(result) == expected
    assert original == before
    assert patch == patch_before
    assert "$" not in json.dumps(result)


def test_service_ports_merge_on_port() -> None:
    svc = {
        "spec": {
            "ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}],
            "type": "ClusterIP",
        }
    }
    patch = {"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}
    result = apply_strategic_merge_patch(svc, patch, definition=SERVICE)
    assert result["spec"]["ports"] == [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 9443}]


def test_pod_conditions_merge_on_type() -> None:
    pod = {
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]
        }
    }
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    result = apply_strategic_merge_patch(pod, patch, definition=POD)
    assert result["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "Initialized", "status": "True"},
    ]


def test_null_patch_is_a_no_op() -> None:
    assert apply_strategic_merge_patch(deployment(), None, definition=DEPLOYMENT) == deployment()


def _errors() -> list[tuple[str, dict[str, Any], type[APIError], int, str]]:
    containers = lambda items: {"spec": {"template": {"spec": {"containers": items}}}}  # noqa: E731
    return [
        (
            "item without merge key",
            containers([{"image": "x"}]),
            APIError,
            500,
            "map: map[image:x] does not contain declared merge key: name",
        ),
        (
            "delete without merge key",
            containers([{"$patch": "delete"}]),
            APIError,
            500,
            "map: map[$patch:delete] does not contain declared merge key: name",
        ),
        (
            "unknown list directive",
            containers([{"name": "nginx", "$patch": "frob"}]),
            APIError,
            500,
            "unknown patch type: frob in map: map[$patch:frob name:nginx]",
        ),
        (
            "merge directive in list",
            containers([{"name": "nginx", "$patch": "merge"}]),
            APIError,
            500,
            "merging lists cannot yet be specified in the patch",
        ),
        (
            "merge directive on map",
            {"spec": {"strategy": {"$patch": "merge"}}},
            APIError,
            500,
            "unknown patch type: merge in map: map[$patch:merge]",
        ),
        (
            "retainKeys not a list",
            {"spec": {"strategy": {"$retainKeys": "type"}}},
            BadRequest,
            400,
            "invalid patch format of retainKeys",
        ),
        (
            "retainKeys misses a patched key",
            {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
            BadRequest,
            400,
            "invalid patch format of retainKeys",
        ),
        (
            "bad delete-list prefix",
            {"metadata": {"$deleteFromPrimitiveListX/finalizers": ["a"]}},
            BadRequest,
            400,
            "invalid patch format of primitive list",
        ),
        (
            "bad set-order prefix",
            {"metadata": {"$setElementOrderX/finalizers": ["a"]}},
            BadRequest,
            400,
            "invalid patch format of setElementOrder list",
        ),
        (
            "mixed element types",
            {"metadata": {"finalizers": [1]}},
            APIError,
            500,
            "list element types are not identical",
        ),
        (
            "order mismatch",
            {"metadata": {"$setElementOrder/finalizers": ["x", "y"], "finalizers": ["y", "x"]}},
            APIError,
            500,
            "The order in patch list:\n[y x]\n doesn't match $setElementOrder list:\n[x y]\n",
        ),
    ]


@pytest.mark.parametrize(
    ("name", "patch", "cls", "code", "message"), _errors(), ids=[e[0] for e in _errors()]
)
def test_errors(name: str, patch: dict[str, Any], cls: type[APIError], code: int, message: str) -> None:
    with pytest.raises(cls) as info:
        apply_strategic_merge_patch(deployment(), patch, definition=DEPLOYMENT)
    assert info.value.code == code
    assert info.value.message.startswith(message)
    if code == 500:
        # Upstream answers unclassified Go errors without a reason.
        assert "reason" not in info.value.status()


def test_list_of_lists_is_generic_422() -> None:
    original = {"metadata": {"finalizers": []}}
    with pytest.raises(PatchFailed) as info:
        apply_strategic_merge_patch(original, {"metadata": {"finalizers": [["x"]]}}, definition=CONFIGMAP)
    assert info.value.code == 422
    assert info.value.message == GENERIC_INVALID_MESSAGE
    assert info.value.detail == "lists of lists are not supported"


@pytest.mark.parametrize("patch", [[1], "x", 3])
def test_non_object_patch_is_bad_request(patch: Any) -> None:
    with pytest.raises(BadRequest):
        apply_strategic_merge_patch(deployment(), patch, definition=DEPLOYMENT)


text = st.text(alphabet="abcxyz", min_size=1, max_size=4)


@given(st.dictionaries(text, text, max_size=4), st.dictionaries(text, st.none() | text, max_size=4))
def test_free_form_maps_behave_as_merge_patch(data: dict[str, str], change: dict[str, str | None]) -> None:
    cm = {"metadata": {"name": "c", "annotations": dict(data)}, "data": dict(data)}
    patch = {"metadata": {"annotations": change}, "data": change}
    assert apply_strategic_merge_patch(cm, patch, definition=CONFIGMAP) == apply_merge_patch(cm, patch)


env_lists = st.lists(st.tuples(text, text), max_size=5, unique_by=lambda t: t[0]).map(
    lambda pairs: [{"name": n, "value": v} for n, v in pairs]
)


@given(env_lists, env_lists)
def test_env_patch_is_idempotent_and_merges_by_name(
    live: list[dict[str, str]], change: list[dict[str, str]]
) -> None:
    original = {"spec": {"containers": [{"name": "c", "env": live}]}}
    patch = {"spec": {"containers": [{"name": "c", "env": change}]}}
    once = apply_strategic_merge_patch(original, patch, definition=POD)
    twice = apply_strategic_merge_patch(once, patch, definition=POD)
    assert twice == once
    merged = {e["name"]: e["value"] for e in once["spec"]["containers"][0].get("env", [])}
    expected = {e["name"]: e["value"] for e in live} | {e["name"]: e["value"] for e in change}
    assert merged == expected
