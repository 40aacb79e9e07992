"""Job validation beyond the basics: podFailurePolicy rules and per-index limits, in upstream's words."""

from __future__ import annotations

import copy

import pytest

from timoner.api.defaults import apply_defaults
from timoner.api.registry import BUILTIN
from timoner.api.validation import validate

INFO = {(r.group, r.kind): r for r in BUILTIN}
R, INV, NS, DUP = "FieldValueRequired", "FieldValueInvalid", "FieldValueNotSupported", "FieldValueDuplicate"


def run(obj: dict) -> list:
    info = INFO[("batch", "Job")]
    obj = copy.deepcopy(obj)
    apply_defaults(info.group, info.version, info.kind, obj)
    return validate(info, obj)


def job(**spec) -> dict:
    template = {"metadata": {"labels": {"app": "pi"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}
    base = {"selector": {"matchLabels": {"app": "pi"}}, "template": template}
    return {"metadata": {"name": "pi", "namespace": "default"}, "spec": {**base, **spec}}


def policy(*rules) -> dict:
    return {"podFailurePolicy": {"rules": list(rules)}}


def codes(operator="In", values=(1,), **extra):
    return {"onExitCodes": {"operator": operator, "values": list(values), **extra}}


@pytest.mark.parametrize(("spec", "expected"), [
    (policy({"action": "FailJob", **codes(containerName="main")},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}), []),
    (policy({"action": "Retry", **codes()}),
     [(NS, "spec.podFailurePolicy.rules[0].action",
       'Unsupported value: "Retry": supported values: "Count", "FailIndex", "FailJob", "Ignore"')]),
    (policy({"action": "FailIndex", **codes()}),
     [(INV, "spec.podFailurePolicy.rules[0].action",
       'Invalid value: "FailIndex": requires the backoffLimitPerIndex to be set')]),
    (policy({"action": "Count"}),
     [(INV, "spec.podFailurePolicy.rules[0]",
       "Invalid value: specifying one of OnExitCodes and OnPodConditions is required")]),
    (policy({"action": "Count", **codes(), "onPodConditions": [{"type": "Ready"}]}),
     [(INV, "spec.podFailurePolicy.rules[0]",
       "Invalid value: specifying both OnExitCodes and OnPodConditions is not supported")]),
    (policy({"action": "Count", **codes(values=(0, 3))}),
     [(INV, "spec.podFailurePolicy.rules[0].onExitCodes.values[0]",
       "Invalid value: 0: must not be 0 for the In operator")]),
    (policy({"action": "Count", **codes(values=(3, 1, 3))}),
     [(DUP, "spec.podFailurePolicy.rules[0].onExitCodes.values[2]", "Duplicate value: 3"),
      (INV, "spec.podFailurePolicy.rules[0].onExitCodes.values", "Invalid value: []int32{3, 1, 3}: must be ordered")]),
    (policy({"action": "Count", **codes(operator="Between")}),
     [(NS, "spec.podFailurePolicy.rules[0].onExitCodes.operator",
       'Unsupported value: "Between": supported values: "In", "NotIn"')]),
    (policy({"action": "Count", **codes(containerName="sidecar")}),
     [(INV, "spec.podFailurePolicy.rules[0].onExitCodes.containerName",
       'Invalid value: "sidecar": must be one of the container or initContainer names in the pod template')]),
    (policy({"action": "Ignore", "onPodConditions": [{"type": "Ready", "status": "Maybe"}]}),
     [(NS, "spec.podFailurePolicy.rules[0].onPodConditions[0].status",
       'Unsupported value: "Maybe": supported values: "False", "True", "Unknown"')]),
    ({"maxFailedIndexes": 1, "completionMode": "Indexed", "completions": 3},
     [(R, "spec.backoffLimitPerIndex", "Required value: when maxFailedIndexes is specified")]),
    ({"maxFailedIndexes": 4, "backoffLimitPerIndex": 1, "completionMode": "Indexed", "completions": 3},
     [(INV, "spec.maxFailedIndexes", "Invalid value: 4: must be less than or equal to completions")]),
])
def test_pod_failure_policy_and_index_limits(spec, expected):
    assert [(c.reason, c.field, c.message) for c in run(job(**spec))] == expected
