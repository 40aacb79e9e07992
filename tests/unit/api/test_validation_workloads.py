"""Validation of workloads (apps/v1, batch/v1): valid objects pass, each breakage gives exactly its causes."""

from __future__ import annotations

import copy

import pytest

from timoner.api.defaults import apply_defaults
from timoner.api.registry import BUILTIN
from timoner.api.validation import validate
from timoner.api.validation._cron import cron_errors

INFO = {(r.group, r.kind): r for r in BUILTIN}
R, INV, NS, F = "FieldValueRequired", "FieldValueInvalid", "FieldValueNotSupported", "FieldValueForbidden"


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


def template(restart: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "app", "image": "nginx:1.27"}]}
    if restart:
        spec["restartPolicy"] = restart
    return {"metadata": {"labels": {"app": "web"}}, "spec": spec}


def workload(kind: str, **spec) -> dict:
    base = {"selector": {"matchLabels": {"app": "web"}}, "template": template()}
    if kind == "StatefulSet":
        base["serviceName"] = "web"
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": {**base, **spec}}


def with_spec(kind: str, path: tuple[str, ...], value) -> dict:
    obj = workload(kind)
    target = obj["spec"]
    for key in path[:-1]:
        target = target.setdefault(key, {})
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return obj


APPS_KINDS = ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"]


@pytest.mark.parametrize("kind", APPS_KINDS)
def test_valid_workloads_pass(kind):
    assert run("apps", kind, workload(kind)) == []


@pytest.mark.parametrize("kind", APPS_KINDS)
@pytest.mark.parametrize(("path", "value", "expected"), [
    (("selector",), None, {(R, "spec.selector"), (INV, "spec.template.metadata.labels")}),
    (("selector",), {"matchLabels": {"app": "other"}}, {(INV, "spec.template.metadata.labels")}),
    (("template", "spec", "restartPolicy"), "Never", {(NS, "spec.template.spec.restartPolicy")}),
    (("template", "spec", "containers"), [{"name": "Bad_Name", "image": "x"}], {(INV, "spec.template.spec.containers[0].name")}),
])
def test_shared_workload_rules(kind, path, value, expected):
    assert fields(run("apps", kind, with_spec(kind, path, value))) == expected


@pytest.mark.parametrize(("kind", "expected"), [
    ("Deployment", {(INV, "spec.selector.matchExpressions[0].operator"), (INV, "spec.selector")}),
    ("ReplicaSet", {(INV, "spec.selector.matchExpressions[0].operator"), (INV, "spec.selector")}),
    ("StatefulSet", {(INV, "spec.selector.matchExpressions[0].operator"), (INV, "spec.selector")}),
    ("DaemonSet", {(INV, "spec.selector.matchExpressions[0].operator")}),
])
def test_unusable_selector(kind, expected):
    obj = with_spec(kind, ("selector",), {"matchExpressions": [{"key": "app", "operator": "Maybe"}]})
    assert fields(run("apps", kind, obj)) == expected


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet"])
def test_negative_replicas(kind):
    assert fields(run("apps", kind, workload(kind, replicas=-1))) == {(INV, "spec.replicas")}


@pytest.mark.parametrize("kind", APPS_KINDS)
def test_selector_is_immutable(kind):
    old = workload(kind)
    new = workload(kind, selector={"matchLabels": {"app": "web", "tier": "x"}},
                   template={"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": template()["spec"]})
    # A StatefulSet reports the selector change through its "only these fields may change" rule.
    expected = {(F, "spec")} if kind == "StatefulSet" else {(INV, "spec.selector")}
    assert fields(run("apps", kind, new, old)) == expected


@pytest.mark.parametrize(("rolling", "expected"), [
    ({"maxSurge": 0, "maxUnavailable": 0}, {(INV, "spec.strategy.rollingUpdate.maxUnavailable")}),
    ({"maxSurge": "0%", "maxUnavailable": "0%"}, {(INV, "spec.strategy.rollingUpdate.maxUnavailable")}),
    ({"maxSurge": "abc", "maxUnavailable": 1}, {(INV, "spec.strategy.rollingUpdate.maxSurge")}),
    ({"maxSurge": 1, "maxUnavailable": "120%"}, {(INV, "spec.strategy.rollingUpdate.maxUnavailable")}),
    ({"maxSurge": -1, "maxUnavailable": 1}, {(INV, "spec.strategy.rollingUpdate.maxSurge")}),
    ({"maxSurge": "50%", "maxUnavailable": 0}, set()),
])
def test_deployment_rolling_update(rolling, expected):
    obj = workload("Deployment", strategy={"type": "RollingUpdate", "rollingUpdate": rolling})
    assert fields(run("apps", "Deployment", obj)) == expected


def test_rolling_update_messages_print_int_or_string_bare():
    obj = workload("Deployment", strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})
    (cause,) = run("apps", "Deployment", obj)
    assert cause.message == "Invalid value: 0%: may not be 0 when `maxSurge` is 0"


@pytest.mark.parametrize(("spec", "expected"), [
    ({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}, {(F, "spec.strategy.rollingUpdate")}),
    ({"strategy": {"type": "Blue"}}, {(NS, "spec.strategy.type")}),
    ({"progressDeadlineSeconds": 5, "minReadySeconds": 10}, {(INV, "spec.progressDeadlineSeconds")}),
    ({"revisionHistoryLimit": -1}, {(INV, "spec.revisionHistoryLimit")}),
])
def test_deployment_spec(spec, expected):
    assert fields(run("apps", "Deployment", workload("Deployment", **spec))) == expected


