"""ResourceQuota and LimitRange on `timoner up`, driven by the real kubectl.

The cluster's controller manager counts the quota; the API server's LimitRanger gives pods the
namespace's defaults and its ResourceQuota plugin refuses what would exceed the quota.
"""

from __future__ import annotations

import json
import re

import pytest

from timoner.testing import wait_until

pytestmark = pytest.mark.slow

LIMIT_RANGE = """
apiVersion: v1
kind: LimitRange
metadata:
  name: defaults
spec:
  limits:
  - type: Container
    default: {cpu: 300m, memory: 64Mi}
    defaultRequest: {cpu: 200m, memory: 32Mi}
    max: {cpu: "1"}
"""


def _used(up, ns: str) -> dict:
    quota = json.loads(up.kubectl("get", "quota", "q", "-n", ns, "-o", "json").stdout)
    return (quota.get("status") or {}).get("used") or {}


def _run(up, ns: str, name: str, *extra: str, check: bool = True):
    return up.kubectl("run", name, "-n", ns, "--image=busybox", "--restart=Never", *extra,
                      "--command", "--", "sleep", "3600", check=check)


def test_quota_and_limit_range_with_kubectl(up, ns):
    up.kubectl("create", "quota", "q", "-n", ns, "--hard=pods=2,requests.cpu=1,limits.memory=1Gi")
    wait_until(lambda: _used(up, ns) == {"pods": "0", "requests.cpu": "0", "limits.memory": "0"}, 60,
               "the controller manager to count the quota")

    # without defaults, the quota's compute resources must be stated by every container
    refused = _run(up, ns, "bare", check=False)
    assert refused.returncode != 0
    assert ('Error from server (Forbidden): pods "bare" is forbidden: failed quota: q: '
            "must specify limits.memory for: bare; requests.cpu for: bare") in refused.stderr

    up.kubectl("apply", "-n", ns, "-f", "-", input=LIMIT_RANGE)
    _run(up, ns, "a")
    pod = json.loads(up.kubectl("get", "pod", "a", "-n", ns, "-o", "json").stdout)
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "300m", "memory": "64Mi"},
                                                         "requests": {"cpu": "200m", "memory": "32Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a")

    too_big = _run(up, ns, "big", "--overrides",
                   json.dumps({"spec": {"containers": [{"name": "big", "image": "busybox",
                                                        "command": ["sleep", "3600"],
                                                        "resources": {"limits": {"cpu": "2"}}}]}}),
                   check=False)
    assert 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2' in too_big.stderr

    _run(up, ns, "b")
    described = up.kubectl("describe", "quota", "q", "-n", ns).stdout
    assert re.search(r"^pods\s+2\s+2$", described, re.M), described
    assert re.search(r"^requests\.cpu\s+400m\s+1$", described, re.M), described
    assert re.search(r"^limits\.memory\s+128Mi\s+1Gi$", described, re.M), described

    over = _run(up, ns, "c", check=False)
    assert over.returncode != 0
    assert ('Error from server (Forbidden): pods "c" is forbidden: exceeded quota: q, requested: pods=1, '
            "used: pods=2, limited: pods=2") in over.stderr

    up.kubectl("delete", "pod", "a", "-n", ns, "--grace-period=1", "--wait=true", timeout=120)
    wait_until(lambda: _used(up, ns).get("pods") == "1", 60, "the deleted pod to be released")
    _run(up, ns, "c")
    assert _used(up, ns)["pods"] == "2"
