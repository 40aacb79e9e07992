"""Validation of metadata and the core/v1 kinds: a valid object passes, each breakage gives exactly its causes."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timoner.api.defaults import apply_defaults
from timoner.api.registry import BUILTIN
from timoner.api.validation import validate
from timoner.api.validation._names import is_dns1123_label, is_dns1123_subdomain, is_qualified_name

INFO = {(r.group, r.kind): r for r in BUILTIN if (r.group, r.kind) != ("autoscaling", "HorizontalPodAutoscaler") or r.version == "v2"}
R, INV, NS, D, F, TL, NF = (
    "FieldValueRequired", "FieldValueInvalid", "FieldValueNotSupported", "FieldValueDuplicate",
    "FieldValueForbidden", "FieldValueTooLong", "FieldValueNotFound",
)


def run(group: str, kind: str, obj: dict, old: dict | None = None) -> list:
    info = INFO[(group, kind)]
    obj = copy.deepcopy(obj)
    apply_defaults(info.group, info.version, info.kind, obj)
    if old is not None:
        old = copy.deepcopy(old)
        apply_defaults(info.group, info.version, info.kind, old)
    return validate(info, obj, old=old)


def fields(causes: list) -> set[tuple[str, str]]:
    return {(c.reason, c.field) for c in causes}


def pod() -> dict:
    return {"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80, "name": "http"}],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                                     "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                                     "readinessProbe": {"httpGet": {"port": "http"}},
                                     "env": [{"name": "MY_VAR", "value": "1"}]}],
                     "initContainers": [{"name": "init", "image": "busybox"}],
                     "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}]}}


def edit(fn: Callable[[dict], None]) -> Callable[[], dict]:
    def build() -> dict:
        obj = pod()
        fn(obj)
        return obj
    return build


def ctr(obj: dict) -> dict:
    return obj["spec"]["containers"][0]


C0 = "spec.containers[0]"
POD_CASES = [
    ("no-name", edit(lambda o: o["metadata"].pop("name")), {(R, "metadata.name")}),
    ("bad-name", edit(lambda o: o["metadata"].update(name="Foo_Bar")), {(INV, "metadata.name")}),
    ("generate-name-ok", edit(lambda o: o["metadata"].update(name="web-abcde", generateName="web-")), set()),
    ("no-namespace", edit(lambda o: o["metadata"].pop("namespace")), {(R, "metadata.namespace")}),
    ("bad-label-key", edit(lambda o: o["metadata"]["labels"].update({"a/b/c": "x"})), {(INV, "metadata.labels")}),
    ("bad-label-value", edit(lambda o: o["metadata"]["labels"].update(app="-x")), {(INV, "metadata.labels")}),
    ("long-label-value", edit(lambda o: o["metadata"]["labels"].update(app="a" * 64)), {(INV, "metadata.labels")}),
    ("bad-annotation", edit(lambda o: o["metadata"].update(annotations={"bad key": "v"})), {(INV, "metadata.annotations")}),
    ("huge-annotations", edit(lambda o: o["metadata"].update(annotations={"a": "x" * 262144})), {(TL, "metadata.annotations")}),
    ("owner-missing-uid", edit(lambda o: o["metadata"].update(ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs"}])),
     {(INV, "metadata.ownerReferences.uid")}),
    ("two-controllers", edit(lambda o: o["metadata"].update(ownerReferences=[
        {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": True}])), {(INV, "metadata.ownerReferences")}),
    ("bad-finalizer", edit(lambda o: o["metadata"].update(finalizers=["a/b/c"])), {(INV, "metadata.finalizers")}),
    ("no-containers", edit(lambda o: o["spec"].update(containers=[])), {(R, "spec.containers")}),
    ("no-image", edit(lambda o: ctr(o).pop("image")), {(R, f"{C0}.image")}),
    ("bad-container-name", edit(lambda o: ctr(o).update(name="App")), {(INV, f"{C0}.name")}),
    ("dup-with-init", edit(lambda o: o["spec"]["initContainers"][0].update(name="app")), {(D, "spec.initContainers[0].name")}),
    ("restart-policy", edit(lambda o: o["spec"].update(restartPolicy="Sometimes")), {(NS, "spec.restartPolicy")}),
    ("dns-policy", edit(lambda o: o["spec"].update(dnsPolicy="Nope")), {(NS, "spec.dnsPolicy")}),
    ("pull-policy", edit(lambda o: ctr(o).update(imagePullPolicy="Sometimes")), {(NS, f"{C0}.imagePullPolicy")}),
    ("port-range", edit(lambda o: ctr(o)["ports"].append({"containerPort": 70000})), {(INV, f"{C0}.ports[1].containerPort")}),
    ("port-protocol", edit(lambda o: ctr(o)["ports"].append({"containerPort": 81, "protocol": "HTTP"})), {(NS, f"{C0}.ports[1].protocol")}),
    ("port-dup-name", edit(lambda o: ctr(o)["ports"].append({"containerPort": 81, "name": "http"})), {(D, f"{C0}.ports[1].name")}),
    ("env-name", edit(lambda o: ctr(o)["env"].append({"name": "1BAD=", "value": "x"})), {(INV, f"{C0}.env[1].name")}),
    ("env-two-sources", edit(lambda o: ctr(o)["env"].append({"name": "X", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}}})), {(INV, f"{C0}.env[1].valueFrom")}),
    ("env-bad-fieldpath", edit(lambda o: ctr(o)["env"].append({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}})),
     {(NS, f"{C0}.env[1].valueFrom.fieldRef.fieldPath")}),
    ("dup-volume", edit(lambda o: o["spec"]["volumes"].append({"name": "data", "emptyDir": {}})), {(D, "spec.volumes[2].name")}),
    ("two-sources", edit(lambda o: o["spec"]["volumes"].append({"name": "x", "emptyDir": {}, "hostPath": {"path": "/x"}})),
     {(F, "spec.volumes[2].hostPath")}),
    ("mount-unknown-volume", edit(lambda o: ctr(o)["volumeMounts"].append({"name": "nope", "mountPath": "/n"})),
     {(NF, f"{C0}.volumeMounts[1].name")}),
    ("requests-over-limits", edit(lambda o: ctr(o)["resources"]["requests"].update(cpu="2")), {(INV, f"{C0}.resources.requests")}),
    # A bare Pod's requests default from its limits, so the bad limit is reported twice.
    ("bad-quantity", edit(lambda o: ctr(o)["resources"]["limits"].update(memory="lots")),
     {(INV, f"{C0}.resources.limits[memory]"), (INV, f"{C0}.resources.requests[memory]")}),
    ("probe-two-handlers", edit(lambda o: ctr(o).update(livenessProbe={"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}})),
     {(F, f"{C0}.livenessProbe.tcpSocket")}),
    ("probe-no-handler", edit(lambda o: ctr(o).update(livenessProbe={"periodSeconds": 5})), {(R, f"{C0}.livenessProbe")}),
    ("init-with-probe", edit(lambda o: o["spec"]["initContainers"][0].update(livenessProbe={"exec": {"command": ["x"]}})),
     {(F, "spec.initContainers[0].livenessProbe")}),
    ("sidecar-with-probe", edit(lambda o: o["spec"]["initContainers"][0].update(
        restartPolicy="Always", livenessProbe={"exec": {"command": ["x"]}})), set()),
    ("deadline", edit(lambda o: o["spec"].update(activeDeadlineSeconds=0)), {(INV, "spec.activeDeadlineSeconds")}),
]


def test_valid_pod_passes():
    assert run("", "Pod", pod()) == []


@pytest.mark.parametrize(("build", "expected"), [pytest.param(b, e, id=i) for i, b, e in POD_CASES])
def test_broken_pods(build, expected):
    assert fields(run("", "Pod", build())) == expected


@pytest.mark.parametrize(("field", "value", "message"), [
    ("restartPolicy", "Sometimes", 'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'),
    ("dnsPolicy", "X", 'Unsupported value: "X": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"'),
])
def test_pod_enum_messages(field, value, message):
    obj = pod()
    obj["spec"][field] = value
    (cause,) = run("", "Pod", obj)
    assert cause.message == message


def test_name_message_is_upstream_wording():
    obj = pod()
    obj["metadata"]["name"] = "Foo_Bar"
    (cause,) = run("", "Pod", obj)
    assert cause.message == (
        'Invalid value: "Foo_Bar": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
        "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
        "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )


def test_required_name_message():
    obj = pod()
    del obj["metadata"]["name"]
    (cause,) = run("", "Pod", obj)
    assert cause.message == "Required value: name or generateName is required"


@pytest.mark.parametrize(("change", "expected"), [
    (lambda s: s["containers"][0].update(image="nginx:1.28"), set()),
    (lambda s: s.update(activeDeadlineSeconds=30), set()),
    (lambda s: s["tolerations"].append({"key": "k", "operator": "Exists"}), set()),
    (lambda s: s["containers"][0].update(name="other"), {(F, "spec")}),
    (lambda s: s.update(restartPolicy="Never"), {(F, "spec")}),
    (lambda s: s.update(tolerations=s["tolerations"][1:]), {(F, "spec.tolerations")}),
])
def test_pod_update(change, expected):
    old = pod()
    old["spec"]["tolerations"] = [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
    apply_defaults("", "v1", "Pod", old)
    new = copy.deepcopy(old)
    change(new["spec"])
    assert fields(run("", "Pod", new, old)) == expected


def test_pod_deadline_may_only_shrink():
    old = pod()
    old["spec"]["activeDeadlineSeconds"] = 10
    new = copy.deepcopy(old)
    new["spec"]["activeDeadlineSeconds"] = 20
    (cause,) = run("", "Pod", new, old)
    assert (cause.field, cause.message) == ("spec.activeDeadlineSeconds", "Invalid value: 20: must be less than or equal to previous value")


def service(**spec) -> dict:
    return {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}], **spec}}


SERVICE_CASES = [
    ("digit-name", {"metadata": {"name": "1web", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}, {(INV, "metadata.name")}),
    ("no-ports", service(ports=[]), {(R, "spec.ports")}),
    ("headless-no-ports", service(ports=[], clusterIP="None"), set()),
    ("externalname-needs-name", service(ports=[], type="ExternalName"), {(R, "spec.externalName")}),
    ("externalname-bad", service(type="ExternalName", externalName="Not Valid"), {(INV, "spec.externalName")}),
    ("externalname-ok", service(type="ExternalName", externalName="db.example.com."), set()),
    ("bad-type", service(type="Magic"), {(NS, "spec.type")}),
    # targetPort defaults to the port, so upstream reports it too.
    ("port-zero", service(ports=[{"port": 0}]), {(INV, "spec.ports[0].port"), (INV, "spec.ports[0].targetPort")}),
    ("names-required", service(ports=[{"port": 80}, {"port": 81, "name": "b"}]), {(R, "spec.ports[0].name")}),
    ("dup-port-name", service(ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]), {(D, "spec.ports[1].name")}),
    ("dup-port", service(ports=[{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]), {(D, "spec.ports[1]")}),
    ("bad-cluster-ip", service(clusterIP="10.0.0.300"), {(INV, "spec.clusterIPs[0]")}),
    ("nodeport-on-clusterip", service(ports=[{"port": 80, "nodePort": 30001}]), {(F, "spec.ports[0].nodePort")}),
    ("nodeport-headless", service(type="NodePort", clusterIP="None"), {(INV, "spec.clusterIPs[0]")}),
    ("affinity", service(sessionAffinity="Sticky"), {(NS, "spec.sessionAffinity")}),
]


def test_valid_service_passes():
    assert run("", "Service", service()) == []


@pytest.mark.parametrize(("obj", "expected"), [pytest.param(o, e, id=i) for i, o, e in SERVICE_CASES])
def test_broken_services(obj, expected):
    assert fields(run("", "Service", obj)) == expected


def test_service_cluster_ip_is_immutable_but_may_be_omitted():
    old = service(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"])
    assert run("", "Service", service(), old) == []
    (cause,) = run("", "Service", service(clusterIP="10.96.0.11", clusterIPs=["10.96.0.11"]), old)
    assert (cause.field, cause.message) == ("spec.clusterIPs[0]", 'Invalid value: "10.96.0.11": may not change once set')


def meta(name="x", namespace="default"):
    m = {"name": name}
    if namespace:
        m["namespace"] = namespace
    return m


OTHER_CORE = [
    ("ConfigMap", {"metadata": meta(), "data": {"a.b": "1"}, "binaryData": {"bin": "AAE="}}, set()),
    ("ConfigMap", {"metadata": meta(), "data": {"bad/key": "1"}}, {(INV, "data[bad/key]")}),
    ("ConfigMap", {"metadata": meta(), "data": {"k": "1"}, "binaryData": {"k": "AA=="}}, {(INV, "data[k]")}),
    ("ConfigMap", {"metadata": meta(), "data": {"k": "x" * (1024 * 1024 + 1)}}, {(TL, "")}),
    ("Secret", {"metadata": meta(), "stringData": {"password": "p"}}, set()),
    ("Secret", {"metadata": meta(), "data": {"..": "YQ=="}}, {(INV, "data[..]")}),
    ("Secret", {"metadata": meta(), "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}}, {(R, "data[tls.key]")}),
    ("Secret", {"metadata": meta(), "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}},
     {(INV, "data[.dockerconfigjson]")}),
    ("Namespace", {"metadata": meta("team-a", None)}, set()),
    ("Namespace", {"metadata": meta("team.a", None)}, {(INV, "metadata.name")}),
    ("Namespace", {"metadata": meta("a", None), "spec": {"finalizers": ["custom"]}}, {(INV, "spec.finalizers")}),
    ("Node", {"metadata": meta("node-1", None), "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}, set()),
    ("Node", {"metadata": meta("node-1", None), "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}},
     {(NS, "spec.taints[0].effect")}),
    ("Node", {"metadata": meta("node-1", None), "spec": {"podCIDRs": ["10.0.0.0/33"]}}, {(INV, "spec.podCIDRs[0]")}),
    ("Endpoints", {"metadata": meta(), "subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 80}]}]}, set()),
    ("Endpoints", {"metadata": meta(), "subsets": [{"addresses": [{"ip": "127.0.0.1"}, {"ip": "nope"}]}]},
     {(INV, "subsets[0].addresses[0].ip"), (INV, "subsets[0].addresses[1].ip")}),
    ("Endpoints", {"metadata": meta(), "subsets": [{"ports": [{"port": 80}]}]}, {(R, "subsets[0]")}),
    ("Event", {"metadata": meta("x.1"), "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}}, set()),
    ("Event", {"metadata": meta("x.1"), "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}},
     {(INV, "involvedObject.namespace")}),
    ("LimitRange", {"metadata": meta(), "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"}}]}}, set()),
    ("LimitRange", {"metadata": meta(), "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "2"}}]}},
     {(INV, "spec.limits[0].min[cpu]"), (INV, "spec.limits[0].default[cpu]"), (INV, "spec.limits[0].defaultRequest[cpu]")}),
    ("LimitRange", {"metadata": meta(), "spec": {"limits": [{"type": "Pod", "default": {"cpu": "1"}}]}}, {(F, "spec.limits[0].default")}),
    ("ResourceQuota", {"metadata": meta(), "spec": {"hard": {"pods": "10", "requests.cpu": "4"}}}, set()),
    ("ResourceQuota", {"metadata": meta(), "spec": {"hard": {"pods": "-1"}, "scopes": ["Sometimes"]}},
     {(INV, "spec.hard[pods]"), (INV, "spec.scopes")}),
    ("ServiceAccount", {"metadata": meta()}, set()),
    ("PodTemplate", {"metadata": meta(), "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}, set()),
    ("PodTemplate", {"metadata": meta(), "template": {"spec": {"containers": []}}}, {(R, "template.spec.containers")}),
    ("ReplicationController", {"metadata": meta(), "spec": {"template": {"metadata": {"labels": {"a": "b"}},
                                                                          "spec": {"containers": [{"name": "c", "image": "x"}]}}}}, set()),
    ("ReplicationController", {"metadata": meta(), "spec": {"selector": {"a": "c"}, "template": {
        "metadata": {"labels": {"a": "b"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}},
     {(INV, "spec.template.metadata.labels"), (NS, "spec.template.spec.restartPolicy")}),
]


@pytest.mark.parametrize(("kind", "obj", "expected"), [pytest.param(k, o, e, id=f"{k}-{n}") for n, (k, o, e) in enumerate(OTHER_CORE)])
def test_core_kinds(kind, obj, expected):
    assert fields(run("", kind, obj)) == expected


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
def test_immutable_data(kind):
    old = {"metadata": meta(), "immutable": True, "data": {"a": "YQ=="}}
    assert run("", kind, copy.deepcopy(old), old) == []
    new = {"metadata": meta(), "data": {"a": "Yg=="}}
    assert fields(run("", kind, new, old)) == {(F, "immutable"), (F, "data")}


def test_secret_type_is_immutable():
    old = {"metadata": meta(), "type": "Opaque"}
    new = {"metadata": meta(), "type": "example.com/custom"}
    assert fields(run("", "Secret", new, old)) == {(INV, "type")}


@given(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True))
def test_every_dns_label_is_a_subdomain_and_a_qualified_name(label):
    assert is_dns1123_label(label) == []
    assert is_dns1123_subdomain(label) == []
    assert is_qualified_name(label) == []


@given(st.text(max_size=80))
def test_label_checks_agree_with_the_regex(text):
    import re
    valid = re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text) is not None and len(text) <= 63
    assert (is_dns1123_label(text) == []) == valid


def test_request_over_limit_message_uses_canonical_quantities():
    obj = pod()
    ctr(obj)["resources"] = {"requests": {"cpu": "2000m"}, "limits": {"cpu": "1500m"}}
    (cause,) = run("", "Pod", obj)
    assert (cause.field, cause.message) == (
        f"{C0}.resources.requests", 'Invalid value: "2": must be less than or equal to cpu limit of 1500m')


def test_pod_update_without_init_containers_is_not_a_spec_change():
    from timoner.api.registry import builtin_index
    from timoner.api.validation import validate

    info = builtin_index()[("", "v1", "pods")]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "terminationMessagePath": "/dev/termination-log",
                                    "terminationMessagePolicy": "File", "imagePullPolicy": "Always"}],
                    "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "nodeName": "n"}}
    changed = {**pod, "status": {"phase": "Running"}}
    assert validate(info, changed, old=pod) == []
