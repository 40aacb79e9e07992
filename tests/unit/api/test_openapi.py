"""The /openapi/v3 documents: shape checks for every built-in group-version, and the real kubectl reading them."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from timoner.api.openapi import build_group_version_document, build_root, document_hash, group_version_path
from timoner.api.registry import BUILTIN, ResourceInfo

GROUP_VERSIONS = sorted({(r.group, r.version) for r in BUILTIN})
PATCH_TYPES = {
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
}


def _doc(group: str, version: str) -> dict[str, Any]:
    return build_group_version_document(group, version, BUILTIN)


def _resources(group: str, version: str) -> list[ResourceInfo]:
    return [r for r in BUILTIN if (r.group, r.version) == (group, version)]


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _patch_ops(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        if "patch" in item:
            yield path, item["patch"]


def _kubectl_supports_field_validation(doc: dict[str, Any], gvk: dict[str, str]) -> bool:
    """cli-runtime's queryParamVerifierV3: the first PATCH for the GVK must declare fieldValidation."""
    for _, op in _patch_ops(doc):
        if op.get("x-kubernetes-group-version-kind") == gvk:
            return any(
                p["name"] == "fieldValidation" and p["in"] == "query" for p in op.get("parameters", [])
            )
    return False


@pytest.mark.parametrize(("group", "version"), GROUP_VERSIONS)
def test_every_patchable_kind_has_a_patch_operation_with_field_validation(group: str, version: str) -> None:
    doc = _doc(group, version)
    for resource in _resources(group, version):
        gvk = {"group": group, "version": version, "kind": resource.kind}
        assert _kubectl_supports_field_validation(doc, gvk) == ("patch" in resource.verbs), resource.kind


@pytest.mark.parametrize(("group", "version"), GROUP_VERSIONS)
def test_every_patch_operation_takes_all_patch_types_and_the_write_parameters(
    group: str, version: str
) -> None:
    doc = _doc(group, version)
    ops = list(_patch_ops(doc))
    assert ops or all("patch" not in r.verbs for r in _resources(group, version))
    for path, op in ops:
        assert set(op["requestBody"]["content"]) == PATCH_TYPES, path
        names = {p["name"] for p in op["parameters"]}
        assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= names, path
        assert op["x-kubernetes-action"] == "patch"


@pytest.mark.parametrize(("group", "version"), GROUP_VERSIONS)
def test_references_resolve_inside_the_document_and_types_are_single(group: str, version: str) -> None:
    doc = _doc(group, version)
    schemas = doc["components"]["schemas"]
    for node in _nodes(doc):
        if isinstance(node.get("$ref"), str):  # a property may be *named* "$ref" (JSONSchemaProps)
            assert set(node) == {"$ref"}, "a $ref with siblings must be wrapped in allOf"
            ref = node["$ref"]
            assert ref.startswith("#/components/schemas/"), ref
            assert ref.removeprefix("#/components/schemas/") in schemas, ref
        kind = node.get("type")
        if kind is not None and not isinstance(kind, dict):  # a property may be *named* "type"
            assert isinstance(kind, str), node
    orjson.loads(orjson.dumps(doc))


@pytest.mark.parametrize(("group", "version"), GROUP_VERSIONS)
def test_each_kind_and_its_list_are_described_with_their_gvk(group: str, version: str) -> None:
    schemas = _doc(group, version)["components"]["schemas"]
    described = {
        (gvk["group"], gvk["version"], gvk["kind"])
        for schema in schemas.values()
        for gvk in schema.get("x-kubernetes-group-version-kind", ())
    }
    for resource in _resources(group, version):
        assert (group, version, resource.kind) in described
        if "list" in resource.verbs:
            assert (group, version, resource.list_kind) in described
    for meta in (
        "Status",
        "DeleteOptions",
        "ObjectMeta",
        "ListMeta",
        "WatchEvent",
        "Patch",
        "APIResourceList",
    ):
        assert f"io.k8s.apimachinery.pkg.apis.meta.v1.{meta}" in schemas


