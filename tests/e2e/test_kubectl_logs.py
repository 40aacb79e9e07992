"""`kubectl logs` and its options on `timoner up`: --previous, --limit-bytes, --since-time, --tail, -f, --timestamps.

The container is driven by marker files under tmp_path, so the test
decides when each line is written (and a line's time falls on the right
side of a `--since-time`, which has whole-second precision).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import subprocess
import time

import pytest

from timoner.testing import KUBECTL, wait_until

pytestmark = pytest.mark.slow

STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) ")


def _pod(up, ns, name, script):
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [
                    {"name": "c", "image": "busybox", "command": ["sh", "-c", script]}]}}
    up.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _status(up, ns, name):
    pod = json.loads(up.kubectl("get", "pod", "-n", ns, name, "-o", "json").stdout)
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]


def _logs(up, ns, name, *flags):
    return up.kubectl("logs", "-n", ns, name, *flags).stdout


def test_kubectl_logs_options_after_a_restart(up, ns, tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    # Run 0 fails at once (the first restart is immediate); run 1 writes a line per marker file.
    _pod(up, ns, "r", f"n=$(cat {d}/n 2>/dev/null || echo 0); echo $((n+1)) > {d}/n; echo run $n; "
                      f"[ $n = 0 ] && exit 1; "
                      f"while [ ! -e {d}/a ]; do sleep 0.02; done; echo after-a; "
                      f"while [ ! -e {d}/b ]; do sleep 0.02; done; echo after-b; sleep 3600")
    wait_until(lambda: (s := _status(up, ns, "r")).get("restartCount") == 1 and "running" in s.get("state", {}),
               60, "the second run")
    wait_until(lambda: _logs(up, ns, "r") == "run 1\n", 30, "run 1's output")

    assert _logs(up, ns, "r", "--previous") == "run 0\n"
    assert _logs(up, ns, "r", "-p", "--limit-bytes=3") == "run"
    assert _logs(up, ns, "r", "--limit-bytes=5") == "run 1"
    stamped = _logs(up, ns, "r", "--timestamps")
    match = STAMP.match(stamped)
    assert match and stamped[match.end():] == "run 1\n", stamped

    # --since-time: a whole second after "run 1" was written, and before "after-a" is.
    written = dt.datetime.fromisoformat(match.group(1)[:26] + "+00:00").timestamp()
    since = math.floor(written) + 1
    while time.time() < since:
        time.sleep(0.05)
    (d / "a").touch()
    wait_until(lambda: _logs(up, ns, "r").endswith("after-a\n"), 30, "after-a")
    since_text = dt.datetime.fromtimestamp(since, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _logs(up, ns, "r", f"--since-time={since_text}") == "after-a\n"
    assert _logs(up, ns, "r", "--since-time=2000-01-01T00:00:00Z") == "run 1\nafter-a\n"
    assert _logs(up, ns, "r", "--tail=1") == "after-a\n"

    # -f: what is there (--tail=1), then the line written while kubectl follows.
    follow = subprocess.Popen([KUBECTL, "logs", "-f", "--tail=1", "-n", ns, "r"], stdout=subprocess.PIPE,
                              text=True, env={"KUBECONFIG": str(up.kubeconfig), "HOME": str(up.data_dir)})
    try:
        assert follow.stdout.readline() == "after-a\n"
        (d / "b").touch()
        assert follow.stdout.readline() == "after-b\n"
        assert follow.poll() is None  # still following the running container
    finally:
        follow.terminate()
        follow.wait(10)


def test_kubectl_logs_previous_without_a_restart_and_bad_options(up, ns):
    _pod(up, ns, "once", "echo hi; sleep 3600")
    wait_until(lambda: "running" in _status(up, ns, "once").get("state", {}), 60, "once running")
    wait_until(lambda: _logs(up, ns, "once") == "hi\n", 30, "its output")
    out = up.kubectl("logs", "-n", ns, "once", "--previous", check=False)
    assert out.returncode != 0
    assert out.stderr.strip() == (
        'Error from server (BadRequest): previous terminated container "c" in pod "once" not found')
    # kubectl checks its own flags first; the server refuses what gets through (here, a raw request).
    raw = up.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/once/log?tailLines=-2", check=False)
    assert raw.returncode != 0 and "Invalid value: -2: must be greater than or equal to 0" in raw.stderr
