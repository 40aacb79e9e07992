"""CustomResourceDefinitions with the real kubectl against `timoner up`.

A CRD is created and its kind is usable at once (`get`, `apply`, `explain`); `kubectl wait` sees it
Established; custom resources are validated (field causes), pruned (refused under Strict), defaulted;
printer columns show; the status and scale subresources work (`kubectl scale`); CEL rules are enforced;
server-side apply conflicts between two managers and is then forced; deleting the CRD deletes its
resources.
"""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.slow

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.{group}
spec:
  group: {group}
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: CronTab runs a command on a schedule.
        properties:
          spec:
            type: object
            description: What to run and when.
            required: [cronSpec]
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.replicas"
              message: replicas must not be below minReplicas
            properties:
              cronSpec:
                type: string
                pattern: '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){{4}}$'
                description: The schedule, in cron format.
              image:
                type: string
                default: busybox
              replicas:
                type: integer
                minimum: 0
                default: 1
              minReplicas:
                type: integer
                default: 0
              selector:
                type: string
          status:
            type: object
            properties:
              replicas: {{type: integer}}
              labelSelector: {{type: string}}
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.labelSelector
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"""

CRONTAB = """
apiVersion: {group}/v1
kind: CronTab
metadata:
  name: {name}
spec:
  cronSpec: "{spec}"
{extra}
"""


@pytest.fixture
def group():
    return f"stable{uuid.uuid4().hex[:6]}.example.com"


@pytest.fixture
def crd(up, group):
    up.kubectl("apply", "-f", "-", input=CRD.format(group=group))
    return f"crontabs.{group}"


def crontab(group, name, spec="* * * * */5", extra=""):
    return CRONTAB.format(group=group, name=name, spec=spec, extra=extra)


def test_a_new_kind_is_usable_at_once(up, ns, group):
    # create the CRD and use its kind in the very next commands, with no wait in between
    out = up.kubectl("apply", "-f", "-", input=CRD.format(group=group)).stdout
    assert f"customresourcedefinition.apiextensions.k8s.io/crontabs.{group} created" in out
    assert "No resources found" in up.kubectl("get", "crontabs", "-n", ns).stderr
    out = up.kubectl("apply", "-n", ns, "-f", "-", input=crontab(group, "tab")).stdout
    assert f"crontab.{group}/tab created" in out
    explained = up.kubectl("explain", f"crontabs.{group}.spec").stdout
    assert "What to run and when." in explained and "cronSpec" in explained
    up.kubectl("wait", "--for=condition=Established", f"crd/crontabs.{group}", "--timeout=20s")
    shown = up.kubectl("get", "ct", "-n", ns).stdout.splitlines()
    assert shown[0].split() == ["NAME", "SPEC", "REPLICAS", "AGE"]
    assert shown[1].split()[:7] == ["tab", "*", "*", "*", "*", "*/5", "1"]


def test_invalid_resources_are_refused_with_field_causes(up, ns, group, crd):
    proc = up.kubectl("apply", "-n", ns, "-f", "-", check=False,
                      input=crontab(group, "bad", spec="every minute", extra="  replicas: -1"))
    assert proc.returncode != 0
    assert 'The CronTab "bad" is invalid' in proc.stderr
    assert "spec.cronSpec" in proc.stderr and "spec.replicas" in proc.stderr
    assert up.kubectl("get", f"crontabs.{group}", "bad", "-n", ns, check=False).returncode != 0


def test_unknown_fields_pruned_and_refused_under_strict_and_defaults_appear(up, ns, group, crd):
    manifest = crontab(group, "tab", extra="  bogus: 1")
    proc = up.kubectl("create", "--validate=strict", "-n", ns, "-f", "-", check=False, input=manifest)
    assert proc.returncode != 0 and 'unknown field "spec.bogus"' in proc.stderr
    up.kubectl("create", "--validate=false", "-n", ns, "-f", "-", input=manifest)
    obj = json.loads(up.kubectl("get", f"crontabs.{group}", "tab", "-n", ns, "-o", "json").stdout)
    assert "bogus" not in obj["spec"]
    assert obj["spec"]["image"] == "busybox" and obj["spec"]["replicas"] == 1 and obj["spec"]["minReplicas"] == 0


def test_cel_rules_are_enforced(up, ns, group, crd):
    proc = up.kubectl("apply", "-n", ns, "-f", "-", check=False,
                      input=crontab(group, "tab", extra="  replicas: 1\n  minReplicas: 3"))
    assert proc.returncode != 0
    assert "replicas must not be below minReplicas" in proc.stderr


def test_status_and_scale_subresources(up, ns, group, crd):
    up.kubectl("apply", "-n", ns, "-f", "-", input=crontab(group, "tab"))
    up.kubectl("patch", f"crontabs.{group}", "tab", "-n", ns, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": {"replicas": 1, "labelSelector": "app=tab"}}))
    out = up.kubectl("scale", f"crontabs.{group}", "tab", "-n", ns, "--replicas=4").stdout
    assert f"crontab.{group}/tab scaled" in out
    obj = json.loads(up.kubectl("get", f"crontabs.{group}", "tab", "-n", ns, "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 4
    assert obj["status"] == {"replicas": 1, "labelSelector": "app=tab"}
    assert obj["metadata"]["generation"] == 2


def test_server_side_apply_with_two_managers(up, ns, group, crd):
    manifest = crontab(group, "tab", extra="  replicas: 2")
    out = up.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=manifest).stdout
    assert "serverside-applied" in out
    other = crontab(group, "tab", extra="  replicas: 5")
    proc = up.kubectl("apply", "--server-side", "--field-manager=scaler", "-n", ns, "-f", "-",
                      input=other, check=False)
    assert proc.returncode != 0
    assert "conflict" in proc.stderr.lower() and ".spec.replicas" in proc.stderr
    up.kubectl("apply", "--server-side", "--field-manager=scaler", "--force-conflicts", "-n", ns, "-f", "-",
               input=other)
    obj = json.loads(up.kubectl("get", f"crontabs.{group}", "tab", "-n", ns, "-o", "json",
                                "--show-managed-fields").stdout)
    assert obj["spec"]["replicas"] == 5
    assert {m["manager"] for m in obj["metadata"]["managedFields"]} == {"kubectl", "scaler"}
    # a field kubectl stops applying disappears
    up.kubectl("apply", "--server-side", "-n", ns, "-f", "-",
               input=crontab(group, "tab", extra="  selector: app=tab"))
    up.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=crontab(group, "tab"))
    obj = json.loads(up.kubectl("get", f"crontabs.{group}", "tab", "-n", ns, "-o", "json").stdout)
    assert "selector" not in obj["spec"] and obj["spec"]["replicas"] == 5


def test_deleting_the_crd_deletes_its_resources(up, ns, group, crd):
    up.kubectl("apply", "-n", ns, "-f", "-", input=crontab(group, "tab"))
    up.kubectl("delete", "crd", crd, "--timeout=30s")
    assert up.kubectl("get", "crd", crd, check=False).returncode != 0
    proc = up.kubectl("get", f"crontabs.{group}", "-n", ns, check=False)
    assert proc.returncode != 0
    assert "the server doesn't have a resource type" in proc.stderr


def test_client_side_apply_migrates_to_server_side_apply(up, ns, group, crd):
    # kubectl apply (client-side) first, then --server-side: kubectl moves the client-side apply
    # manager's fields to its own Apply entry, so a field dropped later is removed as upstream does
    up.kubectl("apply", "-n", ns, "-f", "-", input=crontab(group, "tab", extra="  selector: app=tab"))
    up.kubectl("apply", "--server-side", "-n", ns, "-f", "-",
               input=crontab(group, "tab", extra="  selector: app=tab"))
    obj = json.loads(up.kubectl("get", f"crontabs.{group}", "tab", "-n", ns, "-o", "json",
                                "--show-managed-fields").stdout)
    operations = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in operations
    assert not any(op == ("kubectl-client-side-apply", "Update") and
                   "f:selector" in json.dumps(m.get("fieldsV1"))
                   for m in obj["metadata"]["managedFields"]
                   for op in [(m["manager"], m["operation"])])
    up.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=crontab(group, "tab"))
    obj = json.loads(up.kubectl("get", f"crontabs.{group}", "tab", "-n", ns, "-o", "json").stdout)
    assert "selector" not in obj["spec"]