@pytest.mark.parametrize(
    ("resource", "paths", "absent"),
    [
        (
            "deployments",
            {
                "/apis/apps/v1/namespaces/{namespace}/deployments": {"get", "post", "delete"},
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}": {"get", "put", "patch", "delete"},
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status": {"get", "put", "patch"},
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale": {"get", "put", "patch"},
                "/apis/apps/v1/deployments": {"get"},
            },
            (),
        ),
        (
            "pods",
            {
                "/api/v1/namespaces/{namespace}/pods/{name}/binding": {"post"},
                "/api/v1/namespaces/{namespace}/pods/{name}/eviction": {"post"},
            },
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/exec",
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
            ),
        ),
        (
            "selfsubjectaccessreviews",
            {"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews": {"post"}},
            ("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/{name}",),
        ),
        (
            "clusterroles",
            {
                "/apis/rbac.authorization.k8s.io/v1/clusterroles": {"get", "post", "delete"},
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}": {"get", "put", "patch", "delete"},
            },
            ("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/clusterroles",),
        ),
    ],
)
def test_paths_and_methods_follow_the_verbs(resource: str, paths: dict[str, set[str]], absent: tuple) -> None:
    info = next(r for r in BUILTIN if r.plural == resource)
    doc = build_group_version_document(info.group, info.version, [info])
    for path, methods in paths.items():
        assert {m for m in doc["paths"][path] if m != "parameters"} == methods, path
    for path in absent:
        assert path not in doc["paths"]


@pytest.mark.parametrize(
    ("path", "method", "operation_id", "action", "gvk"),
    [
        ("/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "patch", "patchAppsV1NamespacedDeployment",
         "patch", ("apps", "v1", "Deployment")),
        ("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale", "patch",
         "patchAppsV1NamespacedDeploymentScale", "patch", ("autoscaling", "v1", "Scale")),
        ("/apis/apps/v1/namespaces/{namespace}/deployments", "delete",
         "deleteAppsV1CollectionNamespacedDeployment", "deletecollection", ("apps", "v1", "Deployment")),
        ("/apis/apps/v1/deployments", "get", "listAppsV1DeploymentForAllNamespaces", "list",
         ("apps", "v1", "Deployment")),
        ("/apis/apps/v1/watch/namespaces/{namespace}/deployments", "get", "watchAppsV1NamespacedDeploymentList",
         "watchlist", ("apps", "v1", "Deployment")),
        ("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status", "get",
         "readAppsV1NamespacedDeploymentStatus", "get", ("apps", "v1", "Deployment")),
    ],
)  # fmt: skip
def test_operations_are_named_as_upstream(
    path: str, method: str, operation_id: str, action: str, gvk: tuple
) -> None:
    op = _doc("apps", "v1")["paths"][path][method]
    assert op["operationId"] == operation_id
    assert op["x-kubernetes-action"] == action
    assert op["x-kubernetes-group-version-kind"] == dict(zip(("group", "version", "kind"), gvk, strict=True))


def test_core_and_rbac_operation_ids_use_upstream_group_names() -> None:
    core = _doc("", "v1")["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"]["operationId"]
    rbac = _doc("rbac.authorization.k8s.io", "v1")["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles"]
    assert core == "createCoreV1NamespacedPod"
    assert rbac["get"]["operationId"] == "listRbacAuthorizationV1ClusterRole"


def test_int_or_string_and_quantity_take_their_v3_forms() -> None:
    schemas = _doc("apps", "v1")["components"]["schemas"]
    int_or_string = schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    quantity = schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert int_or_string["format"] == "int-or-string"
    assert int_or_string["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    assert quantity["oneOf"] == [{"type": "string"}, {"type": "number"}]
    assert int_or_string["description"] and quantity["description"]


def test_patch_extensions_descriptions_and_required_are_kept() -> None:
    schemas = _doc("", "v1")["components"]["schemas"]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    assert "name" in schemas["io.k8s.api.core.v1.Container"]["required"]
    assert schemas["io.k8s.api.core.v1.Container"]["properties"]["image"]["description"]
    assert schemas["io.k8s.api.core.v1.Pod"]["properties"]["kind"] == {
        "description": schemas["io.k8s.api.core.v1.Pod"]["properties"]["kind"]["description"],
        "type": "string",
    }


def test_document_declares_openapi_3_and_the_kubernetes_version() -> None:
    doc = _doc("batch", "v1")
    assert doc["openapi"] == "3.0.0"
    assert doc["info"] == {"title": "Kubernetes", "version": "v1.32.0"}


@pytest.mark.parametrize("payload", [b"", b"{}", b'{"paths":{}}', bytes(range(256))])
def test_document_hash_is_uppercase_hex_sha512(payload: bytes) -> None:
    digest = document_hash(payload)
    assert digest == digest.upper() and len(digest) == 128
    assert bytes.fromhex(digest) == hashlib.sha512(payload).digest()


def test_document_hash_follows_the_content() -> None:
    a = orjson.dumps(_doc("apps", "v1"))
    b = orjson.dumps(_doc("batch", "v1"))
    assert document_hash(a) == document_hash(orjson.dumps(_doc("apps", "v1")))
    assert document_hash(a) != document_hash(b)


def test_root_points_at_each_group_version_with_its_hash() -> None:
    root = build_root({"apis/apps/v1": "AB12", "api/v1": "CD34"})
    assert root == {
        "paths": {
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=CD34"},
            "apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=AB12"},
        }
    }