def test_selector_mismatch_message():
    obj = with_spec("Deployment", ("selector",), None)
    messages = sorted(c.message for c in run("apps", "Deployment", obj))
    assert messages == ["Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
                        "Required value"]


@pytest.mark.parametrize(("spec", "expected"), [
    ({"podManagementPolicy": "Random"}, {(INV, "spec.podManagementPolicy")}),
    ({"updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}}}, {(INV, "spec.updateStrategy.rollingUpdate")}),
    ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": -1}}}, {(INV, "spec.updateStrategy.rollingUpdate.partition")}),
    ({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Keep"}}, {(NS, "spec.persistentVolumeClaimRetentionPolicy.whenDeleted")}),
    ({"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                                       "resources": {"requests": {"storage": "1Gi"}}}}],
      "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
          {"name": "app", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}}}, set()),
    ({"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]},
     {(R, "spec.volumeClaimTemplates[0].spec.accessModes"), (R, "spec.volumeClaimTemplates[0].spec.resources[storage]")}),
])
def test_statefulset_spec(spec, expected):
    assert fields(run("apps", "StatefulSet", workload("StatefulSet", **spec))) == expected


def test_statefulset_update_allows_only_some_fields():
    old = workload("StatefulSet")
    assert run("apps", "StatefulSet", workload("StatefulSet", replicas=5), old) == []
    assert fields(run("apps", "StatefulSet", workload("StatefulSet", serviceName="other"), old)) == {(F, "spec")}


@pytest.mark.parametrize(("strategy", "expected"), [
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}, {(R, "spec.updateStrategy.rollingUpdate.maxUnavailable")}),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}, {(INV, "spec.updateStrategy.rollingUpdate.maxSurge")}),
    ({"type": "OnDelete"}, set()),
])
def test_daemonset_strategy(strategy, expected):
    assert fields(run("apps", "DaemonSet", workload("DaemonSet", updateStrategy=strategy))) == expected


def job(**spec) -> dict:
    base = {"selector": {"matchLabels": {"app": "web"}}, "template": template("Never")}
    return {"metadata": {"name": "pi", "namespace": "default"}, "spec": {**base, **spec}}


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, set()),
    ({"selector": None}, {(R, "spec.selector")}),
    ({"template": template()}, {(NS, "spec.template.spec.restartPolicy")}),
    ({"parallelism": -1}, {(INV, "spec.parallelism")}),
    ({"backoffLimit": -1}, {(INV, "spec.backoffLimit")}),
    ({"completionMode": "Indexed", "completions": None, "parallelism": 2}, {(R, "spec.completions")}),
    ({"completionMode": "Sometimes"}, {(NS, "spec.completionMode")}),
    ({"selector": {"matchLabels": {"app": "x"}}}, {(INV, "spec.template.metadata.labels")}),
])
def test_job_spec(spec, expected):
    obj = job(**{k: v for k, v in spec.items() if v is not None})
    for key in [k for k, v in spec.items() if v is None]:
        obj["spec"].pop(key, None)
    assert fields(run("batch", "Job", obj)) == expected


def test_job_template_and_selector_are_immutable():
    old = job()
    new = job(template={"metadata": {"labels": {"app": "web"}}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": "app", "image": "nginx:1.28"}]}})
    assert fields(run("batch", "Job", new, old)) == {(INV, "spec.template")}
    suspended = job(suspend=True)
    moved = copy.deepcopy(suspended)
    moved["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a"}
    assert run("batch", "Job", moved, suspended) == []


def cron(**spec) -> dict:
    base = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template("OnFailure")}}}
    return {"metadata": {"name": "backup", "namespace": "default"}, "spec": {**base, **spec}}


@pytest.mark.parametrize(("obj", "expected"), [
    (cron(), set()),
    (cron(schedule="@hourly", timeZone="Europe/Paris"), set()),
    (cron(schedule=""), {(R, "spec.schedule")}),
    (cron(schedule="* * *"), {(INV, "spec.schedule")}),
    (cron(schedule="61 * * * *"), {(INV, "spec.schedule")}),
    (cron(schedule="TZ=UTC * * * * *"), {(INV, "spec.schedule")}),
    (cron(timeZone="Mars/Olympus"), {(INV, "spec.timeZone")}),
    (cron(concurrencyPolicy="Sometimes"), {(NS, "spec.concurrencyPolicy")}),
    (cron(jobTemplate={"spec": {"template": template("Always")}}), {(NS, "spec.jobTemplate.spec.template.spec.restartPolicy")}),
    (cron(jobTemplate={"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": template("Never")}}),
     {(INV, "spec.jobTemplate.spec.selector")}),
    ({**cron(), "metadata": {"name": "a" * 53, "namespace": "default"}}, {(INV, "metadata.name")}),
])
def test_cron_job(obj, expected):
    assert fields(run("batch", "CronJob", obj)) == expected


@pytest.mark.parametrize(("schedule", "error"), [
    ("*/5 * * * *", None),
    ("0 0 * * sun", None),
    ("0 9-17/2 1,15 jan-jun mon-fri", None),
    ("@every 1h30m", None),
    ("@weekly", None),
    ("* * *", "expected exactly 5 fields, found 3: [* * *]"),
    ("60 * * * *", "end of range (60) above maximum (59): 60"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
])
def test_cron_parser(schedule, error):
    assert cron_errors(schedule) == error
