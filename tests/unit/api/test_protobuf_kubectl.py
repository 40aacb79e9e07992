"""decode_protobuf against real kubectl: the bodies kubectl 1.32 POSTs must decode to its own JSON.

A stub HTTP server (stdlib, 127.0.0.1, port 0) answers just the discovery
kubectl needs (from `timoner.api.registry.BUILTIN`; `/openapi/*` is 404, so
kubectl skips server-side validation lookups), records every POST body and
answers 201 with the decoded object. Each decoded body must equal what the
same command prints with `--dry-run=client -o json`, after `_go_normalised`
(see there) removes what Go writes but the wire cannot carry.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from timoner.api.protobuf import PROTOBUF_CONTENT_TYPE, decode_protobuf
from timoner.api.registry import BUILTIN

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


# --- a stub API server that records what kubectl sends ---------------------


@dataclass
class _Recorder:
    posts: list[tuple[str, str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _discovery() -> dict[str, Any]:
    """Path -> JSON document for /api, /apis and every group-version's resource list."""
    docs: dict[str, Any] = {}
    by_gv: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in BUILTIN:
        by_gv.setdefault((r.group, r.version), []).append(
            {
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": list(r.verbs),
                "shortNames": list(r.short_names),
            }
        )
    groups: dict[str, list[str]] = {}
    for (group, version), resources in by_gv.items():
        gv = f"{group}/{version}" if group else version
        path = f"/apis/{gv}" if group else f"/api/{version}"
        docs[path] = {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }
        if group:
            groups.setdefault(group, []).append(version)
    docs["/api"] = {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }
    docs["/apis"] = {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
            }
            for g, vs in groups.items()
        ],
    }
    docs["/version"] = {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}
    return docs


def _handler(recorder: _Recorder, docs: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, code: int, obj: Any) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = self.path.split("?")[0]
            if path in docs:
                self._reply(200, docs[path])
            else:
                self._reply(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": "NotFound",
                        "code": 404,
                        "message": f"{path} not found",
                    },
                )

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            content_type = self.headers.get("Content-Type", "")
            with recorder.lock:
                recorder.posts.append((self.path, content_type, body))
            try:
                obj = decode_protobuf(body) if content_type == PROTOBUF_CONTENT_TYPE else json.loads(body)
            except Exception as err:  # noqa: BLE001 - any failure is the test's finding
                self._reply(
                    500,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "code": 500,
                        "message": repr(err),
                    },
                )
                return
            if obj.get("kind", "").startswith("SelfSubject"):
                obj["status"] = {"allowed": True, "userInfo": {"username": "admin"}}
            self._reply(201, obj)

    return Handler


@dataclass(frozen=True)
class _Kubectl:
    recorder: _Recorder
    kubeconfig: Path
    cache: Path

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [KUBECTL, f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def capture(self, *args: str) -> tuple[str, bytes]:
        """Run a command and return the Content-Type and body of the one POST it made."""
        with self.recorder.lock:
            self.recorder.posts.clear()
        self.run(*args)
        with self.recorder.lock:
            posts = list(self.recorder.posts)
        assert len(posts) == 1, posts
        return posts[0][1], posts[0][2]


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Kubectl]:
    recorder = _Recorder()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder, _discovery()))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    home = tmp_path_factory.mktemp("kubectl")
    kubeconfig = home / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "stub",
                "clusters": [
                    {"name": "stub", "cluster": {"server": f"http://127.0.0.1:{httpd.server_address[1]}"}}
                ],
                "users": [{"name": "stub", "user": {}}],
                "contexts": [
                    {"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": "default"}}
                ],
            }
        )
    )
    try:
        yield _Kubectl(recorder, kubeconfig, home / "cache")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _go_normalised(want: Any, got: Any) -> Any:
    """`want` (kubectl's JSON) without the members Go writes that the protobuf wire cannot carry.

    Those are nulls (the zero time, nil slices and maps without `omitempty`)
    and zero strings, numbers and booleans that `got` lacks (value fields
    without `omitempty`, which gogo writes but the decoder omits as it cannot
    see the json tag). A zero `got` has is kept, so pointer fields set to
    zero (`replicas: 0`) are still compared, as is every `{}` and `[]`.
    """
    if isinstance(want, dict) and isinstance(got, dict):
        out = {}
        for key, item in want.items():
            if item is None:
                continue
            if key not in got and (item == "" or (type(item) in (int, bool) and not item)):
                continue
            out[key] = _go_normalised(item, got.get(key))
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [_go_normalised(w, g) for w, g in zip(want, got, strict=True)]
    return want