@pytest.mark.parametrize(("group", "version", "path"), [("", "v1", "api/v1"), ("apps", "v1", "apis/apps/v1")])
def test_group_version_path(group: str, version: str, path: str) -> None:
    assert group_version_path(group, version) == path


# --- the real kubectl --------------------------------------------------------------------------------


def _serve(
    routes: dict[str, bytes], posts: list[str]
) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's spelling
            body = routes.get(urlsplit(self.path).path)
            if body is None:
                self._reply(
                    404,
                    orjson.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}),
                )
            else:
                self._reply(200, body)

        def do_POST(self) -> None:  # noqa: N802
            # Record the request line and echo the object back, as a create does.
            posts.append(self.path)
            self._reply(201, self.rfile.read(int(self.headers["Content-Length"])))

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@dataclass
class FakeServer:
    kubeconfig: Path
    posts: list[str]


@pytest.fixture
def openapi_server(tmp_path: Path) -> Iterator[FakeServer]:
    core = [r for r in BUILTIN if r.group == "" and r.version == "v1"]
    doc = orjson.dumps(build_group_version_document("", "v1", core))
    digest = document_hash(doc)
    resources = [
        {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
         "verbs": list(r.verbs), "shortNames": list(r.short_names)}
        for r in core
    ]  # fmt: skip
    routes = {
        "/version": orjson.dumps(
            {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "0" * 40, "gitTreeState": "clean",
             "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.4", "compiler": "gc",
             "platform": "linux/amd64"}
        ),
        "/api": orjson.dumps({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        "/apis": orjson.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        "/api/v1": orjson.dumps({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources}),
        "/openapi/v3": orjson.dumps(build_root({"api/v1": digest})),
        "/openapi/v3/api/v1": doc,
    }  # fmt: skip
    posts: list[str] = []
    server, thread = _serve(routes, posts)
    host, port = server.server_address[:2]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        f"clusters:\n- name: t\n  cluster:\n    server: http://{host}:{port}\n"
        "contexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n"
        "users:\n- name: t\n  user: {}\n"
    )
    try:
        yield FakeServer(kubeconfig, posts)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("pods.spec.containers", ["KIND:       Pod", "FIELD: containers <[]Container>", "imagePullPolicy\t<string>",
                                  "List of containers belonging to the pod."]),
        ("pods.spec.containers.resources.limits", ["FIELD: limits <map[string]Quantity>"]),
        ("services.spec.ports.targetPort", ["FIELD: targetPort <IntOrString>"]),
        ("pods.metadata", ["FIELD: metadata <ObjectMeta>", "labels\t<map[string]string>"]),
    ],
)  # fmt: skip
def test_kubectl_explain_reads_the_documents(
    openapi_server: FakeServer, target: str, expected: list[str]
) -> None:
    result = _kubectl(openapi_server, "explain", target)
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout, result.stdout


def test_kubectl_strict_validation_finds_field_validation_support(openapi_server: FakeServer) -> None:
    manifest = openapi_server.kubeconfig.parent / "cm.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\ndata:\n  a: b\n"
    )
    result = _kubectl(openapi_server, "create", "-f", str(manifest), "--validate=strict")
    assert result.returncode == 0, result.stderr
    assert len(openapi_server.posts) == 1
    path = urlsplit(openapi_server.posts[0])
    assert path.path == "/api/v1/namespaces/default/configmaps"
    # kubectl only delegates validation to the server when the document says the server supports it.
    assert "fieldValidation=Strict" in path.query


def _kubectl(server: FakeServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, *args, "--kubeconfig", str(server.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(server.kubeconfig.parent), "PATH": "/usr/bin:/bin"},
    )
