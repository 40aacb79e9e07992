"""The JSONPath subset of CRD printer columns."""

from __future__ import annotations

import pytest

from timoner.api.jsonpath import compile_path, find

OBJ = {
    "metadata": {"name": "w", "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {"replicas": 3, "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
    "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]},
}


@pytest.mark.parametrize(("path", "expected"), [
    (".spec.replicas", [3]),
    ("{.spec.replicas}", [3]),
    (".spec.missing", []),
    (".spec.ports[0].port", [80]),
    (".spec.ports[-1].name", ["https"]),
    (".spec.ports[*].port", [80, 443]),
    (".spec.ports[0:1].name", ["http"]),
    (".spec.ports[5].port", []),
    ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
    (".status.conditions[?(@.type=='Synced')].status", ["False"]),
    (".spec.ports[?(@.port>100)].name", ["https"]),
    (".spec.ports[?(@.port)].name", ["http", "https"]),
    (".metadata.labels['app.kubernetes.io/name']", ["web"]),
    (".", [OBJ]),
])
def test_paths_select_what_kubectl_selects(path, expected):
    assert find(OBJ, path) == expected


@pytest.mark.parametrize("path", ["spec.replicas", ".spec..replicas", ".spec.ports[x]", ".spec.ports[0",
                                  ".spec.ports[?(@.port ~ 3)]", ""])
def test_bad_paths_raise_value_error(path):
    with pytest.raises(ValueError):
        compile_path(path)


def test_values_of_the_wrong_shape_select_nothing():
    assert find({"spec": "text"}, ".spec.replicas") == []
    assert find({"spec": {"ports": {"a": 1}}}, ".spec.ports[0]") == []
    assert find({"spec": {"ports": {"a": 1, "b": 2}}}, ".spec.ports[*]") == [1, 2]
