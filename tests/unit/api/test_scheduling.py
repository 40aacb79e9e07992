"""Table-driven tests for the pure toleration matching shared by the scheduler and the DaemonSet controller."""

from __future__ import annotations

import pytest

from timoner.api.scheduling import tolerates, untolerated_taint


@pytest.mark.parametrize(("toleration", "taint", "ok"), [
    ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
     {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),  # Equal by default
    ({"key": "k", "operator": "Equal", "value": "other"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "j", "operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
    ({"operator": "Exists"}, {"key": "anything", "value": "v", "effect": "NoExecute"}, True),
    ({"operator": "Exists", "effect": "NoSchedule"}, {"key": "k", "effect": "NoExecute"}, False),
    ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, {"key": "k", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Equal"}, {"key": "k", "effect": "NoSchedule"}, True),  # both values empty
    ({"key": "k", "operator": "Lt", "value": "v"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
])
def test_tolerates(toleration, taint, ok):
    assert tolerates(toleration, taint) is ok


@pytest.mark.parametrize(("taints", "tolerations", "effects", "expected"), [
    ([], [], ("NoSchedule",), None),
    ([{"key": "a", "effect": "PreferNoSchedule"}], [], ("NoSchedule", "NoExecute"), None),
    ([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}], [],
     ("NoSchedule", "NoExecute"), {"key": "a", "effect": "NoSchedule"}),
    ([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}], [],
     ("NoExecute",), {"key": "b", "effect": "NoExecute"}),
    ([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}],
     [{"key": "a", "operator": "Exists"}], ("NoSchedule", "NoExecute"), {"key": "b", "effect": "NoExecute"}),
    ([{"key": "a", "effect": "NoSchedule"}], [{"operator": "Exists"}], ("NoSchedule",), None),
], ids=["no-taints", "other-effect", "first-untolerated", "effects-filter", "one-tolerated", "wildcard"])
def test_untolerated_taint(taints, tolerations, effects, expected):
    assert untolerated_taint(taints, iter(tolerations), effects) == expected
