"""`bench/controllers.py` still runs: two Deployments of two replicas through a whole cluster, figures out.

Only that the benchmark works is checked, never how fast: the figures
depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPT = BENCH / "controllers.py"
sys.path.insert(0, str(BENCH))
from _procs import alive  # noqa: E402  (the benchmarks' own check: a zombie is not alive)


def test_controllers_benchmark_runs_and_cleans_up(tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "-d", "2", "-r", "2", "--settle", "0.5", "--json", str(out)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["errors"] == [] and result["processes_left"] == 0
    # server, scheduler, controllers and agent were started, and none outlives the run; the temp dir is gone
    assert set(result["pids"]) == {"server", "scheduler", "controllers", "agent"}
    assert not any(alive(pid) for pid in result["pids"].values())
    assert not Path(result["workdir"]).exists()
    assert result["deployments"] == 2 and result["replicas"] == 2 and result["pods"] == 4
    assert result["runtime"] == "hollow" and result["node_pods_capacity"] == 110
    per = result["per_deployment_ms"]
    assert 0 < per["min"] <= per["p50"] <= per["p99"] <= per["max"]
    assert 0 < result["all_available_s"] <= result["window_s"]
    # Each ReplicaSet is reconciled at least once; the counters come from the manager's /metrics.
    assert result["replicaset_reconciles"] >= 2 and result["replicaset_reconciles_per_s"] > 0
    assert result["replicaset_reconciles_total"] >= result["replicaset_reconciles"]
    assert result["deployment_reconciles"] >= 2
    assert result["controllers_rss_mb"] > 0 and result["controllers_cpu_s_total"] > 0
    assert set(result["cpu_s"]) == {"server", "scheduler", "controllers", "agent"}
    assert result["last_pod_created_s"] <= result["last_pod_ready_s"]
    assert "2 Deployments x 2: first create -> all available" in run.stdout
    assert "replicaset-controller reconciles/s" in run.stdout and "controller manager RSS" in run.stdout
