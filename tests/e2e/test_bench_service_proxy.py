"""`bench/service_proxy.py` still runs: wrk through a ClusterIP and straight to the pod, endpoint timing.

Only that the benchmark works is checked, never how fast: the figures depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "service_proxy.py"


def test_service_proxy_benchmark_runs(tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "1", "--duration", "1", "--flips", "2",
                          "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["errors"] == []
    rates = result["throughput"]["rate_per_s"]
    assert rates["direct"] > 0 and rates["clusterip"] > 0
    assert [len(r) for r in result["throughput"]["runs"].values()] == [1, 1]
    assert len(result["endpoint_ms"]["each"]) == 2 and all(ms > 0 for ms in result["endpoint_ms"]["each"])
    assert "ClusterIP cost vs direct" in run.stdout and "Ready -> reachable via ClusterIP" in run.stdout
