"""`bench/pod_startup.py` still runs: three pods through server, scheduler and agent, figures out, nothing left.

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

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "pod_startup.py"


def test_pod_startup_benchmark_runs_and_cleans_up(tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "-n", "3", "--rate", "0", "--settle", "0", "--json", str(out)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["errors"] == []
    assert result["n"] == 3
    startup = result["startup_ms"]
    assert 0 < startup["min"] <= startup["p50"] <= startup["p99"] <= startup["max"]
    assert 0 < result["floor_ms"]["p50"] <= result["floor_ms"]["max"]
    assert result["agent_rss_mb"] > 0 and result["agent_rss_idle_mb"] > 0
    assert result["shims"] == 3  # one per running pod; the warm-up pod's is gone
    assert result["processes_left"] == 0
    assert result["files_left"] == 0  # the runtime's records and pod directories went with the pods
    assert result["shims_pss_mb"] > 0 and "shims' PSS, total (3 shims)" in run.stdout
    assert "create -> Running, p99" in run.stdout and "agent RSS, 3 pods running" in run.stdout