# --- real kubectl bodies ---------------------------------------------------

CREATES = [
    pytest.param(
        ["create", "configmap", "cm1", "--from-literal=a=b", "--from-file=bin={binary}"], id="configmap"
    ),
    pytest.param(["create", "secret", "generic", "s1", "--from-literal=a=b", "--type=Opaque"], id="secret"),
    pytest.param(["create", "namespace", "ns1"], id="namespace"),
    pytest.param(
        ["create", "deployment", "d1", "--image=nginx", "--replicas=2", "--port=80"], id="deployment"
    ),
    pytest.param(
        ["create", "deployment", "d0", "--image=nginx", "--replicas=0"], id="deployment-zero-replicas"
    ),
    pytest.param(["create", "service", "clusterip", "svc1", "--tcp=80:8080"], id="service"),
    pytest.param(["create", "job", "j1", "--image=busybox", "--", "echo", "hi"], id="job"),
    pytest.param(["create", "cronjob", "cj1", "--image=busybox", "--schedule=*/5 * * * *"], id="cronjob"),
    pytest.param(["create", "role", "r1", "--verb=get,list", "--resource=pods,deployments.apps"], id="role"),
    pytest.param(
        ["create", "rolebinding", "rb1", "--role=r1", "--user=u", "--serviceaccount=default:sa"],
        id="rolebinding",
    ),
    pytest.param(
        ["create", "clusterrole", "cr1", "--verb=get", "--non-resource-url=/healthz"], id="clusterrole"
    ),
    pytest.param(
        ["create", "priorityclass", "pc1", "--value=1000", "--description=high"], id="priorityclass"
    ),
    pytest.param(
        ["create", "poddisruptionbudget", "pdb1", "--selector=app=x", "--min-available=1"], id="pdb-int"
    ),
    pytest.param(
        ["create", "poddisruptionbudget", "pdb2", "--selector=app=x", "--max-unavailable=50%"],
        id="pdb-string",
    ),
    pytest.param(["create", "quota", "q1", "--hard=cpu=1,memory=1G,pods=2"], id="quota"),
    pytest.param(["create", "ingress", "ing1", "--rule=foo.com/bar=svc1:8080"], id="ingress"),
    pytest.param(["create", "serviceaccount", "sa1"], id="serviceaccount"),
]


@pytest.mark.parametrize("command", CREATES)
def test_kubectl_create_body_decodes_to_kubectls_json(
    kubectl: _Kubectl, command: list[str], tmp_path: Path
) -> None:
    binary = tmp_path / "bin"
    binary.write_bytes(bytes(range(256)))  # not UTF-8: lands in binaryData as base64
    command = [part.format(binary=binary) for part in command]

    content_type, body = kubectl.capture(*command)
    assert content_type == PROTOBUF_CONTENT_TYPE
    got = decode_protobuf(body)

    # Flags must precede `--`, after which everything is the container's command.
    cut = command.index("--") if "--" in command else len(command)
    want = json.loads(kubectl.run(*command[:cut], "--dry-run=client", "-o", "json", *command[cut:]))
    assert got == _go_normalised(want, got)


def test_kubectl_bodies_keep_pointer_zeros_and_bytes(kubectl: _Kubectl, tmp_path: Path) -> None:
    _, body = kubectl.capture("create", "deployment", "z", "--image=nginx", "--replicas=0")
    assert decode_protobuf(body)["spec"]["replicas"] == 0

    binary = tmp_path / "bin"
    binary.write_bytes(b"\x00\xff\xfe")
    _, body = kubectl.capture("create", "configmap", "b", f"--from-file=k={binary}")
    assert decode_protobuf(body)["binaryData"] == {"k": base64.b64encode(b"\x00\xff\xfe").decode()}


def test_kubectl_auth_can_i_sends_a_self_subject_access_review(kubectl: _Kubectl) -> None:
    content_type, body = kubectl.capture("auth", "can-i", "create", "pods")
    assert content_type == PROTOBUF_CONTENT_TYPE
    assert decode_protobuf(body) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {},
        "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
        "status": {},
    }


def test_kubectl_auth_whoami_sends_a_self_subject_review(kubectl: _Kubectl) -> None:
    content_type, body = kubectl.capture("auth", "whoami")
    assert content_type == PROTOBUF_CONTENT_TYPE
    assert decode_protobuf(body) == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "metadata": {},
        "status": {"userInfo": {}},
    }
